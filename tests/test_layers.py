"""Networks built from gluon.nn's convolution, pooling, normalisation and dropout layers,
through the derivative blocks: finite differences in float64, imperative and hybridized,
first and second order, with parameter gradients; BatchNorm in both modes; Dropout's mask."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

import mxgradlayer as mg
from mxgradlayer.errors import SampleCouplingError, UnsupportedOperatorError
from mxgradlayer.test_util import (check_grads, check_param_grads, fd_directional,
                                   fd_laplacian, relative_error)

from helpers import array, exact_primal


def _seq(*layers):
    net = nn.HybridSequential()
    net.add(*layers)
    return net


def _ready(net, x, seed=0):
    """Initialise in float64 and give normalisation layers non-trivial running statistics."""
    mx.random.seed(seed)
    net.initialize(mx.init.Normal(0.5))
    net.cast('float64')
    net(x)
    rng = np.random.default_rng(seed)
    for name, p in net.collect_params().items():
        if name.endswith('running_mean'):
            p.set_data(nd.array(rng.uniform(-0.5, 0.5, p.shape), dtype='float64'))
        elif name.endswith('running_var'):
            p.set_data(nd.array(rng.uniform(0.5, 2.0, p.shape), dtype='float64'))
        elif name.endswith('gamma') or name.endswith('beta'):
            p.set_data(nd.array(rng.uniform(0.5, 1.5, p.shape), dtype='float64'))
    return net


def conv_critic():
    return _seq(nn.Conv2D(4, 3, strides=2, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2D(6, 3, padding=1, groups=2, activation='tanh'), nn.MaxPool2D(2),
                nn.BatchNorm(), nn.Dense(1))


def conv_classifier():
    return _seq(nn.Conv2D(3, (3, 2), padding=(1, 0), dilation=(1, 2)), nn.LayerNorm(axis=1),
                nn.Activation('softrelu'), nn.AvgPool2D(2, strides=1),
                nn.Conv2DTranspose(2, 3, strides=2, padding=1, output_padding=1),
                nn.GroupNorm(num_groups=2), nn.GlobalMaxPool2D(), nn.Flatten(), nn.Dense(3))


def conv1d_net():
    return _seq(nn.Conv1D(4, 3, padding=1, activation='tanh'), nn.MaxPool1D(2),
                nn.Conv1DTranspose(3, 2, strides=2), nn.AvgPool1D(3, padding=1,
                                                                  count_include_pad=False),
                nn.GlobalAvgPool1D(), nn.Flatten(), nn.Dense(1))


def normalised_mlp():
    return _seq(nn.Dense(8, activation='tanh'), nn.LayerNorm(), nn.Dropout(0.3),
                nn.Dense(8), nn.BatchNorm(), nn.Activation('sigmoid'), nn.Dense(2))


NETS = {
    'conv_critic': (conv_critic, (2, 1, 8, 8)),
    'conv_classifier': (conv_classifier, (2, 2, 6, 7)),
    'conv1d': (conv1d_net, (3, 2, 8)),
    'normalised_mlp': (normalised_mlp, (3, 4)),
}


def _net(name):
    build, shape = NETS[name]
    x = array(shape, seed=1)
    return _ready(build(), x), x


@pytest.mark.parametrize('hybridize', [False, True], ids=['imperative', 'hybridized'])
@pytest.mark.parametrize('name', sorted(NETS))
def test_jvp_vjp_second_order(name, hybridize):
    net, x = _net(name)
    # LeakyReLU's MXNet kernel is float32-accurate: differences of the exact primitives
    check_grads(net, [x], order=2, hybridize=hybridize, reference=exact_primal(net))


@pytest.mark.parametrize('name', sorted(NETS))
def test_input_gradient_and_laplacian(name):
    net, x = _net(name)
    scalar = _seq(net, nn.HybridLambda(lambda F, y: F.sum(y, axis=1, keepdims=True)))
    grad = mg.InputGradient(scalar)(x).asnumpy()
    exact = exact_primal(scalar)
    fd = [fd_directional(exact, [x], 0, nd.array(e.reshape(x.shape), dtype='float64'))[0]
          for e in np.eye(x.size)]
    ref = np.stack([f.asnumpy().sum() for f in fd]).reshape(x.shape)
    assert relative_error(grad, ref) < 1e-6
    lap = mg.Laplacian(scalar)
    lap.hybridize()
    assert relative_error(lap(x).asnumpy(), fd_laplacian(mg.Jacobian(scalar), [x], 0)) < 1e-6


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('name', ['conv_critic', 'conv_classifier'])
def test_gradient_penalty_parameter_gradients(name, hybridize):
    """WGAN-GP's term (|grad_x D(x)| - 1)^2 trained through: parameter gradients vs FD
    (in training: conv_critic's BatchNorm of (N, C, H, W) uses batch statistics)."""
    net, x = _net(name)
    scalar = _seq(net, nn.HybridLambda(lambda F, y: F.sum(y, axis=1, keepdims=True)))
    block = mg.InputGradient(scalar)
    if hybridize:
        block.hybridize()

    def penalty(outputs):
        g = outputs[0]
        return ((g.reshape((g.shape[0], -1)).norm(axis=1) - 1) ** 2).sum()
    check_param_grads(block, [x], loss=penalty)


def _bn_dense():
    return _seq(nn.Dense(5, activation='tanh'), nn.BatchNorm(), nn.Dense(1)), (4, 3)


def _bn_conv2d():
    """BatchNorm(axis=1) of (N, C, H, W), with gamma, and a residual-style sum after it."""
    return _seq(nn.Conv2D(3, 3, padding=1, activation='tanh'), nn.BatchNorm(center=True),
                nn.Conv2D(2, 1), nn.BatchNorm(scale=False), nn.Activation('softrelu'),
                nn.GlobalAvgPool2D(), nn.Dense(1)), (3, 2, 5, 4)


def _bn_conv1d():
    return _seq(nn.Conv1D(3, 3, activation='tanh'), nn.BatchNorm(), nn.Dense(1)), (4, 2, 6)


_BN_NETS = {'dense': _bn_dense, 'conv2d': _bn_conv2d, 'conv1d': _bn_conv1d}


@pytest.mark.parametrize('layout', sorted(_BN_NETS))
def test_batchnorm_training_mode_is_the_total_derivative(layout):
    net, shape = _BN_NETS[layout]()
    net = _ready(net, array(shape, seed=2))
    x = array(shape, seed=3)
    stats = [p for n, p in net.collect_params().items() if n.endswith('running_mean')][0]

    def f(z):  # the training-mode value, batch statistics
        with autograd.record():
            return net(z).sum()
    before = stats.data().copy()
    with autograd.record():
        out = net(x)
    out.backward()
    moved_by_net = stats.data().copy()  # MXNet moves the statistics in backward
    assert relative_error(moved_by_net.asnumpy(), before.asnumpy()) > 1e-3
    for hybridize in (False, True):
        stats.set_data(before)
        block = mg.InputGradient(net)
        if hybridize:
            block.hybridize()
        with autograd.record():
            loss = (block(x) ** 2).sum()  # a loss on the derivative alone
        loss.backward()
        assert relative_error(stats.data().asnumpy(), moved_by_net.asnumpy()) < 1e-12
    stats.set_data(before)
    with autograd.record():
        grad = mg.InputGradient(net)(x)
    eps = 1e-6
    ref = np.zeros(x.shape)
    for index in np.ndindex(*x.shape):
        d = np.zeros(x.shape)
        d[index] = eps
        d = nd.array(d, dtype='float64')
        ref[index] = (f(x + d) - f(x - d)).asscalar() / (2 * eps)
    assert relative_error(grad.asnumpy(), ref) < 1e-6
    # second order in training: HVP against differences of the training-mode gradient
    v = array(x.shape, seed=16)
    with autograd.record():
        hv = mg.HVP(net)(x, v).asnumpy()
        ig = mg.InputGradient(net)
        hv_ref = ((ig(x + eps * v) - ig(x - eps * v)) / (2 * eps)).asnumpy()
    assert relative_error(hv, hv_ref) < 1e-6
    # inference: running statistics, a per-sample map, so per-sample blocks work
    assert mg.Jacobian(net)(x).shape == (shape[0], 1) + shape[1:]
    with autograd.record():
        with pytest.raises(SampleCouplingError, match='batch'):
            mg.Jacobian(net)(x)


@pytest.mark.parametrize('layout', sorted(_BN_NETS))
def test_batchnorm_hybridized_follows_the_mode(layout):
    net, shape = _BN_NETS[layout]()
    net = _ready(net, array(shape, seed=2))
    x = array(shape, seed=3)
    plain = mg.InputGradient(net)
    hybrid = mg.InputGradient(net)
    hybrid.hybridize()
    for _ in range(2):
        assert relative_error(hybrid(x).asnumpy(), plain(x).asnumpy()) < 1e-12
        with autograd.record():
            got, ref = hybrid(x), plain(x)
        assert relative_error(got.asnumpy(), ref.asnumpy()) < 1e-12
    with autograd.record():
        training = plain(x)
    assert relative_error(training.asnumpy(), plain(x).asnumpy()) > 1e-3


def test_dropout_mask_is_shared_by_value_and_derivative():
    net = _seq(nn.Dropout(0.5), nn.HybridLambda(lambda F, z: F.sum(F.square(z), axis=1)))
    x = array((64, 8), seed=4)
    for hybridize in (False, True):
        block = mg.InputGradient(net, return_output=True)
        if hybridize:
            block.hybridize()
        with autograd.record():
            value, grad = block(x)
        # value = sum((m x)^2) with m in {0, 2}, grad = 2 m^2 x: value = <grad, x> / 2
        assert relative_error(value.asnumpy(), (grad * x).sum(axis=1).asnumpy() / 2) < 1e-12
        dropped = (grad == 0).mean().asscalar()
        assert 0.3 < dropped < 0.7
        assert relative_error(block(x)[1].asnumpy(), 2 * x.asnumpy()) < 1e-12  # inference


def test_conv3d_and_strided_dilated_conv2d_nets():
    """No MXNet Deconvolution serves these: their transposes are built from Convolution."""
    for net, shape in ((_seq(nn.Conv3D(4, (3, 2, 2), strides=2, padding=1, dilation=(2, 1, 1),
                                       groups=2, activation='tanh'), nn.Dense(1)), (2, 2, 5, 5, 4)),
                       (_seq(nn.Conv2D(3, 3, strides=2, dilation=2, padding=1,
                                       activation='tanh'), nn.Dense(2)), (2, 2, 7, 8)),
                       (_seq(nn.Conv1D(4, 3, strides=2, padding=1, dilation=2, groups=2,
                                       activation='tanh'), nn.Dense(2)), (2, 2, 9))):
        x = array(shape, seed=5)
        _ready(net, x)
        check_grads(net, [x], order=2)
        check_param_grads(mg.InputGradient(net), [x])


def test_max_pool_ties_share_the_derivative():
    net = nn.HybridLambda(lambda F, z: F.Pooling(z, kernel=(2, 2), stride=(2, 2),
                                                  pool_type='max'))
    x = nd.zeros((1, 1, 2, 2), dtype='float64')
    grad = mg.InputGradient(net)(x)
    assert np.allclose(grad.asnumpy(), 0.25)


def test_ceil_mode_pooling_and_resampling_layers():
    """ceil_mode (pooling_convention='full', GoogLeNet), squeeze-and-excitation's
    adaptive pooling, bilinear resizing and channel shuffle, as layers of a network."""
    def body(F, x):
        x = F.Pooling(x, kernel=(3, 3), stride=(2, 2), pooling_convention='full',
                      pool_type='max')
        s = F.contrib.AdaptiveAvgPooling2D(x, output_size=1)
        x = F.broadcast_mul(x, F.sigmoid(s))
        x = F.contrib.BilinearResize2D(x, height=5, width=4)
        x = F.reshape(F.SwapAxis(F.reshape(x, shape=(0, -4, 2, -1, -2)), dim1=1, dim2=2),
                      shape=(0, -3, -2))  # channel shuffle, as in ShuffleNet
        return F.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type='avg',
                         pooling_convention='full')
    net = _seq(nn.Conv2D(4, 3, activation='tanh'), nn.HybridLambda(body), nn.Dense(2))
    x = array((2, 2, 9, 8), seed=3)
    _ready(net, x)
    check_grads(net, [x], order=2)
    check_param_grads(mg.InputGradient(net), [x])


