# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The benchmark workloads, each a function returning a zero-argument training step.

Every workload is hybridized (static_alloc, static_shape) and float32, as people train.
A "step" is forward, backward and an Adam update, and ends with ``nd.waitall()`` so that
MXNet's asynchronous engine has finished all the work being timed, the update included.
"""
import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

import mxgradlayer as mg

FLAGS = dict(static_alloc=True, static_shape=True)


def mlp(widths, activation, in_units):
    net = gluon.nn.HybridSequential()
    units = in_units
    for i, w in enumerate(widths):
        net.add(gluon.nn.Dense(w, activation=activation if i < len(widths) - 1 else None,
                               in_units=units))
        units = w
    net.initialize(mx.init.Xavier())
    return net


class Loss(gluon.HybridBlock):
    def __init__(self, fn, **children):
        super().__init__()
        self._fn = fn
        with self.name_scope():
            for k, v in children.items():
                setattr(self, k, v)

    def hybrid_forward(self, F, *args):
        return self._fn(self, F, *args)


def _step(loss_block, params, args):
    loss_block.hybridize(**FLAGS)
    trainer = gluon.Trainer(params, 'adam', {'learning_rate': 1e-3})

    def step():
        with autograd.record():
            loss = loss_block(*args)
        loss.backward()
        # a loss on derivatives alone leaves the last bias without gradient
        trainer.step(1, ignore_stale_grad=True)
        nd.waitall()  # the parameter update too, or the next step would pay for it
    return step


class Seed(gluon.HybridBlock):
    """u(x) = x * g(x) + 1."""

    def __init__(self):
        super().__init__()
        with self.name_scope():
            self.g = mlp([32, 32, 1], 'sigmoid', 1)

    def hybrid_forward(self, F, x):
        return x * self.g(x) + 1


def w1(method):
    """The seed ODE: loss on du/dx, batch 64."""
    u = Seed()
    x = nd.random.uniform(-1, 1, shape=(64, 1))
    if method == 'plain':
        blk = Loss(lambda s, F, x: F.mean(F.square(s.u(x) - F.square(x) - 1)), u=u)
    elif method == 'layer':
        blk = Loss(lambda s, F, x: F.mean(F.square(s.du(x) - 2 * x)), du=mg.InputGradient(u))
    elif method == 'fd':
        blk = Loss(lambda s, F, x: F.mean(F.square((s.u(x + 1e-4) - s.u(x)) / 1e-4 - 2 * x)),
                   u=u)
    return _step(blk, u.collect_params(), [x])


def _poisson_f(F, x):
    xs = F.slice_axis(x, axis=1, begin=0, end=1)
    ys = F.slice_axis(x, axis=1, begin=1, end=2)
    return 2 * np.pi ** 2 * F.sin(np.pi * xs) * F.sin(np.pi * ys)


def w2(method, interior=4096, boundary=512):
    """The 2-D Poisson PINN: loss on the Laplacian, 4096 interior + 512 boundary points."""
    net = mlp([64, 64, 64, 1], 'tanh', 2)
    x_in = nd.random.uniform(0, 1, shape=(interior, 2))
    x_bd = nd.random.uniform(0, 1, shape=(boundary, 2))
    if method == 'plain':  # the same network and points, a plain regression loss
        blk = Loss(lambda s, F, a, b: F.mean(F.square(s.u(a) - _poisson_f(F, a)))
                   + F.mean(F.square(s.u(b))), u=net)
    elif method in ('layer', 'hessian_trace'):
        lap = mg.Laplacian(net, method='forward' if method == 'layer' else 'hessian_trace')
        blk = Loss(lambda s, F, a, b: F.mean(F.square(-s.lap(a) - _poisson_f(F, a)))
                   + F.mean(F.square(s.u(b))), u=net, lap=lap)
    elif method == 'fd':  # five-point stencil, h = 1e-2 (float32)
        h = 1e-2
        dx, dy = nd.array([[h, 0.0]]), nd.array([[0.0, h]])

        def fd_loss(s, F, a, b, dx, dy):
            u = s.u
            lap = (u(F.broadcast_add(a, dx)) + u(F.broadcast_sub(a, dx))
                   + u(F.broadcast_add(a, dy)) + u(F.broadcast_sub(a, dy)) - 4 * u(a)) / h ** 2
            return F.mean(F.square(-lap - _poisson_f(F, a))) + F.mean(F.square(u(b)))
        blk = Loss(fd_loss, u=net)
        return _step(blk, net.collect_params(), [x_in, x_bd, dx, dy])
    return _step(blk, net.collect_params(), [x_in, x_bd])


def laplacian_cost(method, d, batch=1024):
    """A step whose loss is the Laplacian of an MLP d -> 64 -> 64 -> 64 -> 1."""
    net = mlp([64, 64, 64, 1], 'tanh', d)
    x = nd.random.uniform(0, 1, shape=(batch, d))
    if method == 'plain':
        blk = Loss(lambda s, F, a: F.mean(F.square(s.u(a))), u=net)
    else:
        blk = Loss(lambda s, F, a: F.mean(F.square(s.lap(a))), lap=mg.Laplacian(net))
    return _step(blk, net.collect_params(), [x])


def w3(method):
    """Hessian-vector product of an MLP 100 -> 256 -> 256 -> 1 (tanh), batch 256, against
    one forward and backward pass of the network (no update)."""
    net = mlp([256, 256, 1], 'tanh', 100)
    net.hybridize(**FLAGS)
    x = nd.random.normal(shape=(256, 100))
    v = nd.random.normal(shape=(256, 100))
    if method == 'plain':
        def step():
            with autograd.record():
                y = net(x)
            y.backward()
            nd.waitall()
        return step
    hvp = mg.HVP(net, mode='fwd_rev' if method == 'layer' else 'rev_rev')
    hvp.hybridize(**FLAGS)

    def step():
        hvp(x, v).wait_to_read()
        nd.waitall()
    return step


# workload -> methods; the first method is the reference step of the ratios
WORKLOADS = {
    'W1': ['plain', 'layer', 'fd'],
    'W2': ['plain', 'layer', 'hessian_trace', 'fd'],
    'LAP2': ['plain', 'layer'],
    'LAP8': ['plain', 'layer'],
    'LAP32': ['plain', 'layer'],
    'W3': ['plain', 'layer', 'rev_rev'],
}
