"""MXNet's NumPy interface (``npx.set_np()``): networks written with mx.np / mx.npx, as
Dive into Deep Learning writes them, through every derivative block.

Every NumPy operator row (tests/op_specs.py NUMPY_SPECS) goes through the same checker
as the legacy rows (`check_grads`, float64 central differences, to second order,
imperative and hybridized); the networks are checked to second order, against their
legacy twins with the same weights, hybridized, inside hybridized NumPy-mode parents,
trained, exported and re-imported.  float32 with oneDNN runs in its own process
(tests/numpy_float32_check.py).
"""
import os
import tempfile

import numpy as onp
import mxnet as mx
import pytest
from hypothesis import given, settings, strategies as st
from mxnet import autograd, gluon, npx
from mxnet.gluon import nn

import mxgradlayer as mg
from mxgradlayer import registry
from mxgradlayer.errors import UnsupportedOperatorError
from mxgradlayer.test_util import (check_grads, check_param_grads, check_taylor,
                                   fd_laplacian, relative_error)

from helpers import Lambda, OutputSum, d2l_resnet, exact_primal
from isolated import result_of, run_script
from op_specs import NUMPY_SPECS


@pytest.fixture(autouse=True)
def numpy_mode():
    npx.set_np()
    try:
        yield
    finally:
        npx.reset_np()


def np_array(shape, low=-2.0, high=2.0, seed=0, away=False, dtype='float64'):
    x = onp.random.default_rng(seed).uniform(low, high, size=shape)
    if away:
        x = onp.sign(x) * (0.2 + onp.abs(x))
    return mx.np.array(x, dtype=dtype)


def spec_args(spec, seed=0):
    return [np_array(s, spec.low, spec.high, seed + i, spec.away)
            for i, s in enumerate(spec.shapes)]


def traced_ops(block, args):
    graph = mg.tracing.trace(block, [(a.shape, a.dtype) for a in args], lowering=False)
    return {registry.op_key(e) for e in graph.nodes if e.op != 'null'}


@pytest.mark.parametrize('spec', NUMPY_SPECS, ids=[s.op for s in NUMPY_SPECS])
def test_numpy_operator_rules(spec):
    net = Lambda(spec.fn)
    args = spec_args(spec)
    assert spec.op in traced_ops(net, args), f'the row does not emit {spec.op}'
    reference = Lambda(spec.ref) if spec.ref else None
    for wrt in spec.wrt:
        check_grads(net, args, wrt=wrt, order=2, reference=reference)
    check_grads(net, args, wrt=spec.wrt[0], order=1, hybridize=True, reference=reference)


@pytest.mark.parametrize('spec', NUMPY_SPECS, ids=[s.op for s in NUMPY_SPECS])
def test_numpy_lowerings_compute_what_mxnet_computes(spec):
    """The rows above differentiate the lowered graph; this checks that the lowering is
    the function MXNet's own NumPy kernels compute (float64)."""
    net = Lambda(spec.fn)
    args = spec_args(spec)
    kernels = Lambda(spec.ref) if spec.ref else net  # (ref: MXNet's kernel is float32)
    got, want = exact_primal(net)(*args).asnumpy(), kernels(*args).asnumpy()
    assert got.shape == want.shape
    assert relative_error(got, want) < 1e-12


TAYLOR_SPECS = [s for s in NUMPY_SPECS if s.op in ('_npi_exp', '_npi_tanh', '_npi_multiply',
                                                   '_npi_power_scalar', '_np_sum',
                                                   '_npi_true_divide', '_npx_sigmoid',
                                                   '_npi_power', 'softmax', 'log_softmax', '_npi_einsum')]


@pytest.mark.parametrize('spec', TAYLOR_SPECS, ids=[s.op for s in TAYLOR_SPECS])
def test_numpy_operator_taylor(spec):
    check_taylor(Lambda(spec.fn), spec_args(spec), order=4, rtol=1e-5)


# ----- networks as Dive into Deep Learning writes them -----
def mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation='tanh'), nn.Dense(8, activation='sigmoid'), nn.Dense(2))
    return net


def lenet():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, kernel_size=3, padding=1, activation='sigmoid'),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Conv2D(6, kernel_size=3, activation='sigmoid'),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Dense(12, activation='sigmoid'), nn.Dense(3))
    return net


def resnet():
    return d2l_resnet(4, (4, 6), 2)


