# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The benchmark workloads, each a function returning a zero-argument training step.

Every workload is hybridized (static_alloc, static_shape) and float32, as people train.
A "step" is forward, backward and an Adam update, and ends with ``nd.waitall()`` so that
MXNet's asynchronous engine has finished all the work being timed, the update included.
``step(report=True)`` also returns the loss (W3: the sum of the result) as a float, which
the runner takes once, before the first update, to compare with the peers' (the same
weights and points give the same number).
"""
import numpy as np

import mxgradlayer as mg  # before mxnet, as the README advises: its small-machine settings
from mxnet import autograd, gluon, nd  # noqa: E402

import data  # noqa: E402

FLAGS = dict(static_alloc=True, static_shape=True)


def mlp(widths, activation, in_units):
    """The MLP with benchmarks/data.py's weights (PyTorch and JAX use the same)."""
    net = gluon.nn.HybridSequential()
    units = in_units
    for i, w in enumerate(widths):
        net.add(gluon.nn.Dense(w, activation=activation if i < len(widths) - 1 else None,
                               in_units=units))
        units = w
    net.initialize()
    for layer, (W, b) in zip(net, data.mlp_weights(widths, in_units)):
        layer.weight.set_data(nd.array(W))
        layer.bias.set_data(nd.array(b))
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

    def step(report=False):
        with autograd.record():
            loss = loss_block(*args)
        loss.backward()
        # a loss on derivatives alone leaves the last bias without gradient
        trainer.step(1, ignore_stale_grad=True)
        nd.waitall()  # the parameter update too, or the next step would pay for it
        return float(loss.asscalar()) if report else None
    return step


class Seed(gluon.HybridBlock):
    """u(x) = x * g(x) + 1."""

    def __init__(self):
        super().__init__()
        with self.name_scope():
            self.g = mlp(*data.W1_NET)

    def hybrid_forward(self, F, x):
        return x * self.g(x) + 1


def w1(method):
    """The seed ODE: loss on du/dx, batch 64."""
    u = Seed()
    x = nd.array(data.w1_points())
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
    net = mlp(*data.W2_NET)
    x_in, x_bd = (nd.array(a) for a in data.w2_points(interior, boundary))
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
    net = mlp(*data.lap_net(d))
    x = nd.array(data.lap_points(d, batch))
    if method == 'plain':
        blk = Loss(lambda s, F, a: F.mean(F.square(s.u(a))), u=net)
    else:
        blk = Loss(lambda s, F, a: F.mean(F.square(s.lap(a))), lap=mg.Laplacian(net))
    return _step(blk, net.collect_params(), [x])


def w3(method):
    """Hessian-vector product of an MLP 100 -> 256 -> 256 -> 1 (tanh), batch 256, against
    one forward and backward pass of the network (no update)."""
    net = mlp(*data.W3_NET)
    net.hybridize(**FLAGS)
    x, v = (nd.array(a) for a in data.w3_points())
    if method == 'plain':
        def step(report=False):
            with autograd.record():
                y = net(x)
            y.backward()
            nd.waitall()
            return float(y.sum().asscalar()) if report else None
        return step
    hvp = mg.HVP(net, mode='fwd_rev' if method == 'layer' else 'rev_rev')
    hvp.hybridize(**FLAGS)

    def step(report=False):
        hv = hvp(x, v)
        hv.wait_to_read()
        nd.waitall()
        return float(hv.sum().asscalar()) if report else None
    return step