@pytest.mark.parametrize('layer,why', [
    (nn.HybridLambda(lambda F, x: F.Pooling(x, kernel=(2, 2), pool_type='lp', p_value=2)),
     'pool_type lp'),
    (nn.Conv2DTranspose(2, 3, strides=2, dilation=2), 'stride and dilation'),
])
def test_refused_attribute_combinations(layer, why):
    net = _seq(layer)
    x = array((1, 2, 5, 5), seed=7)
    _ready(net, x)
    with pytest.raises(UnsupportedOperatorError, match=why):
        mg.InputGradient(net)(x)
    assert net(x).shape[0] == 1  # the network itself still works


def test_check_reports_by_layer_and_sweep():
    net = _seq(nn.Conv2D(2, 3), nn.BatchNorm(), nn.Dense(1))
    x = array((2, 1, 5, 5))
    _ready(net, x)
    report = mg.check(net, x)
    assert report.ok, str(report)
    assert [cls for _, cls, _, _ in report.layers] == ['Conv2D', 'BatchNorm', 'Dense']
    assert all(status == 'covered' for _, _, status, _ in report.layers)
    assert ('BatchNorm', 'lowered') in {(op, st) for _, op, st in report.nodes}

    pooled = _seq(nn.Conv2D(2, 3), nn.HybridLambda(
        lambda F, x: F.Pooling(x, kernel=(2, 2), pool_type='lp', p_value=2)), nn.Dense(1))
    _ready(pooled, x)
    report = mg.check(pooled, x)
    assert not report.ok and not report.missing
    pool = next(layer for layer in report.layers if layer[1] == 'HybridLambda')
    assert pool[2].startswith('refused in reverse'), str(report)
    assert 'pool_type lp' in report.modes['forward']


