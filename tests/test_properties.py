"""Property-based checks over random networks (hypothesis, fixed seed, bounded examples).

The default run draws 25 networks; ``make test-slow`` adds a soak run of 1000."""
import numpy as np
import pytest
import mxnet as mx
from hypothesis import HealthCheck, given, settings, strategies as st
from mxnet import gluon, nd

import mxgradlayer as mg
from mxgradlayer.test_util import (check_param_grads, fd_directional, fd_jacobian,
                                   relative_error)

from helpers import ACTIVATIONS, exact_primal

def _settings(n):
    return settings(max_examples=n, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


class RandomNet(gluon.HybridBlock):
    """Dense layers with random widths and activations, optional skip connections, and
    optionally a second input mixed in after the first layer."""

    def __init__(self, n_in, widths, acts, skips, n_out, second_input, **kwargs):
        super().__init__(**kwargs)
        self._second = second_input
        units = [n_in] + list(widths)
        # a skip connection where a layer keeps the width of its input
        self._skips = [s and units[i] == units[i + 1] for i, s in enumerate(skips)]
        with self.name_scope():
            self.layers, self.acts = [], []
            units = n_in
            for i, (w, a) in enumerate(zip(widths, acts)):
                layer = gluon.nn.Dense(w, in_units=units)
                act = ACTIVATIONS[a]()
                self.register_child(layer, f'dense{i}')
                self.register_child(act, f'act{i}')
                self.layers.append(layer)
                self.acts.append(act)
                units = w
            self.head = gluon.nn.Dense(n_out, in_units=units)
            if second_input:
                self.mix = gluon.nn.Dense(widths[0], in_units=n_in)

    def hybrid_forward(self, F, x, *rest):
        h = x
        for i, (layer, act) in enumerate(zip(self.layers, self.acts)):
            z = act(layer(h))
            if i == 0 and self._second:
                z = z * F.tanh(self.mix(rest[0]))
            h = z + h if self._skips[i] else z
        return self.head(h)


@st.composite
def networks(draw):
    depth = draw(st.integers(1, 4))
    n_in = draw(st.integers(1, 4))
    widths = [draw(st.integers(1, 16)) for _ in range(depth)]
    acts = [draw(st.sampled_from(sorted(ACTIVATIONS))) for _ in range(depth)]
    skips = [draw(st.booleans()) for _ in range(depth)]
    n_out = draw(st.integers(1, 3))
    second = draw(st.booleans())
    batch = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 10 ** 6))
    return n_in, widths, acts, skips, n_out, second, batch, seed


DTYPES = st.sampled_from(['float64', 'float32'])


BLOCKS = ['InputGradient', 'Jacobian', 'JVP', 'VJP', 'HVP', 'Hessian', 'Laplacian',
          'Divergence', 'nested']


def _network(spec, dtype='float64'):
    n_in, widths, acts, skips, n_out, second, batch, seed = spec
    mx.random.seed(seed)
    net = RandomNet(n_in, widths, acts, skips, n_out, second)
    net.initialize(mx.init.Normal(0.6))
    net.cast(dtype)
    return net


def _build(spec):
    n_in, widths, acts, skips, n_out, second, batch, seed = spec
    net = _network(spec)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.5, 1.5, size=(batch, n_in))
    x = np.sign(x) * (0.05 + np.abs(x))  # keep clear of kinks at 0
    args = [nd.array(x, dtype='float64')]
    if second:
        args.append(nd.array(rng.uniform(-1, 1, size=(batch, n_in)), dtype='float64'))
    return net, args, rng


CASES = (networks(), st.sampled_from(BLOCKS), st.booleans(), st.integers(0, 1), DTYPES)


@_settings(25)
@given(*CASES)
def test_random_networks_against_finite_differences(spec, which, hybridize, wrt_choice, dtype):
    check_case(spec, which, hybridize, wrt_choice, dtype)


@pytest.mark.slow
@_settings(1000)
@given(*CASES)
def test_soak_random_networks(spec, which, hybridize, wrt_choice, dtype):
    check_case(spec, which, hybridize, wrt_choice, dtype)


