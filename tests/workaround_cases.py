"""The MXNet 1.9.1 failures of issue 11 that were not oneDNN's, as cases run one per
process by tests/test_workarounds.py (two of them killed the interpreter before the
workarounds in README "Known MXNet 1.9.1 issues").  Each case checks its numbers against
central differences and prints ``ok <case>``.

usage: python tests/workaround_cases.py CASE
"""
import sys

import numpy as np
import mxnet as mx
from mxnet import gluon, nd

import mxgradlayer as mg
from mxgradlayer.test_util import (check_grads, check_param_grads, fd_directional,
                                   fd_jacobian, relative_error)


class Offset(gluon.HybridBlock):
    """Dense(x) + sum(sin(x)): the net ends in a broadcast_add (imperative segfault)."""

    def __init__(self, inputs=1, **kwargs):
        super().__init__(**kwargs)
        self._inputs = inputs
        with self.name_scope():
            self.o = gluon.nn.Dense(2, in_units=3)

    def hybrid_forward(self, F, x, *rest):
        y = F.broadcast_add(self.o(x), F.sum(F.sin(x), axis=1, keepdims=True))
        if rest:  # a second input with its own offset
            y = F.broadcast_add(F.broadcast_mul(y, F.tanh(rest[0]).sum(axis=1, keepdims=True)),
                                F.sum(F.cos(rest[0]), axis=1, keepdims=True))
        return y


def _float64(net, *shapes):
    net.initialize(mx.init.Uniform(0.5))
    net.cast('float64')
    rng = np.random.default_rng(0)
    return [nd.array(rng.uniform(-1, 1, s), dtype='float64') for s in shapes]


def broadcast_add_offset():
    net = Offset()
    x, = _float64(net, (4, 3))
    check_param_grads(mg.InputGradient(net), [x], loss=lambda outs: nd.mean(nd.square(outs[0])))
    two = Offset(inputs=2)
    x, z = _float64(two, (4, 3), (4, 3))
    check_param_grads(mg.InputGradient(two, wrt=1), [x, z],
                      loss=lambda outs: nd.mean(nd.square(outs[0])))
    check_param_grads(mg.Laplacian(two, wrt=0), [x, z],
                      loss=lambda outs: nd.mean(nd.square(outs[0])))
    check_grads(two, [x, z], wrt=1, order=2)


def hvp_many_consumers():
    net = gluon.nn.HybridLambda(
        lambda F, x: (x * F.sin(x) + x) / (F.square(x) + 1.0) - F.cos(x))
    x, = _float64(net, (5, 3))
    v = nd.array(np.random.default_rng(1).standard_normal((5, 3)), dtype='float64')
    hvp = mg.HVP(net)
    hvp.hybridize()
    got = hvp(x, v)
    ref = fd_directional(mg.InputGradient(net), [x], 0, v)[0]
    err = relative_error(got.asnumpy(), ref.asnumpy())
    assert err < 1e-6, err


class Tiled(gluon.HybridBlock):
    """tile, repeat and a reshape with shape=(0, 6) on a per-sample path."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.d = gluon.nn.Dense(3, in_units=3)
            self.e = gluon.nn.Dense(1, in_units=18)
            self.w1 = self.params.get('w1', shape=(1, 6))
            self.w2 = self.params.get('w2', shape=(1, 6))
            self.w3 = self.params.get('w3', shape=(1, 2, 3))

    def hybrid_forward(self, F, x, w1, w2, w3):
        h = self.d(x)
        a = F.broadcast_mul(F.tile(h, reps=(1, 2)), w1)
        b = F.broadcast_mul(F.sin(F.repeat(h, repeats=2, axis=1)), w2)
        c = F.broadcast_mul(F.tile(F.expand_dims(F.square(h), axis=1), reps=(1, 2, 1)), w3)
        return self.e(F.concat(a, b, F.reshape(c, shape=(0, 6)), dim=1))


def hessian_of_tiles():
    net = Tiled()
    x, = _float64(net, (4, 3))
    for hybridize in (False, True):
        hess = mg.Hessian(net)
        if hybridize:
            hess.hybridize()
        got = hess(x).asnumpy()
        ref = fd_jacobian(mg.Jacobian(net), [x], 0)
        err = relative_error(got, ref.reshape(got.shape))
        assert err < 1e-6, (hybridize, err)


def cast_after_deferred_init():
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(4, activation='tanh'), gluon.nn.Dense(1))
    net.initialize()
    net(nd.ones((2, 3)))  # deferred initialisation, float32
    net.cast('float64')
    x = nd.array(np.random.default_rng(0).uniform(-1, 1, (2, 3)), dtype='float64')
    for hybridize in (False, True):
        blk = mg.InputGradient(net)
        if hybridize:
            blk.hybridize()
        got = blk(x)
        assert got.dtype == np.float64
        ref = np.stack([fd_directional(net, [x], 0, v)[0].asnumpy()[:, 0]
                        for v in (nd.array(np.eye(3)[[i] * 2], dtype='float64')
                                  for i in range(3))], axis=1)
        err = relative_error(got.asnumpy(), ref)
        assert err < 1e-6, (hybridize, err)


CASES = {f.__name__: f for f in (broadcast_add_offset, hvp_many_consumers,
                                  hessian_of_tiles, cast_after_deferred_init)}

if __name__ == '__main__':
    CASES[sys.argv[1]]()
    print('ok', sys.argv[1])