class _TokensAndFeatures(gluon.HybridBlock):
    """Embedding of integer tokens (input 0) next to continuous features (input 1)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.embed = nn.Embedding(7, 3)
            self.dense = nn.Dense(3, activation='tanh')
            self.out = nn.Dense(1)

    def hybrid_forward(self, F, tokens, x):
        return self.out(F.concat(F.flatten(self.embed(tokens)), self.dense(x), dim=1))


def test_embedding_indices_are_refused_as_wrt_and_the_rest_is_exact():
    tokens = nd.array([[0, 3], [6, 1], [2, 2]], dtype='float64')
    x = array((3, 4), seed=8)
    net = _TokensAndFeatures()
    net.initialize(mx.init.Normal(0.5))
    net.cast('float64')
    check_grads(net, [tokens, x], wrt=1, order=2)
    check_param_grads(mg.InputGradient(net, wrt=1), [tokens, x])
    with pytest.raises(UnsupportedOperatorError, match='integer indices'):
        mg.InputGradient(net, wrt=0)(tokens, x)
    report = mg.check(net, tokens, x, wrt=0)
    assert not report.ok and 'integer indices' in report.modes['reverse']


def test_couple_samples_takes_derivatives_along_shifts_of_the_whole_batch():
    net = _ready(_seq(nn.Dense(5, activation='tanh'), nn.BatchNorm(), nn.Dense(2),
                      nn.Activation('tanh')), array((4, 3), seed=2))
    x = array((4, 3), seed=9)
    eps = 1e-4

    def shifted(k, h):
        d = nd.zeros_like(x)
        d[:, k] = h
        with autograd.record():  # training mode: batch statistics
            return net(x + d).asnumpy()
    base = shifted(0, 0.0)
    jac_ref = np.stack([(shifted(k, eps) - shifted(k, -eps)) / (2 * eps) for k in range(3)],
                       axis=-1)
    lap_ref = sum((shifted(k, eps) - 2 * base + shifted(k, -eps)) / eps ** 2 for k in range(3))
    with autograd.record():
        with pytest.raises(SampleCouplingError, match='couple_samples=True'):
            mg.Laplacian(net)(x)
        jac = mg.Jacobian(net, couple_samples=True)(x)
        lap = mg.Laplacian(net, couple_samples=True)(x)
        lap_ht = mg.Laplacian(net, method='hessian_trace', couple_samples=True)(x)
    assert relative_error(jac.asnumpy(), jac_ref) < 1e-7
    assert relative_error(lap.asnumpy(), lap_ref) < 1e-4  # second differences: ~eps^2
    assert relative_error(lap_ht.asnumpy(), lap.asnumpy()) < 1e-10
    # without interaction (inference) it is the per-sample derivative
    assert relative_error(mg.Laplacian(net, couple_samples=True)(x).asnumpy(),
                          mg.Laplacian(net)(x).asnumpy()) < 1e-12


@pytest.mark.parametrize('hybridize', [False, True], ids=['imperative', 'hybridized'])
@pytest.mark.parametrize('name', sorted(NETS))
def test_float32_matches_float64(name, hybridize):
    """float32 runs MXNet's oneDNN kernels (float64 does not): same blocks, same numbers."""
    net64, x = _net(name)
    net32 = NETS[name][0]()
    x32 = x.astype('float32')
    net32.initialize()
    net32(x32)
    for p32, p64 in zip(net32.collect_params().values(), net64.collect_params().values()):
        p32.set_data(p64.data().astype('float32'))
    net32(x32)  # oneDNN now holds the weights in its own layout, as in training
    v = array(x.shape, seed=11)
    for make, extra in ((mg.InputGradient, []), (mg.JVP, [v]), (mg.HVP, [v]),
                        (mg.Laplacian, [])):
        b64, b32 = make(net64), make(net32)
        if hybridize:
            b64.hybridize()
            b32.hybridize()
        got = b32(x32, *[e.astype('float32') for e in extra])
        assert got.dtype == np.float32
        ref = b64(x, *extra).asnumpy()
        assert relative_error(got.asnumpy(), ref) < 1e-3, make.__name__


