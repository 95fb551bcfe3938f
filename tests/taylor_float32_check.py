"""Taylor mode in float32 with oneDNN on, in a process of its own (tests/test_taylor.py):
a real-shaped residual network (3 channels, 16 filters, BatchNorm, global pooling) and a
PINN-sized MLP, against their float64 twins."""
import sys

import numpy as np
import mxnet as mx
from mxnet import nd

import mxgradlayer as mg


class ResNetish(mx.gluon.HybridBlock):
    def __init__(self):
        super().__init__()
        self.stem = mx.gluon.nn.Conv2D(16, 3, padding=1, in_channels=3)
        self.bn1 = mx.gluon.nn.BatchNorm(in_channels=16)
        self.c1 = mx.gluon.nn.Conv2D(16, 3, padding=1, in_channels=16)
        self.bn2 = mx.gluon.nn.BatchNorm(in_channels=16)
        self.c2 = mx.gluon.nn.Conv2D(32, 3, strides=2, padding=1, in_channels=16)
        self.pool = mx.gluon.nn.GlobalAvgPool2D()
        self.out = mx.gluon.nn.Dense(1, in_units=32)

    def hybrid_forward(self, F, x):
        h = F.Activation(self.bn1(self.stem(x)), act_type='softrelu')
        h = h + F.tanh(self.bn2(self.c1(h)))
        return self.out(self.pool(F.Activation(self.c2(h), act_type='softrelu')))


def twins(make):
    a = make()
    a.initialize(mx.init.Xavier(magnitude=2.0))
    a(nd.zeros((1,) + SHAPES[make]))
    b = make()
    b.initialize()
    b(nd.zeros((1,) + SHAPES[make]))
    for p, q in zip(a.collect_params().values(), b.collect_params().values()):
        q.set_data(p.data())
    b.cast('float64')
    return a, b


def mlp():
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(64, activation='tanh', in_units=2),
            mx.gluon.nn.Dense(64, activation='tanh'), mx.gluon.nn.Dense(1))
    return net


SHAPES = {ResNetish: (3, 16, 16), mlp: (2,)}


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


def main():
    rng = np.random.default_rng(0)
    worst = {}
    for make, blocks in ((ResNetish, lambda n: [mg.Taylor(n, order=3)]),
                         (mlp, lambda n: [mg.Taylor(n, order=4),
                                          mg.DifferentialOperator(n, 'biharmonic'),
                                          mg.DifferentialOperator(n, 'laplacian')])):
        f32, f64 = twins(make)
        x = rng.uniform(-1, 1, (4,) + SHAPES[make])
        v = rng.standard_normal(x.shape)
        for hybridize in (False, True):
            for i, (b32, b64) in enumerate(zip(blocks(f32), blocks(f64))):
                if hybridize:
                    b32.hybridize()
                args = [nd.array(x, dtype='float32')]
                args64 = [nd.array(x, dtype='float64')]
                if isinstance(b32, mg.Taylor):
                    args.append(nd.array(v, dtype='float32'))
                    args64.append(nd.array(v, dtype='float64'))
                got, want = b32(*args).asnumpy(), b64(*args64).asnumpy()
                key = f'{make.__name__} {i}: {b32!r:.40} hybridized={hybridize}'
                worst[key] = rel(got, want)
                print(f'{key}: float32 vs float64 relative error {worst[key]:.2e}')
    bad = {k: e for k, e in worst.items() if not e < 5e-3}
    if bad:
        print('FAILED', bad)
        sys.exit(1)
    print(f'passed {len(worst)}')


if __name__ == '__main__':
    main()