class Smooth(nn.HybridBlock):
    """A network in NumPy functions: matmul, where, concatenate, reductions, powers."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = nn.Dense(6, activation='tanh')

    def hybrid_forward(self, F, x):
        h = self.dense(x)
        a, b = F.np.split(h, 2, axis=1)
        z = F.np.concatenate([F.np.sin(a) * b, F.np.exp(-b ** 2), a / (1.0 + b * b)], axis=1)
        z = F.np.where(z > 0, z, 0.5 * z ** 3)
        s = F.np.sum(z, axis=1, keepdims=True) - F.np.mean(F.np.square(h), axis=1,
                                                          keepdims=True)
        q = F.np.matmul(F.np.expand_dims(z, 1), F.np.expand_dims(z, 2))  # (B, 1, 1)
        return F.np.concatenate([s, F.np.tanh(q.reshape(-1, 1))], axis=1)


NETS = {'mlp': (mlp, (5, 3)), 'smooth': (lambda: Smooth(), (4, 3)),
        'lenet': (lenet, (2, 1, 10, 10)), 'resnet': (resnet, (2, 3, 6, 6))}


def built(name, dtype='float64', seed=0):
    make, shape = NETS[name]
    mx.random.seed(seed)
    net = make()
    net.initialize(mx.init.Xavier(magnitude=2.0))
    x = np_array(shape, -1.0, 1.0, seed=seed + 1)
    net(x.astype('float32'))
    net.cast(dtype)
    return net, x.astype(dtype)


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('name', list(NETS))
def test_network_to_second_order(name, hybridize):
    net, x = built(name)
    check_grads(OutputSum(net), [x], order=2, hybridize=hybridize)


@pytest.mark.parametrize('name', ['mlp', 'smooth', 'resnet'])
def test_per_sample_blocks(name):
    """Jacobian, Hessian and Laplacian against central differences; hybridized equal to
    imperative; the results are NumPy arrays."""
    net, x = built(name)
    scalar = OutputSum(net)
    flat = x.reshape(x.shape[0], -1)
    jac = mg.Jacobian(net)(x)
    assert isinstance(jac, mx.np.ndarray)
    ref = onp.stack([mg.test_util.fd_directional(net, [x], 0, e)[0].asnumpy()
                     for e in _unit_directions(x)], axis=-1)
    assert relative_error(jac.asnumpy().reshape(ref.shape), ref) < 1e-6
    lap = mg.Laplacian(scalar)(x)
    assert isinstance(lap, mx.np.ndarray)
    assert relative_error(lap.asnumpy()[:, 0],
                          fd_laplacian(mg.InputGradient(scalar), [x], 0)) < 1e-5
    if name != 'resnet':  # (n^2 columns: the small networks only)
        hess = mg.Hessian(scalar)(x).asnumpy().reshape(x.shape[0], flat.shape[1], -1)
        assert relative_error(onp.trace(hess, axis1=1, axis2=2), lap.asnumpy()[:, 0]) < 1e-9
    for cls in (mg.Jacobian, mg.Laplacian):
        blk = cls(scalar)
        want = blk(x).asnumpy()
        blk.hybridize(static_alloc=True)
        assert relative_error(blk(x).asnumpy(), want) < 1e-12


def _unit_directions(x):
    n = int(onp.prod(x.shape[1:]))
    for k in range(n):
        e = onp.zeros(n)
        e[k] = 1.0
        yield mx.np.array(onp.broadcast_to(e.reshape((1,) + x.shape[1:]), x.shape),
                          dtype=x.dtype)


class CoefficientField(nn.HybridBlock):
    """C(x) = (1 + x_0^2) I per sample, for the weighted Laplacian with a block."""

    def hybrid_forward(self, F, x):
        if mx.util.is_np_array():
            P, first, product = F.np, x[:, 0:1], F.np.multiply
        else:
            P, first, product = F, F.slice_axis(x, axis=1, begin=0, end=1), F.broadcast_mul
        eye = P.eye(3, dtype='float64')  # (the twin test runs in float64)
        return product(P.expand_dims(1.0 + P.square(first), 2), P.expand_dims(eye, 0))


# every block and helper: (name, build(net) -> callable(x, v)); the field blocks take a
# net from (B, 3) to (B, 3), the others its sum
BLOCKS = [
    ('InputGradient', lambda n: lambda x, v: mg.InputGradient(n)(x)),
    ('InputGradient return_output',
     lambda n: lambda x, v: mg.InputGradient(n, return_output=True)(x)[1]),
    ('JVP', lambda n: lambda x, v: mg.JVP(n)(x, v)),
    ('VJP', lambda n: lambda x, v: mg.VJP(n)(x, x[:, :1] * 0 + 1.5)),
    ('HVP fwd_rev', lambda n: lambda x, v: mg.HVP(n)(x, v)),
    ('HVP rev_rev', lambda n: lambda x, v: mg.HVP(n, mode='rev_rev')(x, v)),
    ('Hessian', lambda n: lambda x, v: mg.Hessian(n)(x)),
    ('Laplacian', lambda n: lambda x, v: mg.Laplacian(n)(x)),
    ('Laplacian hessian_trace',
     lambda n: lambda x, v: mg.Laplacian(n, method='hessian_trace')(x)),
    ('Taylor', lambda n: lambda x, v: mg.Taylor(n, order=3)(x, v)),
    ('DifferentialOperator biharmonic',
     lambda n: lambda x, v: mg.DifferentialOperator(n, 'biharmonic')(x)),
    ('DifferentialOperator weighted C(x)',
     lambda n: lambda x, v: mg.DifferentialOperator(n, 'weighted_laplacian',
                                                    coefficients=CoefficientField())(x)),
    ('grad', lambda n: lambda x, v: mg.grad(n, x)),
    ('jvp', lambda n: lambda x, v: mg.jvp(n, x, v)),
    ('hvp', lambda n: lambda x, v: mg.hvp(n, x, v)),
    ('hessian', lambda n: lambda x, v: mg.hessian(n, x)),
    ('laplacian', lambda n: lambda x, v: mg.laplacian(n, x)),
]
FIELD_BLOCKS = [
    ('Jacobian forward', lambda n: lambda x, v: mg.Jacobian(n, mode='forward')(x)),
    ('Jacobian reverse', lambda n: lambda x, v: mg.Jacobian(n, mode='reverse')(x)),
    ('Divergence', lambda n: lambda x, v: mg.Divergence(n)(x)),
    ('vjp', lambda n: lambda x, v: mg.vjp(n, x, v)),
]


def field():
    net = nn.HybridSequential()
    net.add(nn.Dense(12, activation='tanh'), nn.Dense(3))
    return net


@pytest.mark.parametrize('name, build', BLOCKS + FIELD_BLOCKS,
                         ids=[b[0] for b in BLOCKS + FIELD_BLOCKS])
def test_every_block_matches_its_legacy_twin(name, build):
    """Each block and functional helper on a NumPy-mode network gives NumPy arrays, the
    numbers of the same block on the legacy twin (same weights) to 1e-12, and the same
    again hybridized with static_alloc (the blocks; the helpers cache theirs)."""
    is_field = (name, build) in FIELD_BLOCKS
    make = field if is_field else mlp
    mx.random.seed(0)
    net = make()
    net.initialize(mx.init.Xavier(magnitude=2.0))
    x = np_array((4, 3), -1.0, 1.0, seed=1)
    v = np_array((4, 3), seed=2)
    net(x.astype('float32'))
    net.cast('float64')
    wrapped = net if is_field else OutputSum(net)
    got = build(wrapped)(x, v)
    assert isinstance(got, mx.np.ndarray), type(got)
    weights = [p.data().asnumpy() for p in net.collect_params().values()]
    npx.reset_np()
    try:
        twin = make()
        twin.initialize()
        xl, vl = (mx.nd.array(a.asnumpy(), dtype='float64') for a in (x, v))
        twin(xl.astype('float32'))
        twin.cast('float64')
        for p, w in zip(twin.collect_params().values(), weights):
            p.set_data(mx.nd.array(w, dtype='float64'))
        want = build(twin if is_field else OutputSum(twin))(xl, vl)
        assert type(want) is mx.nd.NDArray
    finally:
        npx.set_np()
    assert relative_error(got.asnumpy(), want.asnumpy()) < 1e-12


@pytest.mark.parametrize('cls', [mg.InputGradient, mg.Laplacian, mg.Jacobian, mg.Divergence,
                                 mg.Hessian])
def test_blocks_hybridized_with_static_alloc(cls):
    net, x = built('mlp') if cls is not mg.Divergence else (None, None)
    if cls is mg.Divergence:
        net = field()
        net.initialize()
        x = np_array((4, 3))
        net(x.astype('float32'))
        net.cast('float64')
    blk = cls(net if cls in (mg.Jacobian, mg.Divergence) else OutputSum(net))
    want = blk(x).asnumpy()
    blk.hybridize(static_alloc=True, static_shape=True)
    got = blk(x)
    assert isinstance(got, mx.np.ndarray)
    assert relative_error(got.asnumpy(), want) < 1e-12
    assert relative_error(blk(x).asnumpy(), want) < 1e-12  # the cached graph again


def test_hvp_and_taylor_and_differential_operator():
    net, x = built('smooth')
    scalar = OutputSum(net)
    v = np_array(x.shape, seed=5)
    for mode in ('fwd_rev', 'rev_rev'):
        got = mg.HVP(scalar, mode=mode)(x, v).asnumpy()
        ref = mg.test_util.fd_directional(mg.InputGradient(scalar), [x], 0, v)[0].asnumpy()
        assert relative_error(got, ref) < 1e-6, mode
    check_taylor(scalar, [x], order=4, rtol=1e-5)
    biharmonic = mg.DifferentialOperator(scalar, terms='biharmonic')(x).asnumpy()
    nested = mg.Laplacian(mg.Laplacian(scalar))(x).asnumpy()
    assert relative_error(biharmonic, nested) < 1e-9


class PinnResidual(nn.HybridBlock):
    """A NumPy-mode parent: -Laplacian(u) - f, with the Laplacian as a layer."""

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        self.lap = mg.Laplacian(net)

    def hybrid_forward(self, F, x):
        f = F.np.sum(F.np.sin(x), axis=1, keepdims=True)
        return -self.lap(x) - f


def test_inside_a_hybridized_numpy_parent_exported_and_reimported():
    net, x = built('mlp')
    parent = PinnResidual(OutputSum(net))
    want = parent(x).asnumpy()
    parent.hybridize(static_alloc=True)
    got = parent(x)
    assert isinstance(got, mx.np.ndarray)
    assert relative_error(got.asnumpy(), want) < 1e-12
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, 'pinn')
        parent.export(prefix)
        back = gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data'],
                                         prefix + '-0000.params')
        back.cast('float64')
        assert relative_error(back(x).asnumpy(), want) < 1e-12


@pytest.mark.parametrize('hybridize', [False, True])
def test_trained_with_gluon_trainer(hybridize):
    """Parameter gradients of a loss on InputGradient against central differences, and
    a Trainer that lowers that loss."""
    net, x = built('mlp')
    grad = mg.InputGradient(OutputSum(net))
    if hybridize:
        grad.hybridize()
    check_param_grads(grad, [x], loss=lambda outs: (outs[0] ** 2).sum(), rtol=1e-5)
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-2})
    losses = []
    for _ in range(20):
        with autograd.record():
            loss = ((grad(x) - 1.0) ** 2).mean()
        loss.backward()
        trainer.step(1)
        losses.append(float(loss.asnumpy()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_functional_helpers_take_numpy_arrays():
    net, x = built('mlp')
    scalar = OutputSum(net)
    g = mg.grad(scalar, x)
    assert isinstance(g, mx.np.ndarray)
    assert relative_error(g.asnumpy(), mg.InputGradient(scalar)(x).asnumpy()) < 1e-12
    assert isinstance(mg.laplacian(scalar, x), mx.np.ndarray)


def test_unsupported_numpy_operator_is_refused_by_name():
    net = Lambda(lambda F, x: F.np.einsum('bii->bi', x))  # a diagonal: not lowered
    x = np_array((3, 4, 4))
    with pytest.raises(UnsupportedOperatorError, match='_npi_einsum'):
        mg.InputGradient(net)(x)
    assert net(x).shape == (3, 4)  # the model is untouched
    report = mg.check(net, x)
    assert '_npi_einsum' in str(report)


def test_check_reports_numpy_networks():
    net, x = built('resnet')
    report = mg.check(net, x)
    assert report.ok, str(report)


def test_legacy_networks_unchanged_in_the_same_process():
    npx.reset_np()
    net = nn.HybridSequential()
    net.add(nn.Dense(8, activation='tanh'), nn.Dense(1))
    net.initialize()
    net.cast('float64')
    x = mx.nd.array(onp.random.default_rng(0).uniform(-1, 1, (4, 3)), dtype='float64')
    g = mg.InputGradient(net)(x)
    assert type(g) is mx.nd.NDArray
    check_grads(net, [x], order=2)
    npx.set_np()


def test_float32_onednn_real_shaped_numpy_networks():
    """float32 with oneDNN on (its own process): a residual network with 3 input
    channels, 16 filters, BatchNorm and global pooling, a PINN MLP, and a self-attention
    block written with np.einsum over a convolution's positions, against float64 twins."""
    result = result_of(run_script('numpy_float32_check.py'))
    for name, err in result.items():
        assert err < 2e-4, (name, err)


