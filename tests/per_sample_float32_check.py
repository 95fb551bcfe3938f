"""Per-sample blocks on a real-shaped convolutional network in float32 with oneDNN on, in
a process of its own (tests/test_float32.py): Laplacian, Jacobian in both modes and
Hessian of a network with 3 input channels, 16 and 32 filters, BatchNorm (inference:
samples do not interact), residual additions and global pooling, against its float64
twin, imperative and hybridized; the float64 Laplacian against central differences of
InputGradient (one direction, nothing folded); and the parameter gradient of a loss on
the Laplacian, float32 against float64.  A 3x6x6 input has 108 directions, folded into
the batch axis and summed and repeated by matrix products (transform._GEMM_DIRECTIONS)."""
import json

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

import mxgradlayer as mg
from mxgradlayer.test_util import check_param_grads

SHAPE = (3, 6, 6)


class Residual(gluon.HybridBlock):
    def __init__(self, channels, stride=1, project=False, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv1 = gluon.nn.Conv2D(channels, 3, stride, 1)
            self.bn1 = gluon.nn.BatchNorm()
            self.conv2 = gluon.nn.Conv2D(channels, 3, 1, 1)
            self.bn2 = gluon.nn.BatchNorm()
            self.proj = gluon.nn.Conv2D(channels, 1, stride) if project else None

    def hybrid_forward(self, F, x):
        h = self.bn2(self.conv2(F.Activation(self.bn1(self.conv1(x)), act_type='softrelu')))
        return F.tanh(h + (self.proj(x) if self.proj is not None else x))


def network(outputs):
    net = gluon.nn.HybridSequential()
    with net.name_scope():
        net.add(gluon.nn.Conv2D(16, 3, 1, 1), gluon.nn.BatchNorm(), gluon.nn.Activation('tanh'),
                Residual(16), Residual(32, 2, project=True), gluon.nn.GlobalAvgPool2D(),
                gluon.nn.Dense(outputs))
    return net


def twins(outputs, rng):
    """The float32 network and its float64 twin, BatchNorm with moved running statistics."""
    a = network(outputs)
    a.initialize(mx.init.Xavier(magnitude=2.0))
    a(nd.zeros((1,) + SHAPE))
    for name, p in a.collect_params().items():
        if name.endswith('running_mean'):
            p.set_data(nd.array(rng.normal(0, 0.2, p.shape)))
        elif name.endswith('running_var'):
            p.set_data(nd.array(rng.uniform(0.5, 2.0, p.shape)))
    b = network(outputs)
    b.initialize()
    b(nd.zeros((1,) + SHAPE))
    for p, q in zip(a.collect_params().values(), b.collect_params().values()):
        q.set_data(p.data())
    b.cast('float64')
    return a, b


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


def laplacian_by_differences(net, x, h=1e-4):
    """sum_i d/dx_i (d net / d x_i), central differences of InputGradient (float64)."""
    grad = mg.InputGradient(net)
    total = np.zeros(x.shape[0])
    flat = x.reshape(x.shape[0], -1)
    for i in range(flat.shape[1]):
        parts = []
        for sign in (1, -1):
            y = flat.copy()
            y[:, i] += sign * h
            parts.append(grad(nd.array(y.reshape(x.shape), dtype='float64')).asnumpy()
                         .reshape(x.shape[0], -1)[:, i])
        total += (parts[0] - parts[1]) / (2 * h)
    return total.reshape(-1, 1)


def main():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2,) + SHAPE)
    x32, x64 = nd.array(x, dtype='float32'), nd.array(x, dtype='float64')
    worst = {}
    scalar32, scalar64 = twins(1, rng)
    vector32, vector64 = twins(10, rng)
    cases = [('Laplacian', lambda n: mg.Laplacian(n), scalar32, scalar64),
             ('Hessian', lambda n: mg.Hessian(n), scalar32, scalar64),
             ('Jacobian forward', lambda n: mg.Jacobian(n, mode='forward'), vector32, vector64),
             ('Jacobian reverse', lambda n: mg.Jacobian(n, mode='reverse'), vector32, vector64)]
    for name, build, n32, n64 in cases:
        for hybridize in (False, True):
            b32, b64 = build(n32), build(n64)
            if hybridize:
                b32.hybridize()
                b64.hybridize()
            got, ref = b32(x32).asnumpy(), b64(x64).asnumpy()
            key = f'{name} hybridized={hybridize}'
            worst[key] = rel(got, ref)
            print(f'{key}: float32 vs float64 relative error {worst[key]:.2e} '
                  f'(shape {got.shape})', flush=True)
            if name == 'Laplacian' and not hybridize:
                fd = laplacian_by_differences(scalar64, x)
                worst['Laplacian float64 vs differences'] = rel(ref, fd)
                print(f'Laplacian float64 vs central differences of InputGradient '
                      f'{worst["Laplacian float64 vs differences"]:.2e}', flush=True)
    grads = []
    for net, xa in ((scalar32, x32), (scalar64, x64)):
        blk = mg.Laplacian(net)
        blk.hybridize()
        with autograd.record(train_mode=False):  # BatchNorm in training would mix samples
            loss = nd.sum(nd.square(blk(xa)))
        loss.backward()
        grads.append(np.concatenate([p.grad().asnumpy().ravel().astype(np.float64)
                                     for p in net.collect_params().values()
                                     if p.grad_req != 'null']))
    worst['Laplacian loss parameter gradient'] = rel(grads[0], grads[1])
    print(f'Laplacian loss parameter gradient: float32 vs float64 relative error '
          f'{worst["Laplacian loss parameter gradient"]:.2e}', flush=True)
    # and the float64 one against central differences along a random parameter direction
    worst['Laplacian loss parameter gradient float64 vs differences'] = check_param_grads(
        mg.Laplacian(scalar64), [x64], rtol=1e-6, train_mode=False)
    print(f'float64 vs central differences '
          f'{worst["Laplacian loss parameter gradient float64 vs differences"]:.2e}',
          flush=True)
    print('result ' + json.dumps(worst))


if __name__ == '__main__':
    main()