def check_case(spec, which, hybridize, wrt_choice, dtype='float64'):
    """One random network, one block, against finite differences in float64 and with the
    parameter gradients of a loss on the block; for ``dtype='float32'`` the same block on
    a float32 copy of the network must also agree with the float64 result."""
    net, args, rng = _build(spec)
    wrt = wrt_choice if len(args) > 1 else 0
    ref_net = exact_primal(net)
    x = args[wrt]
    v = nd.array(rng.standard_normal(x.shape), dtype='float64')
    out = ref_net(*args)
    w = nd.array(rng.standard_normal(out.shape), dtype='float64')
    fd = fd_directional(ref_net, args, wrt, v)[0]
    extra = []
    if which == 'InputGradient':
        blk = mg.InputGradient(net, wrt)
        check = lambda g: relative_error((g * v).sum().asnumpy(), fd.sum().asnumpy())
    elif which == 'JVP':
        blk, extra = mg.JVP(net, wrt), [v]
        check = lambda g: relative_error(g.asnumpy(), fd.asnumpy())
    elif which == 'VJP':
        blk, extra = mg.VJP(net, wrt), [w]
        check = lambda g: relative_error((g * v).sum().asnumpy(), (w * fd).sum().asnumpy())
    elif which == 'Jacobian':
        blk = mg.Jacobian(net, wrt)
        check = lambda g: relative_error(g.asnumpy(), fd_jacobian(ref_net, args, wrt))
    elif which == 'HVP':
        blk, extra = mg.HVP(net, wrt), [v]
        ref = fd_directional(mg.InputGradient(net, wrt), args, wrt, v)[0]
        check = lambda g: relative_error(g.asnumpy(), ref.asnumpy())
    elif which == 'Hessian':
        blk = mg.Hessian(net, wrt)
        check = lambda g: relative_error(g.asnumpy(),
                                         fd_jacobian(mg.Jacobian(net, wrt), args, wrt))
    elif which == 'Laplacian':
        blk = mg.Laplacian(net, wrt)
        hess = mg.Hessian(net, wrt)(*args).asnumpy()
        check = lambda g: relative_error(g.asnumpy(), np.trace(hess, axis1=-2, axis2=-1))
    elif which == 'Divergence':
        blk = mg.Divergence(mg.InputGradient(net, wrt), wrt)
        hess = fd_jacobian(mg.InputGradient(net, wrt), args, wrt)
        check = lambda g: relative_error(g.asnumpy(), np.trace(hess, axis1=-2, axis2=-1))
    else:  # a nesting of two: JVP of InputGradient = HVP, checked by FD of the gradient
        blk, extra = mg.JVP(mg.InputGradient(net, wrt), wrt), [v]
        ref = fd_directional(mg.InputGradient(net, wrt), args, wrt, v)[0]
        check = lambda g: relative_error(g.asnumpy(), ref.asnumpy())
    if hybridize:
        blk.hybridize()
    got = blk(*args, *extra)
    err = check(got)
    assert err < 1e-6, f'{which}: relative error {err:.3g}'
    check_param_grads(blk, args + extra, rtol=1e-5)
    if dtype == 'float32':
        net32 = _network(spec, 'float32')
        for p32, p64 in zip(net32.collect_params().values(), net.collect_params().values()):
            p32.set_data(p64.data().astype('float32'))
        blk32 = _same_block(blk, which, net32, wrt)
        if hybridize:
            blk32.hybridize()
        got32 = blk32(*[a.astype('float32') for a in args + extra])
        assert got32.dtype == np.float32
        err32 = relative_error(got32.asnumpy(), got.asnumpy())
        assert err32 < 2e-3, f'{which} in float32: relative error {err32:.3g}'


def _same_block(blk, which, net, wrt):
    if which == 'Divergence':
        return mg.Divergence(mg.InputGradient(net, wrt), wrt)
    if which == 'nested':
        return mg.JVP(mg.InputGradient(net, wrt), wrt)
    return getattr(mg, which)(net, wrt)