def test_nn_sequential_of_hybrid_blocks():
    """Dive into Deep Learning builds its networks with nn.Sequential: one of
    HybridBlocks is differentiated as the HybridSequential it could be, with the same
    Parameters (a Trainer on net.collect_params() trains it)."""
    net = nn.Sequential()
    net.add(nn.Dense(8, activation='tanh'), nn.Dense(1))
    net.initialize()
    x = np_array((4, 3))
    net(x.astype('float32'))  # (deferred initialisation, then the cast)
    net.cast('float64')
    grad = mg.InputGradient(net)
    g = grad(x)
    assert {p.name for p in grad.collect_params().values()} == set(net.collect_params())
    ref = mg.test_util.fd_directional(net, [x], 0, np_array(x.shape, seed=3))[0].asnumpy()
    assert relative_error((g * np_array(x.shape, seed=3)).asnumpy().sum(axis=1,
                                                                       keepdims=True),
                          ref) < 1e-6
    with pytest.raises(TypeError, match='HybridBlock'):
        class Imperative(nn.Block):
            def forward(self, x):
                return x
        mg.InputGradient(Imperative())


def test_export_onnx_of_a_numpy_network(tmp_path):
    import onnxruntime
    net, x = built('mlp', dtype='float32')
    path = mg.export_onnx(mg.Laplacian(OutputSum(net)), str(tmp_path / 'lap.onnx'), x)
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    got, = session.run(None, {'input0': x.asnumpy()})
    want = mg.Laplacian(OutputSum(net))(x).asnumpy()
    assert relative_error(got, want) < 1e-5