@pytest.mark.parametrize('hybridize', [False, True], ids=['imperative', 'hybridized'])
def test_float32_wide_convolutions_use_onednn_layouts(hybridize):
    """With 8 channels oneDNN keeps weights in blocked layouts, which a transposed
    operator reading the same weight must not trip over."""
    def build():
        return _seq(nn.Conv2D(8, 3, padding=1, activation='relu'),
                    nn.Conv2DTranspose(8, 3, padding=1, activation='tanh'), nn.Dense(2))
    x = array((2, 3, 8, 8), seed=12)
    net64 = _ready(build(), x)
    net32 = build()
    net32.initialize()
    net32(x.astype('float32'))
    for p32, p64 in zip(net32.collect_params().values(), net64.collect_params().values()):
        p32.set_data(p64.data().astype('float32'))
    net32(x.astype('float32'))
    v = array(x.shape, seed=13)
    for make, extra in ((mg.InputGradient, []), (mg.HVP, [v])):
        b32, b64 = make(net32), make(net64)
        if hybridize:
            b32.hybridize()
        got = b32(x.astype('float32'), *[e.astype('float32') for e in extra]).asnumpy()
        assert relative_error(got, b64(x, *extra).asnumpy()) < 1e-3


@pytest.mark.parametrize('act', [nn.ELU, nn.SELU, lambda: nn.LeakyReLU(0.1)],
                         ids=['ELU', 'SELU', 'LeakyReLU'])
