"""Taylor mode: every Taylor rule to order 4 through one generic checker (check_taylor),
Taylor against nested first-order blocks, and DifferentialOperator against closed forms,
nested Laplacians and finite differences; training, hybridization, export."""

import itertools

import numpy as np
import mxnet as mx
import pytest
from mxnet import nd

import mxgradlayer as mg
from mxgradlayer import registry
from mxgradlayer.blocks.taylor import interpolation_directions
from mxgradlayer.test_util import check_param_grads, check_taylor, relative_error

from helpers import Lambda, array, mlp
from isolated import run_script
from op_specs import SPECS, VARIANTS

ALL = SPECS + VARIANTS


def _has_taylor(spec):
    d = registry.operators().get(spec.op)
    return d is not None and (d.zero or 'taylor' in d.rules or d.lowering is not None)


def _curved(spec, wrt, fn=None):
    """The op applied to x + 0.1 sin(x) in its differentiated input, so that the rule
    also sees non-zero second and higher input coefficients (the direction alone
    gives only a first one)."""
    fn = fn or spec.fn
    if spec.op == 'Cast':  # its float32 rounding of a curved tangent is not differentiated
        return Lambda(fn)

    def curved(F, *xs):
        xs = list(xs)
        xs[wrt] = xs[wrt] + F.sin(xs[wrt]) * 0.1
        return fn(F, *xs)
    return Lambda(curved)


def _cases(select):
    for i, s in enumerate(ALL):
        if select(s):
            for w in s.wrt:
                yield pytest.param(s, w, id=f'{s.op}-{i}-wrt{w}')


def _args(spec):
    return [array(s, spec.low, spec.high, seed=i, away_from_zero=spec.away)
            for i, s in enumerate(spec.shapes)]


def _taylor_refused(spec, wrt):
    try:
        mg.Taylor(_curved(spec, wrt), order=2, wrt=wrt)(*_args(spec), _args(spec)[wrt])
    except mg.UnsupportedOperatorError as err:
        return 'Taylor' in str(err)
    return False


@pytest.mark.parametrize('spec,wrt', list(_cases(lambda s: True)))
def test_taylor_rule_to_fourth_order(spec, wrt):
    """Every row with a Taylor rule passes the checker; every row without one is refused
    with an error that names Taylor mode (never a number)."""
    if not _has_taylor(spec) or _taylor_refused(spec, wrt):
        assert _taylor_refused(spec, wrt), f'{spec.op}: neither a Taylor rule nor refused'
        return
    reference = _curved(spec, wrt, spec.ref) if spec.ref else None
    check_taylor(_curved(spec, wrt), _args(spec), wrt=wrt, order=4, rtol=1e-5,
                 reference=reference)


def test_taylor_covers_the_operators_real_networks_use():
    ops = registry.operators()
    for op in ('FullyConnected', 'Convolution', 'Activation:tanh', 'Activation:relu',
               'Activation:softrelu', 'elemwise_mul', 'broadcast_mul', 'elemwise_div',
               'exp', 'log', 'sin', 'sqrt', 'Pooling', 'Concat', 'sum', 'LeakyReLU:gelu',
               'softmax', 'log_softmax', 'norm', 'broadcast_power', '_power'):
        assert ops[op].supports('Taylor'), op
    refused = [op for op, d in ops.items() if not d.zero and d.lowering is None
               and not d.supports('Taylor')]
    assert refused == []


@pytest.mark.parametrize('hybridize', [False, True], ids=['imperative', 'hybridized'])
def test_taylor_equals_nested_jvps(hybridize):
    net = mlp([2, 16, 16, 1], activation='tanh')
    x, v = array((5, 2), seed=1), array((5, 2), seed=2)
    blk = mg.Taylor(net, order=4)
    if hybridize:
        blk.hybridize()
    got = blk(x, v).asnumpy()
    assert got.shape == (5, 5, 1)
    nested = net
    assert relative_error(got[0], net(x).asnumpy()) == 0.0
    for k in range(1, 5):
        nested = mg.JVP(nested)
        assert relative_error(got[k], nested(x, *([v] * k)).asnumpy()) < 1e-12