# ----- einsum over random subscripts (hypothesis) -----


@st.composite
def einsum_cases(draw):
    """1-3 operands over the letters 'bijk' (b first in each, the batch axis, and kept),
    sizes 2-3, each letter at most once per operand; the output any subset in any order,
    explicit, or NumPy's implicit one."""
    sizes = {'b': 2, 'i': draw(st.integers(2, 3)), 'j': draw(st.integers(2, 3)),
             'k': draw(st.integers(1, 3))}
    count = draw(st.integers(1, 3))
    terms = ['b' + ''.join(draw(st.permutations('ijk'))[:draw(st.integers(0, 3))])
             for _ in range(count)]
    used = sorted(set(''.join(terms)) - {'b'})
    if draw(st.booleans()):
        rest = draw(st.permutations(used))[:draw(st.integers(0, len(used)))]
        subscripts = ','.join(terms) + '->' + 'b' + ''.join(rest)
    else:
        subscripts = ','.join(terms)
    shapes = [tuple(sizes[c] for c in t) for t in terms]
    return subscripts, shapes


@settings(max_examples=25, deadline=None, derandomize=True)
@given(einsum_cases())
def test_einsum_over_random_subscripts(case):
    """The lowering computes NumPy's einsum, and its derivatives match central
    differences, for every operand."""
    subscripts, shapes = case
    args = [np_array(s, seed=i) for i, s in enumerate(shapes)]
    want = onp.einsum(subscripts, *[a.asnumpy() for a in args])
    if want.ndim:
        net = Lambda(lambda F, *xs: F.np.einsum(subscripts, *xs))
    else:  # (a full contraction: shape () in NumPy mode, (1,) in derived graphs)
        want = want.reshape(1)
        net = Lambda(lambda F, *xs: F.np.reshape(F.np.einsum(subscripts, *xs), (1,)))
    got = exact_primal(net)(*args).asnumpy()
    assert got.shape == want.shape, (subscripts, got.shape, want.shape)
    assert relative_error(got, want) < 1e-12, subscripts
    for wrt in range(len(args)):
        check_grads(net, args, wrt=wrt, order=1)