# ----- random convolutional / normalised networks from gluon.nn layers -----
NORMS = {
    'none': lambda c: None,
    'batch': lambda c: gluon.nn.BatchNorm(),
    'layer': lambda c: gluon.nn.LayerNorm(axis=1),
    'instance': lambda c: gluon.nn.InstanceNorm(),
    'group': lambda c: gluon.nn.GroupNorm(num_groups=2 if c % 2 == 0 else 1),
}
POOLS = {
    'none': lambda: None,
    'max': lambda: gluon.nn.MaxPool2D(2, strides=1),
    'max2': lambda: gluon.nn.MaxPool2D(2),
    'avg': lambda: gluon.nn.AvgPool2D(2, strides=1, padding=1, count_include_pad=False),
    'gmax': lambda: gluon.nn.GlobalMaxPool2D(),
    'gavg': lambda: gluon.nn.GlobalAvgPool2D(),
}


@st.composite
def conv_networks(draw):
    layers = []
    for _ in range(draw(st.integers(1, 2))):
        layers.append(('conv', draw(st.integers(2, 4)), draw(st.integers(1, 3)),
                       draw(st.integers(1, 2)), draw(st.integers(0, 1)),
                       draw(st.integers(1, 2)), draw(st.booleans()),
                       draw(st.sampled_from(sorted(ACTIVATIONS))),
                       draw(st.sampled_from(sorted(NORMS)))))
    return (draw(st.integers(1, 2)), draw(st.integers(4, 6)), layers,
            draw(st.sampled_from(sorted(POOLS))), draw(st.booleans()), draw(st.booleans()),
            draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(0, 10 ** 6)))


def _conv_network(spec):
    channels, size, layers, pool, transpose, dropout, n_out, batch, seed = spec
    net = gluon.nn.HybridSequential()
    c = channels
    for _, filters, kernel, stride, pad, dilation, grouped, act, norm in layers:
        groups = 2 if grouped and c % 2 == 0 and filters % 2 == 0 else 1
        net.add(gluon.nn.Conv2D(filters, kernel, strides=stride, padding=pad,
                                dilation=dilation, groups=groups))
        net.add(ACTIVATIONS[act]())
        if NORMS[norm](filters) is not None:
            net.add(NORMS[norm](filters))
        c = filters
    if transpose:
        net.add(gluon.nn.Conv2DTranspose(2, 2, strides=2, activation='tanh'))
    if POOLS[pool]() is not None:
        net.add(POOLS[pool]())
    if dropout:
        net.add(gluon.nn.Dropout(0.3))
    net.add(gluon.nn.Flatten(), gluon.nn.Dense(n_out))
    rng = np.random.default_rng(seed)
    x = nd.array(rng.uniform(-1.5, 1.5, size=(batch, channels, size, size)), dtype='float64')
    mx.random.seed(seed)
    net.initialize(mx.init.Normal(0.5))
    net.cast('float64')
    try:
        net(x)
    except (mx.base.MXNetError, ValueError):  # (deferred init re-raises as ValueError)
        return None, None, None  # a window larger than what is left of the image
    for name, p in net.collect_params().items():
        # biases off zero: a padded border then does not sit exactly on an activation's
        # kink, where central differences average the two one-sided derivatives
        if name.endswith('bias') or name.endswith('beta'):
            p.set_data(nd.array(rng.uniform(-0.5, 0.5, p.shape), dtype='float64'))
        elif name.endswith('running_var'):
            p.set_data(nd.array(rng.uniform(0.5, 2.0, p.shape), dtype='float64'))
        elif name.endswith('running_mean'):
            p.set_data(nd.array(rng.uniform(-0.5, 0.5, p.shape), dtype='float64'))
    return net, [x], rng


CONV_BLOCKS = ['InputGradient', 'JVP', 'VJP', 'Jacobian', 'HVP', 'Laplacian', 'Hessian']


@_settings(20)
@given(conv_networks(), st.sampled_from(CONV_BLOCKS), st.booleans())
def test_random_conv_networks_against_finite_differences(spec, which, hybridize):
    check_layer_case(spec, which, hybridize)