@pytest.mark.parametrize('make', [lambda n: mg.JVP(n), lambda n: mg.Laplacian(n)],
                         ids=['JVP', 'Laplacian'])
def test_exponential_units_before_max_pooling_train_imperatively(act, make):
    """Regression: written with `where`, these layers' values fed only the pooling mask
    in a JVP, and mxnet 1.9.1's imperative backward segfaulted."""
    net = _seq(nn.Conv2D(3, 1), act(), nn.MaxPool2D(2), nn.Flatten(), nn.Dense(1))
    x = array((2, 2, 4, 4), seed=14)
    _ready(net, x)
    blk = make(net)
    args = [x, array(x.shape, seed=15)] if isinstance(blk, mg.JVP) else [x]
    check_param_grads(blk, args, train_mode=False)


class _GradientPenalty(gluon.HybridBlock):
    """sum |grad_x net(x)|^2, with the gradient as a child layer."""

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.grad = mg.InputGradient(net)

    def hybrid_forward(self, F, x):
        return F.sum(F.square(self.grad(x)))


@pytest.mark.parametrize('layout', sorted(_BN_NETS))
def test_batchnorm_inside_a_hybridized_parent_follows_the_mode_at_run_time(layout):
    """The parent's graph is compiled once, in whichever mode it was first called; the
    gradient inside it still uses batch statistics in training and running ones outside."""
    net, shape = _BN_NETS[layout]()
    net = _ready(net, array(shape, seed=2))
    x = array(shape, seed=3)
    for first_in_training in (True, False):
        plain, parent = _GradientPenalty(net), _GradientPenalty(net)
        parent.hybridize(static_alloc=True)
        order = (True, False, True) if first_in_training else (False, True, False)
        for training in order:
            with autograd.record(train_mode=training):
                got, ref = parent(x), plain(x)
            assert relative_error(got.asnumpy(), ref.asnumpy()) < 1e-12, training
    with autograd.record(train_mode=True):
        training_value = plain(x)
    with autograd.record(train_mode=False):
        inference_value = plain(x)
    assert relative_error(training_value.asnumpy(), inference_value.asnumpy()) > 1e-3


