"""BatchNorm in training inside derivative blocks, float32 with oneDNN on, in a process of
its own (tests/test_layers.py): a 3-channel, 16-filter convolution with BatchNorm and
global pooling.  The running statistics a backward pass through InputGradient moves
(`rules/norm.py:_running_stats_mover`) against those Gluon's own layer moves, and the
penalty's input gradient against the float64 twin; imperative and hybridized."""
import json

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

import mxgradlayer as mg


def network():
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(16, 3, padding=1), gluon.nn.BatchNorm(),
            gluon.nn.Activation('tanh'), gluon.nn.GlobalAvgPool2D(), gluon.nn.Dense(1))
    net.initialize(mx.init.Xavier())
    return net


def twins(x):
    """The same weights in float32 and float64."""
    single, double = network(), network()
    single(nd.array(x[:1]))
    double(nd.array(x[:1]))
    for p, q in zip(single.collect_params().values(), double.collect_params().values()):
        q.set_data(p.data())
    double.cast('float64')
    return {'float32': single, 'float64': double}


def main():
    x = np.random.RandomState(0).normal(2.0, 3.0, (8, 3, 16, 16))  # a mean far from 0
    nets = twins(x)
    out, grads = {}, {}
    for dtype in ('float64', 'float32'):
        net = nets[dtype]
        xa = nd.array(x, dtype=dtype)
        bn = net[1]
        before = [bn.running_mean.data().copy(), bn.running_var.data().copy()]
        with autograd.record():
            y = net(xa)
        y.backward()
        ref = [bn.running_mean.data().asnumpy(), bn.running_var.data().asnumpy()]
        moved = float(np.abs(ref[1] - before[1].asnumpy()).max())
        assert moved > 1e-3, moved  # the statistics did move
        for hybridize in (False, True):
            bn.running_mean.set_data(before[0])
            bn.running_var.set_data(before[1])
            block = mg.InputGradient(net)
            if hybridize:
                block.hybridize()
            with autograd.record():
                g = block(xa)
                loss = (g ** 2).sum()
            loss.backward()
            grads[(dtype, hybridize)] = g.asnumpy()
            for k, name in enumerate(('running_mean', 'running_var')):
                got = getattr(bn, name).data().asnumpy()
                key = f'{dtype} hybridized={hybridize} {name}'
                out[key] = float(np.abs(got - ref[k]).max() / np.abs(ref[k]).max())
                print(f'{key}: relative difference to Gluon\'s layer {out[key]:.2e}',
                      flush=True)
    for hybridize in (False, True):
        a, b = grads[('float32', hybridize)], grads[('float64', hybridize)]
        key = f'input gradient float32 vs float64 hybridized={hybridize}'
        out[key] = float(np.abs(a - b).max() / np.abs(b).max())
        print(f'{key}: {out[key]:.2e}', flush=True)
    print('result ' + json.dumps(out))


if __name__ == '__main__':
    main()
