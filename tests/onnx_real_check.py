"""ONNX export of real-shaped float32 networks with oneDNN on, run by tests/test_onnx.py
in a process of its own (tests/isolated.py): a residual network with BatchNorm and global
pooling (3 input channels, 16 and 32 filters; ReLU, and softrelu for a Hessian that is
not 0) and the model zoo's resnet18_v1 and
mobilenet v2 0.25, through InputGradient (with the output), JVP, VJP and HVP; onnxruntime
against MXNet at batch sizes 1 and 5 (example batch 2).  Prints ``result {json}``: per
network and block the largest relative error, and whether the node-by-node check found a
translation that differs (it must not)."""
import argparse
import json
import logging
import os
import sys
import tempfile
import warnings

import numpy as np
import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import vision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import mxgradlayer as mg  # noqa: E402
from mxgradlayer.serving import export as serving  # noqa: E402

logging.getLogger().setLevel(logging.ERROR)


class Residual(gluon.HybridBlock):
    def __init__(self, channels, stride, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activation
        self.body = nn.HybridSequential()
        self.body.add(nn.Conv2D(channels, 3, stride, 1, use_bias=False), nn.BatchNorm(),
                      nn.Activation(activation), nn.Conv2D(channels, 3, 1, 1, use_bias=False),
                      nn.BatchNorm())
        self.down = nn.Conv2D(channels, 1, stride, use_bias=False) if stride > 1 else None

    def hybrid_forward(self, F, x):
        skip = self.down(x) if self.down is not None else x
        return F.Activation(self.body(x) + skip, act_type=self.activation)


def resnet(activation):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, 1, 1, use_bias=False), nn.BatchNorm(), nn.Activation(activation),
            Residual(16, 1, activation), Residual(32, 2, activation), nn.GlobalAvgPool2D(),
            nn.Dense(1))
    return net


def network(name):
    mx.random.seed(3)
    small = name.startswith('resnet_small')
    net = (resnet(name.split('_')[-1]) if small else vision.get_model(name, classes=1))
    net.initialize(mx.init.Xavier())
    size = 16 if small else 32
    x = mx.nd.random.uniform(-1, 1, (2, 3, size, size))
    net(x)
    for p in net.collect_params('.*running_mean|.*running_var').values():
        p.set_data(mx.nd.random.uniform(0.5, 1.5, p.shape) if 'var' in p.name
                   else mx.nd.random.uniform(-0.1, 0.1, p.shape))
    return net, (3, size, size)


def blocks(net, shape):
    return {'InputGradient': (mg.InputGradient(net, return_output=True), [shape]),
            'JVP': (mg.JVP(net), [shape, shape]),
            'VJP': (mg.VJP(net), [shape, (1,)]),
            'HVP': (mg.HVP(net), [shape, shape])}


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--networks', default='resnet_small_relu,resnet_small_softrelu,'
                                         'mobilenetv2_0.25')
    args = p.parse_args()
    rng = np.random.RandomState(0)
    results = {}
    folder = tempfile.mkdtemp()
    for name in args.networks.split(','):
        net, shape = network(name)
        for kind, (block, shapes) in blocks(net, shape).items():
            path = os.path.join(folder, f'{name}_{kind}.onnx')
            example = [mx.nd.array(rng.uniform(-1, 1, (2,) + s)) for s in shapes]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                mg.export_onnx(block, path, *example)
            session = serving_session(path)
            worst, cases = 0.0, []
            for batch in (1, 5):
                xs = [mx.nd.array(rng.uniform(-1, 1, (batch,) + s)) for s in shapes]
                cases.append(dict(zip([f'input{i}' for i in range(len(xs))], xs)))
                expected = block(*xs)
                expected = expected if isinstance(expected, (list, tuple)) else [expected]
                got = session.run(None, {f'input{i}': x.asnumpy() for i, x in enumerate(xs)})
                for g, e in zip(got, expected):
                    e = e.asnumpy()
                    assert g.shape == e.shape, (name, kind, g.shape, e.shape)
                    # a ReLU network's HVP is 0: then the error is onnxruntime's value
                    worst = max(worst, float(np.abs(g - e).max() / max(np.abs(e).max(), 1.0)
                                             if not np.abs(e).max() else
                                             np.abs(g - e).max() / np.abs(e).max()))
            culprit = None
            if worst > 1e-5:  # beyond rounding: is any translation to blame?
                sym, params = traced(block, shapes)
                culprit = serving._first_difference(sym, params, cases, 1e-4)
            results[f'{name} {kind}'] = {'relative_error': worst, 'culprit': culprit,
                                         'warned': sum('differs from MXNet' in str(w.message)
                                                       for w in caught)}
            print(name, kind, results[f'{name} {kind}'], flush=True)
    print('result ' + json.dumps(results))


def serving_session(path):
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def traced(block, shapes):
    names = [f'input{i}' for i in range(len(shapes))]
    return serving.traced_symbol(block, [mx.nd.zeros((2,) + s) for s in shapes], names)


if __name__ == '__main__':
    main()