@pytest.mark.slow
@_settings(500)
@given(conv_networks(), st.sampled_from(CONV_BLOCKS), st.booleans())
def test_soak_random_conv_networks(spec, which, hybridize):
    check_layer_case(spec, which, hybridize)


def check_layer_case(spec, which, hybridize):
    from hypothesis import assume
    import os
    if os.environ.get('MXGL_CASE_LOG'):  # to find a case that kills the process
        with open(os.environ['MXGL_CASE_LOG'], 'a') as f:
            f.write(repr((spec, which, hybridize)) + '\n')
    net, args, rng = _conv_network(spec)
    assume(net is not None)
    ref_net = exact_primal(net)  # LeakyReLU and InstanceNorm kernels are not float64-exact
    x = args[0]
    v = nd.array(rng.standard_normal(x.shape), dtype='float64')
    out = ref_net(*args)
    w = nd.array(rng.standard_normal(out.shape), dtype='float64')
    extra = []
    along = lambda eps: fd_directional(ref_net, args, 0, v, eps)[0]
    # reference(eps): the central-difference oracle at step eps; a pairing (a scalar
    # <g, v> against the difference of sum(out) or <w, out>) or a full array
    if which == 'InputGradient':
        blk, pairing = mg.InputGradient(net), True
        reference = lambda eps: float(along(eps).sum().asscalar())
    elif which == 'JVP':
        blk, extra, pairing = mg.JVP(net), [v], False
        reference = lambda eps: along(eps).asnumpy()
    elif which == 'VJP':
        blk, extra, pairing = mg.VJP(net), [w], True
        reference = lambda eps: float((w * along(eps)).sum().asscalar())
    elif which == 'Jacobian':
        blk, pairing = mg.Jacobian(net), False
        reference = lambda eps: fd_jacobian(ref_net, args, 0, eps)
    elif which == 'HVP':
        blk, extra, pairing = mg.HVP(net), [v], False
        reference = lambda eps: fd_directional(mg.InputGradient(net), args, 0, v,
                                               eps)[0].asnumpy()
    elif which == 'Hessian':
        blk, pairing = mg.Hessian(net), False
        reference = lambda eps: fd_jacobian(mg.Jacobian(net), args, 0, eps)
    else:
        blk, pairing = mg.Laplacian(net), False
        reference = lambda eps: np.trace(fd_jacobian(mg.Jacobian(net), args, 0, eps).reshape(
            out.shape + (x[0].size, x[0].size)), axis1=-2, axis2=-1)
    if hybridize:
        blk.hybridize()
    got = blk(*args, *extra)
    # a pairing is measured relative to sum |g| |v|, with relative_error's floor of 1e-3:
    # it may cancel far below its terms, and a central difference (step 1e-6) has an
    # absolute error of order 1e-10 however small the derivative
    scale = max(float((got.abs() * v.abs()).sum().asscalar()), 1e-3) if pairing else None

    def distance(a, b):
        return abs(a - b) / scale if pairing else relative_error(a, b)

    measured = float((got * v).sum().asscalar()) if pairing else got.asnumpy()
    ref = reference(1e-6)
    err = distance(measured, ref)
    allowance = 0.0
    if err >= 1e-6:
        # The difference's own error, estimated by how far it moves when its step
        # halves: where rounding dominates (error eps |f| / h) it doubles, where
        # truncation does (h^2 f''' / 6) it falls by four, so twice the move bounds the
        # error at step 1e-6 either way.  Rounding is noise and one move can come out
        # small by chance, so the step is also doubled and the larger move counts.  A
        # wrong derivative stays off by more: the case of issue 17 (error 1.5e-6, moves
        # 8.9e-7) fails with its gradient 3e-4 off.
        allowance = 2 * max(distance(reference(5e-7), ref), distance(reference(2e-6), ref))
    assert err < 1e-6 + allowance, (f'{which}: relative error {err:.3g}; the difference '
                                    f'moves by up to {allowance / 2:.3g} when its step changes')
    check_param_grads(blk, args + extra, rtol=1e-5, train_mode=False)