class _Residual(gluon.HybridBlock):
    def __init__(self, width, stride, project, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv1 = gluon.nn.Conv2D(width, 3, stride, 1, use_bias=False)
            self.bn1 = gluon.nn.BatchNorm()
            self.conv2 = gluon.nn.Conv2D(width, 3, 1, 1, use_bias=False)
            self.bn2 = gluon.nn.BatchNorm()
            self.proj = gluon.nn.Conv2D(width, 1, stride, use_bias=False) if project else None
            self.bnp = gluon.nn.BatchNorm() if project else None

    def hybrid_forward(self, F, x):
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        skip = self.bnp(self.proj(x)) if self.proj is not None else x
        return F.relu(h + skip)


class _MeanOverSpace(gluon.HybridBlock):
    """Global average pooling written as a mean: the same function as GlobalAvgPool2D,
    without oneDNN's reference-kernel pooling backward (README, "Known MXNet 1.9.1
    issues"), which also sends the BatchNorm backwards of the last stage to their
    reference kernel."""

    def hybrid_forward(self, F, x):
        return F.mean(x, axis=(2, 3), keepdims=True)


def resnet20(mean_head=False):
    """The W4 critic (benchmarks/resnet20.py), with its NumPy weights; ``mean_head``:
    its global average pooling written as a mean (W4MEAN)."""
    import resnet20 as spec
    net = gluon.nn.HybridSequential()
    with net.name_scope():
        stem = gluon.nn.HybridSequential()
        stem.add(gluon.nn.Conv2D(16, 3, 1, 1, use_bias=False), gluon.nn.BatchNorm(),
                 gluon.nn.Activation('relu'))
        net.add(stem)
        channels, blocks = 16, []
        for s, width in enumerate(spec.STAGES):
            for b in range(spec.BLOCKS):
                stride = 2 if s > 0 and b == 0 else 1
                block = _Residual(width, stride, stride != 1 or channels != width)
                blocks.append(block)
                net.add(block)
                channels = width
        net.add(_MeanOverSpace() if mean_head else gluon.nn.GlobalAvgPool2D(),
                gluon.nn.Dense(1))
    net.initialize()
    net(nd.zeros((1, 3, 32, 32)))
    values = spec.weights()
    layers = [('stem', stem[0], stem[1])]
    for i, block in enumerate(blocks):
        name = f'stage{i // spec.BLOCKS}.block{i % spec.BLOCKS}'
        layers += [(f'{name}.conv1', block.conv1, block.bn1),
                   (f'{name}.conv2', block.conv2, block.bn2)]
        if block.proj is not None:
            layers.append((f'{name}.proj', block.proj, block.bnp))
    for name, conv, bn in layers:
        bn_name = {'stem': 'stem.bn'}.get(name, name.replace('conv', 'bn').replace('proj', 'bnp'))
        conv.weight.set_data(nd.array(values[name if name != 'stem' else 'stem.conv']))
        bn.gamma.set_data(nd.array(values[bn_name + '.gamma']))
        bn.beta.set_data(nd.array(values[bn_name + '.beta']))
    net[-1].weight.set_data(nd.array(values['head.weight']))
    net[-1].bias.set_data(nd.array(values['head.bias']))
    return net


def w4(method, mean_head=False):
    """WGAN-GP critic step on a CIFAR-style ResNet-20 (BatchNorm, training mode), batch
    64 of 32x32x3, Adam: ``layer`` adds the penalty 10 (|grad_x D(x_hat)| - 1)^2 from
    InputGradient; the plain step is the same critic loss without it."""
    import resnet20 as spec
    net = resnet20(mean_head)
    real, fake, eps = (nd.array(a) for a in spec.batch())

    def critic_loss(s, F, real, fake, eps):
        loss = F.mean(s.net(fake)) - F.mean(s.net(real))
        if method == 'plain':
            return loss
        x_hat = F.broadcast_add(F.broadcast_mul(eps, real), F.broadcast_mul(1 - eps, fake))
        g = F.reshape(s.grad(x_hat), (0, -1))
        norm = F.sqrt(F.sum(F.square(g), axis=1) + 1e-12)
        return loss + 10 * F.mean(F.square(norm - 1))
    loss_block = Loss(critic_loss, net=net, grad=mg.InputGradient(net))
    return _step(loss_block, net.collect_params(), [real, fake, eps])


def w4mean(method):
    """W4 with the critic's global average pooling written as a mean (the workaround
    the README gives for oneDNN's pooling backward); PyTorch's W4MEAN is its W4."""
    return w4(method, mean_head=True)


# workload -> methods; the first method is the reference step of the ratios
WORKLOADS = {
    'W1': ['plain', 'layer', 'fd'],
    'W2': ['plain', 'layer', 'hessian_trace', 'fd'],
    'LAP2': ['plain', 'layer'],
    'LAP8': ['plain', 'layer'],
    'LAP32': ['plain', 'layer'],
    'W3': ['plain', 'layer', 'rev_rev'],
    'W4': ['plain', 'layer'],
    'W4MEAN': ['plain', 'layer'],
}