@pytest.mark.parametrize('shape,axis', [((3, 4, 2), 1), ((2, 3, 4, 5), 1), ((2, 3, 2, 3, 2), 1),
                                        ((5, 4), 1), ((2, 3, 4, 5), -1)])
@pytest.mark.parametrize('scale', [True, False])
def test_batchnorm_lowering_computes_what_mxnet_computes_in_training(shape, axis, scale):
    """Batch statistics (axis 1 of rank > 2 by matrix products, otherwise by broadcasts)
    against MXNet's own kernel in float32, imperative and hybridized, with a mean far
    from zero so that a one-pass variance would lose digits."""
    net = _seq(nn.BatchNorm(axis=axis, scale=scale, epsilon=1e-3))
    net.initialize()
    rng = np.random.default_rng(7)
    channels = shape[axis]
    for name, p in net.collect_params().items():
        low, high = (0.5, 2.0) if name.endswith(('var', 'gamma')) else (-0.5, 0.5)
        p.set_data(nd.array(rng.uniform(low, high, channels)))
    x = nd.array(30.0 + rng.normal(size=shape), dtype='float32')
    for hybridize in (False, True):
        lowered = exact_primal(net)
        if hybridize:
            lowered.hybridize()
        for training in (True, False):
            with autograd.record(train_mode=training):
                got, ref = lowered(x).asnumpy(), net(x).asnumpy()
            assert np.max(np.abs(got - ref)) < 2e-5 * max(np.max(np.abs(ref)), 1.0), \
                (hybridize, training)


def test_batchnorm_training_float32_onednn_moves_the_statistics_like_gluon():
    """float32 with oneDNN on (its own process): the running statistics moved through an
    InputGradient in training equal those Gluon's own layer moves (to rounding), and the
    input gradient agrees with float64."""
    from isolated import result_of, run_script
    result = result_of(run_script('batchnorm_float32_check.py'))
    for key, err in result.items():
        limit = 1e-12 if key.startswith('float64') else 1e-5
        assert err < limit, (key, err)
