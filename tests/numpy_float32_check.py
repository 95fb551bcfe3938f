"""NumPy-interface networks in float32 with oneDNN on, in a process of their own
(tests/test_numpy_mode.py): a real-shaped residual network written as Dive into Deep
Learning writes it (3 input channels, 16 and 32 filters, BatchNorm, residual additions,
global pooling) and a PINN-sized MLP, through InputGradient, Laplacian, HVP and a
training step, against their float64 twins; imperative and hybridized; and a
self-attention block written with np.einsum over a convolution's positions."""
import json

import numpy as onp
import mxnet as mx
from mxnet import autograd, npx
from mxnet.gluon import nn

import mxgradlayer as mg

from helpers import d2l_resnet

npx.set_np()


def resnet():
    return d2l_resnet(16, (16, 32), 1, smooth=True)


def mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(64, activation='tanh'), nn.Dense(64, activation='tanh'), nn.Dense(1))
    return net


class Attention(nn.HybridBlock):
    """Self-attention over a convolution's positions, written with np.einsum (SAGAN's
    block): scores between every pair of positions, a softmax, the weighted features."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = nn.Conv2D(16, 3, padding=1)
        self.norm = nn.BatchNorm()
        self.head = nn.Dense(1)

    def hybrid_forward(self, F, x):
        f = F.npx.reshape(F.np.tanh(self.norm(self.conv(x))), (-2, -2, -1))  # (B, C, HW)
        scores = F.np.einsum('bcq,bck->bqk', f, f) * 0.25
        mixed = F.np.einsum('bqk,bck->bcq', F.npx.softmax(scores, axis=-1), f) + f
        return self.head(F.np.mean(mixed, axis=2))


def attention():
    return Attention()


SHAPES = {resnet: (3, 16, 16), mlp: (2,), attention: (3, 8, 8)}


def twins(make):
    a = make()
    a.initialize(mx.init.Xavier(magnitude=2.0))
    a(mx.np.zeros((1,) + SHAPES[make]))
    b = make()
    b.initialize()
    b(mx.np.zeros((1,) + SHAPES[make]))
    for p, q in zip(a.collect_params().values(), b.collect_params().values()):
        q.set_data(p.data())
    b.cast('float64')
    return a, b


def rel(a, b):
    return float(onp.abs(a - b).max() / max(onp.abs(b).max(), 1e-6))


def main():
    rng = onp.random.default_rng(0)
    worst = {}
    for make in (resnet, mlp, attention):
        f32, f64 = twins(make)
        x = rng.uniform(-1, 1, (4,) + SHAPES[make])
        v = rng.standard_normal(x.shape)
        blocks = [lambda n: mg.InputGradient(n), lambda n: mg.HVP(n)]
        if make is mlp:
            blocks.append(lambda n: mg.Laplacian(n))
        for hybridize in (False, True):
            for build in blocks:
                b32, b64 = build(f32), build(f64)
                if hybridize:
                    b32.hybridize()
                args = [mx.np.array(x, dtype='float32')]
                args64 = [mx.np.array(x, dtype='float64')]
                if isinstance(b32, mg.HVP):
                    args.append(mx.np.array(v, dtype='float32'))
                    args64.append(mx.np.array(v, dtype='float64'))
                out = b32(*args)
                assert isinstance(out, mx.np.ndarray), type(out)
                key = f'{make.__name__} {type(b32).__name__} hybridized={hybridize}'
                worst[key] = rel(out.asnumpy(), b64(*args64).asnumpy())
                print(f'{key}: float32 vs float64 relative error {worst[key]:.2e}', flush=True)
        # a training step's parameter gradient (a gradient penalty), float32 vs float64
        grads = []
        for net, dtype in ((f32, 'float32'), (f64, 'float64')):
            blk = mg.InputGradient(net)
            blk.hybridize()
            xa = mx.np.array(x, dtype=dtype)
            with autograd.record():
                loss = (blk(xa) ** 2).sum()
            loss.backward()
            grads.append(onp.concatenate([p.grad().asnumpy().ravel()
                                          for p in net.collect_params().values()
                                          if p.grad_req != 'null']))
        key = f'{make.__name__} penalty parameter gradient'
        worst[key] = rel(grads[0], grads[1])
        print(f'{key}: float32 vs float64 relative error {worst[key]:.2e}', flush=True)
    print('result ' + json.dumps(worst))


if __name__ == '__main__':
    main()