def test_taylor_closed_form_and_several_directions():
    net = Lambda(lambda F, x: F.exp(F.sin(x)))
    x = array((3, 1), seed=0)
    series = mg.Taylor(net, order=4)(x, nd.ones_like(x)).asnumpy()
    s, c = np.sin(x.asnumpy()), np.cos(x.asnumpy())
    # derivatives of exp(sin x)
    d = [np.exp(s), c * np.exp(s), (c ** 2 - s) * np.exp(s),
         (c ** 3 - 3 * s * c - c) * np.exp(s),
         (c ** 4 - 6 * s * c ** 2 - 4 * c ** 2 + 3 * s ** 2 + s) * np.exp(s)]
    for k in range(5):
        assert relative_error(series[k], d[k]) < 1e-12, k
    # three directions at once, per sample, as three separate calls
    net = mlp([3, 8, 1], activation='softrelu')
    x, V = array((4, 3), seed=3), array((3, 4, 3), seed=4)
    many = mg.Taylor(net, order=3)(x, V).asnumpy()
    assert many.shape == (4, 3, 4, 1)
    for d in range(3):
        one = mg.Taylor(net, order=3)(x, V[d]).asnumpy()
        assert relative_error(many[:, d], one) < 1e-12


def test_taylor_on_a_residual_conv_net_float64():
    class Res(mx.gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            self.c1 = mx.gluon.nn.Conv2D(4, 3, padding=1, in_channels=3)
            self.c2 = mx.gluon.nn.Conv2D(3, 3, padding=1, in_channels=4)
            self.out = mx.gluon.nn.Dense(1)

        def hybrid_forward(self, F, x):
            h = x + self.c2(F.tanh(self.c1(x)))
            return self.out(F.mean(F.Activation(h, act_type='softrelu'), axis=(2, 3)))
    net = Res()
    net.initialize(mx.init.Xavier())
    net.cast('float64')
    check_taylor(net, [array((2, 3, 5, 5), seed=5)], order=3, rtol=1e-5, hybridize=True)


def test_taylor_parameter_gradients_and_refusals():
    net = mlp([1, 8, 8, 1], activation='tanh')
    x = array((6, 1), seed=6)
    fourth = Lambda(lambda F, x: F.slice_axis(mg.Taylor(net, order=4)(x, F.ones_like(x)),
                                              axis=0, begin=4, end=5))
    fourth.net = net
    check_param_grads(fourth, [x], rtol=1e-5)
    with pytest.raises(ValueError, match='order'):
        mg.Taylor(net, order=0)
    with pytest.raises(mg.InputSpecError, match='shape'):
        mg.Taylor(net)(x, nd.ones((6, 2), dtype='float64'))
    for fn in (lambda F, x: F.sort(x, axis=1),  # in no table
               lambda F, x: F.softmax(x, axis=1, temperature=2.0)):  # attributes refused
        with pytest.raises(mg.UnsupportedOperatorError, match='no Taylor rule'):
            mg.Taylor(Lambda(fn))(array((2, 3)), array((2, 3)))


# ----- DifferentialOperator -----
def test_interpolation_directions_are_few_and_exact():
    V, w = interpolation_directions({(i, i, j, j): 1.0 for i in range(8) for j in range(8)}, 8)
    assert len(V) == 64  # e_i and e_i +- e_j
    V, w = interpolation_directions({(i, i): 1.0 for i in range(5)}, 5)
    assert len(V) == 5 and np.allclose(w, 1.0)  # Delta u = sum_i (e_i . grad)^2 u


@pytest.mark.parametrize('hybridize', [False, True], ids=['imperative', 'hybridized'])
@pytest.mark.parametrize('d', [1, 2, 3, 5])
def test_biharmonic_equals_nested_laplacians(d, hybridize):
    net = mlp([d, 12, 12, 1], activation='tanh')
    x = array((4, d), seed=d)
    ref = mg.Laplacian(mg.Laplacian(net))(x).asnumpy()
    for blk in (mg.DifferentialOperator(net, 'biharmonic'),
                mg.DifferentialOperator(net, {(i, i, j, j): 1.0 for i in range(d)
                                              for j in range(d)})):
        if hybridize:
            blk.hybridize()
        assert relative_error(blk(x).asnumpy(), ref) < 1e-11
    lap = mg.DifferentialOperator(net, 'laplacian')
    assert relative_error(lap(x).asnumpy(), mg.Laplacian(net)(x).asnumpy()) < 1e-12


def test_operators_against_closed_forms():
    # u = x0^3 x1^2 + sin(x1): d_x0x0x1x1 u = 12 x0, biharmonic = 24 x0 + sin(x1)
    net = Lambda(lambda F, x: F.slice_axis(x, axis=1, begin=0, end=1) ** 3
                 * F.slice_axis(x, axis=1, begin=1, end=2) ** 2
                 + F.sin(F.slice_axis(x, axis=1, begin=1, end=2)))
    x = array((5, 2), low=0.5, high=2.0, seed=7)
    x0, x1 = x.asnumpy()[:, :1], x.asnumpy()[:, 1:]
    mixed = mg.DifferentialOperator(net, {(0, 0, 1, 1): 1.0})(x).asnumpy()
    assert relative_error(mixed, 12 * x0) < 1e-12
    bih = mg.DifferentialOperator(net, 'biharmonic')(x).asnumpy()
    assert relative_error(bih, 24 * x0 + np.sin(x1)) < 1e-12
    # heat operator u_t - k u_xx on u(x, t) = exp(-t) sin(x) with wrt=(x, t): -(1 - k) u
    heat = Lambda(lambda F, x, t: F.exp(t * -1.0) * F.sin(x))
    xs, ts = array((5, 1), seed=8), array((5, 1), low=0.0, high=1.0, seed=9)
    k = 0.3
    op = mg.DifferentialOperator(heat, {(1,): 1.0, (0, 0): -k}, wrt=(0, 1))
    u = np.exp(-ts.asnumpy()) * np.sin(xs.asnumpy())
    assert relative_error(op(xs, ts).asnumpy(), -(1 - k) * u) < 1e-12
    # u itself as a term: (1 + Delta) u
    plus = mg.DifferentialOperator(net, {(): 1.0, (0, 0): 1.0, (1, 1): 1.0})(x).asnumpy()
    lap = 6 * x0 * x1 ** 2 + 2 * x0 ** 3 - np.sin(x1)
    assert relative_error(plus, net(x).asnumpy() + lap) < 1e-12


def test_weighted_laplacian_constant_and_input_dependent():
    net = mlp([3, 10, 1], activation='softrelu')
    x = array((4, 3), seed=10)
    H = mg.Hessian(net)(x).asnumpy()[:, 0]
    C = np.array([[2.0, 0.5, 0.0], [0.3, 1.0, -0.2], [0.0, 0.1, 0.5]])
    got = mg.DifferentialOperator(net, 'weighted_laplacian', coefficients=C)(x).asnumpy()
    assert relative_error(got[:, 0], np.einsum('ij,bij->b', C, H)) < 1e-12
    field = Lambda(lambda F, x: F.reshape(F.concat(F.exp(x), F.sin(x), F.square(x), dim=1),
                                          shape=(-1, 3, 3)))
    blk = mg.DifferentialOperator(net, 'weighted_laplacian', coefficients=field)
    blk.hybridize()
    want = np.einsum('bij,bij->b', field(x).asnumpy(), H)
    assert relative_error(blk(x).asnumpy()[:, 0], want) < 1e-12
    with pytest.raises(mg.InputSpecError, match='coordinates'):
        mg.DifferentialOperator(net, 'weighted_laplacian', coefficients=np.eye(2))(x)
    with pytest.raises(ValueError, match='coefficients'):
        mg.DifferentialOperator(net, 'weighted_laplacian')


def test_stochastic_estimates_are_unbiased_with_the_documented_variance():
    """Hutchinson's Laplacian: mean within 4 standard errors of the exact value and the
    sample variance of single-direction estimates within 25 % of 2 sum_(i!=j) H_ij^2;
    the Gaussian biharmonic: mean within 4 standard errors over 20 seeds' estimates."""
    net = mlp([3, 12, 1], activation='tanh')
    x = array((3, 3), seed=11)
    exact = mg.Laplacian(net)(x).asnumpy()[:, 0]
    H = mg.Hessian(net)(x).asnumpy()[:, 0]
    variance = 2 * (np.sum(H ** 2, axis=(1, 2)) - np.sum(np.diagonal(H, 0, 1, 2) ** 2, axis=1))
    mx.random.seed(3)
    S = 4000
    single = mg.DifferentialOperator(net, 'laplacian', samples=1)
    draws = np.stack([single(x).asnumpy()[:, 0] for _ in range(S)])
    assert np.all(np.abs(draws.mean(0) - exact) < 4 * np.sqrt(variance / S))
    assert np.allclose(draws.var(0), variance, rtol=0.25)
    mx.random.seed(3)
    again = np.stack([single(x).asnumpy()[:, 0] for _ in range(3)])
    assert np.array_equal(again, draws[:3])  # seedable
    bih = mg.DifferentialOperator(net, 'biharmonic', samples=500)
    exact = mg.DifferentialOperator(net, 'biharmonic')(x).asnumpy()[:, 0]
    runs = np.stack([bih(x).asnumpy()[:, 0] for _ in range(20)])
    assert np.all(np.abs(runs.mean(0) - exact) < 4 * runs.std(0, ddof=1) / np.sqrt(20))


def _fourth_derivatives(net, x):
    """T_ijkl of each sample, from one exact operator per multiset of indices."""
    n = x.shape[1]
    T = np.zeros((x.shape[0],) + (n,) * 4)
    for idx in itertools.combinations_with_replacement(range(n), 4):
        value = mg.DifferentialOperator(net, {idx: 1.0})(x).asnumpy()[:, 0]
        for perm in set(itertools.permutations(idx)):
            T[(slice(None),) + perm] = value
    return T


def _draws(blk, x, S):
    """S single-direction estimates per sample, from one call on S copies of the batch."""
    B = x.shape[0]
    return blk(nd.tile(x, reps=(S, 1))).asnumpy()[:, 0].reshape(S, B)


@pytest.mark.parametrize('hybridize', [False, True])
def test_estimators_have_the_documented_mean_and_variance(hybridize):
    """Every estimator's single-direction draws: mean within 5 standard errors of the
    exact operator, sample variance within the documented variance's sampling spread
    (25 % for the Laplacian's, 35 % for the heavy-tailed Gaussian biharmonic's).  Dense:
    Hutchinson and Gaussian quartic forms; sparse: STDE coordinate jets."""
    net = mlp([3, 12, 1], activation='tanh')
    x = array((3, 3), seed=11)
    H = mg.Hessian(net)(x).asnumpy()[:, 0]
    T = _fourth_derivatives(net, x)
    P = np.einsum('bijcc->bij', T)  # the Hessian of the Laplacian
    lap, bih = np.einsum('bii->b', H), np.einsum('biijj->b', T)
    assert relative_error(bih, mg.DifferentialOperator(net, 'biharmonic')(x).asnumpy()[:, 0]) < 1e-10
    diag = np.diagonal(H, 0, 1, 2)
    # the sparse biharmonic's N directions and exact weights: the operator's own
    V, w = np.vstack([np.eye(3)] + [np.eye(3)[i] + s * np.eye(3)[j]
                                    for i in range(3) for j in range(i + 1, 3)
                                    for s in (1, -1)]), np.r_[[24.0 - 16.0] * 3, [4.0] * 6] / 24
    dk = np.einsum('bijkl,di,dj,dk,dl->db', T, V, V, V, V)
    assert relative_error(w @ dk, bih) < 1e-10
    cases = [('laplacian', 'dense', lap, 2 * (np.sum(H ** 2, (1, 2)) - np.sum(diag ** 2, 1)),
              20000, 0.25),
             ('laplacian', 'sparse', lap, 3 * np.sum(diag ** 2, 1) - lap ** 2, 20000, 0.25),
             ('biharmonic', 'dense', bih,
              (24 * np.sum(T ** 2, (1, 2, 3, 4)) + 72 * np.sum(P ** 2, (1, 2))) / 9, 60000, 0.35),
             ('biharmonic', 'sparse', bih, len(w) * (w ** 2) @ (dk ** 2) - bih ** 2, 20000, 0.25)]
    mx.random.seed(5)
    for terms, estimator, exact, variance, S, rtol in cases:
        blk = mg.DifferentialOperator(net, terms, samples=1, estimator=estimator)
        if hybridize:
            blk.hybridize()
        draws = _draws(blk, x, S)
        assert np.all(np.abs(draws.mean(0) - exact) < 5 * np.sqrt(variance / S)), (terms, estimator)
        assert np.allclose(draws.var(0), variance, rtol=rtol), (terms, estimator,
                                                                draws.var(0), variance)
    # S directions per sample average S draws: variance / S
    mx.random.seed(6)
    blk = mg.DifferentialOperator(net, 'biharmonic', samples=8, estimator='sparse')
    draws = _draws(blk, x, 5000)
    assert np.allclose(draws.var(0), cases[-1][3] / 8, rtol=0.25)
    # any operator with constant directions: each order's directions drawn on their own
    terms = {(0, 0): 2.0, (0, 1): 0.5, (1, 1): 1.0, (2, 2): 3.0, (0, 0, 1, 1): 1.0}
    exact = mg.DifferentialOperator(net, terms)(x).asnumpy()[:, 0]
    variance = 0.0
    for order in (2, 4):
        group = {t: c for t, c in terms.items() if len(t) == order}
        Vo, wo = interpolation_directions(group, 3)
        series = mg.Taylor(net, order=order)(x, nd.array(np.repeat(Vo[:, None], 3, axis=1),
                                                        dtype='float64'))
        do = series.asnumpy()[order, :, :, 0]  # (N, B): the directional derivatives
        variance = variance + len(wo) * (wo ** 2) @ (do ** 2) - (wo @ do) ** 2
    mx.random.seed(7)
    blk = mg.DifferentialOperator(net, terms, samples=1, estimator='sparse')
    if hybridize:
        blk.hybridize()
    draws = _draws(blk, x, 20000)
    assert np.all(np.abs(draws.mean(0) - exact) < 5 * np.sqrt(variance / 20000))
    assert np.allclose(draws.var(0), variance, rtol=0.25), (draws.var(0), variance)
    with pytest.raises(ValueError, match="estimator='sparse'"):
        mg.DifferentialOperator(net, terms, samples=4)
    with pytest.raises(ValueError, match="'dense' or 'sparse'"):
        mg.DifferentialOperator(net, 'laplacian', samples=2, estimator='stde')
    with pytest.raises(ValueError, match='give samples='):
        mg.DifferentialOperator(net, 'laplacian', estimator='sparse')


def test_operator_trains_exports_and_nests(tmp_path):
    net = mlp([2, 8, 1], activation='tanh')
    x = array((4, 2), seed=12)
    bih = mg.DifferentialOperator(net, {(0, 0, 0, 0): 1.0, (0, 0, 1, 1): 2.0,
                                        (1, 1, 1, 1): 1.0})
    check_param_grads(bih, [x], rtol=1e-5)
    bih.hybridize()
    want = bih(x).asnumpy()
    bih.export(str(tmp_path / 'bih'))
    back = mx.gluon.SymbolBlock.imports(str(tmp_path / 'bih-symbol.json'), ['data'],
                                        str(tmp_path / 'bih-0000.params'))
    back.cast('float64')
    assert relative_error(back(x).asnumpy(), want) < 1e-12
    # nested: the gradient of the Laplacian against finite differences
    check_taylor(mg.DifferentialOperator(net, 'laplacian'), [x], order=2, rtol=1e-5)
    grad = mg.InputGradient(mg.DifferentialOperator(net, 'laplacian'))(x).asnumpy()
    ref = mg.InputGradient(mg.Laplacian(net))(x).asnumpy()
    assert relative_error(grad, ref) < 1e-12
    with pytest.raises(ValueError, match='terms'):
        mg.DifferentialOperator(net, 'bilaplacian')
    with pytest.raises(mg.InputSpecError, match='coordinates'):
        mg.DifferentialOperator(net, {(5, 5): 1.0})(x)


def test_float32_with_onednn_on_real_shaped_networks():
    """A residual conv net (16-32 filters, BatchNorm, global pooling) and a 2-64-64-1 MLP:
    Taylor and DifferentialOperator in float32 within 5e-3 of their float64 twins."""
    out = run_script('taylor_float32_check.py')
    assert 'passed 8' in out
