"""Gluon citizenship of the derivative blocks: shared Parameters, imperative and
hybridized execution, several inputs, nesting, export, SymbolBlocks, dtypes, and correct
parameter gradients of losses built on them."""
import os

import numpy as np
import pytest
from mxnet import autograd, gluon, nd

import mxgradlayer as mg
from mxgradlayer.test_util import (check_grads, check_param_grads, fd_directional,
                                   fd_jacobian, relative_error)

from helpers import ACTIVATIONS, Lambda, activation_net, array, exact_primal, mlp

HYBRID = [None, {}, {'static_alloc': True, 'static_shape': True}]
HYBRID_IDS = ['imperative', 'hybridized', 'static']


def _maybe_hybridize(block, flags):
    if flags is not None:
        block.hybridize(**flags)
    return block


@pytest.mark.parametrize('act', sorted(ACTIVATIONS))
@pytest.mark.parametrize('flatten', [True, False])
def test_every_activation_to_second_order(act, flatten):
    net = activation_net(act, flatten=flatten)
    x = array((4, 3), seed=1, away_from_zero=True)
    for hybridize in (False, True):
        check_grads(net, [x], order=2, hybridize=hybridize, reference=exact_primal(net))


@pytest.mark.parametrize('act', sorted(ACTIVATIONS))
def test_parameter_gradients_through_input_gradient(act):
    net = activation_net(act)
    x = array((4, 3), seed=2, away_from_zero=True)
    for flags in (None, {}):
        blk = _maybe_hybridize(mg.InputGradient(net), flags)
        check_param_grads(blk, [x], rtol=1e-5)


class _Residual(gluon.HybridBlock):
    """x + Dense(tanh(Dense(x))): elemwise_add of the input and a parameter path."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = mlp([5, 3], in_units=3)

    def hybrid_forward(self, F, x):
        return x + self.body(x)


@pytest.mark.parametrize('make', [
    lambda net: mg.JVP(net), lambda net: mg.VJP(net), lambda net: mg.InputGradient(net),
    lambda net: mg.Laplacian(net), lambda net: mg.HVP(net)],
    ids=['JVP', 'VJP', 'InputGradient', 'Laplacian', 'HVP'])
def test_static_alloc_parameter_gradients_with_inputs_added(make):
    """MXNet 1.9.1 under static_alloc gets square(elemwise_add(parameter path, graph
    input)) wrong in plain Gluon (README, known MXNet issues).  Derived graphs add their
    inputs and directions to parameter paths, then squared in a static_alloc parent:
    their parameter gradients must stay right."""
    net = _Residual()
    net.initialize()
    net.cast('float64')
    blk = make(net)
    x, v = array((4, 3), seed=5), array((4, 3), seed=6)
    args = [x] if isinstance(blk, (mg.InputGradient, mg.Laplacian)) else [x, v]
    squared = _Squared(blk)
    squared.hybridize(static_alloc=True, static_shape=True)
    check_param_grads(squared, args, rtol=1e-6)


class _Squared(gluon.HybridBlock):
    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def hybrid_forward(self, F, *args):
        return F.square(self.inner(*args))


def test_parameters_are_shared_and_trained():
    net = mlp([6, 1], in_units=2)
    blk = mg.InputGradient(net)
    net_params = {id(p) for p in net.collect_params().values()}
    blk_params = {id(p) for p in blk.collect_params().values()}
    assert net_params == blk_params
    before = net[0].weight.data().copy()
    trainer = gluon.Trainer(blk.collect_params(), 'sgd', {'learning_rate': 0.125})  # exact in float32
    x = array((5, 2), seed=3)
    with autograd.record():
        loss = (blk(x) ** 2).sum()
    loss.backward()
    grad = net[0].weight.grad().copy()
    trainer.step(1)
    assert relative_error(net[0].weight.data().asnumpy(),
                          (before - 0.125 * grad).asnumpy()) < 1e-12
    assert float(nd.abs(grad).sum().asscalar()) > 0


@pytest.mark.parametrize('flags', HYBRID, ids=HYBRID_IDS)
def test_input_gradient_matches_finite_differences_and_mxnet(flags):
    net = mlp([8, 8, 2], in_units=3)
    x = array((5, 3), seed=4)
    g = _maybe_hybridize(mg.InputGradient(net), flags)(x)
    x.attach_grad()
    with autograd.record():
        y = net(x)
    y.backward()
    assert relative_error(g.asnumpy(), x.grad.asnumpy()) < 1e-12
    # every direction: <grad, v> = d/de sum(net(x + e v))
    v = array((5, 3), seed=5)
    fd = fd_directional(net, [x], 0, v)[0].sum().asscalar()
    assert abs(float((g * v).sum().asscalar()) - fd) < 1e-7 * max(1, abs(fd))


def test_hybridized_serves_every_batch_size():
    net = mlp([8, 1], in_units=2)
    ref = mg.InputGradient(net)
    blk = mg.InputGradient(net)
    blk.hybridize(static_alloc=True, static_shape=True)
    for b in (1, 7, 64, 3):
        x = array((b, 2), seed=b)
        assert relative_error(blk(x).asnumpy(), ref(x).asnumpy()) < 1e-12


def test_several_inputs_and_tuple_wrt():
    net = Lambda(lambda F, x, y: F.sum(F.tanh(x) * F.exp(y * 0.5), axis=1, keepdims=True))
    x, y = array((4, 3), seed=1), array((4, 3), seed=2)
    gx, gy = mg.InputGradient(net, wrt=(0, 1))(x, y)
    ex = (1 - np.tanh(x.asnumpy()) ** 2) * np.exp(0.5 * y.asnumpy())
    ey = np.tanh(x.asnumpy()) * 0.5 * np.exp(0.5 * y.asnumpy())
    assert relative_error(gx.asnumpy(), ex) < 1e-12
    assert relative_error(gy.asnumpy(), ey) < 1e-12
    assert relative_error(mg.InputGradient(net, wrt=1)(x, y).asnumpy(), ey) < 1e-12
    check_grads(net, [x, y], wrt=1, order=2)


@pytest.mark.parametrize('flags', HYBRID, ids=HYBRID_IDS)
def test_return_output_evaluates_once(flags):
    net = mlp([6, 2], in_units=3)
    blk = _maybe_hybridize(mg.InputGradient(net, return_output=True), flags)
    x = array((4, 3), seed=6)
    out, g = blk(x)
    assert relative_error(out.asnumpy(), net(x).asnumpy()) < 1e-12
    assert relative_error(g.asnumpy(), mg.InputGradient(net)(x).asnumpy()) < 1e-12
    if flags is not None:  # each layer applied to x once in the whole derived graph
        nodes = __import__('json').loads(blk._cached_graph[1].tojson())['nodes']
        primal = [n for n in nodes if n['op'] == 'FullyConnected'
                  and nodes[n['inputs'][1][0]]['name'].endswith('_weight')]
        assert len(primal) == 2


def test_nesting_gives_second_and_third_derivatives():
    u = Lambda(lambda F, x: F.sin(x) * F.exp(x))
    x = array((6, 1), seed=7)
    xs = x.asnumpy()
    d2 = mg.InputGradient(mg.InputGradient(u))
    d3 = mg.InputGradient(d2)
    assert relative_error(d2(x).asnumpy(), 2 * np.cos(xs) * np.exp(xs)) < 1e-12
    assert relative_error(d3(x).asnumpy(), 2 * np.exp(xs) * (np.cos(xs) - np.sin(xs))) < 1e-12
    d3.hybridize()
    assert relative_error(d3(x).asnumpy(), 2 * np.exp(xs) * (np.cos(xs) - np.sin(xs))) < 1e-12


def test_nested_mlp_second_derivative_and_its_parameter_gradients():
    net = mlp([16, 16, 1], 'sigmoid', in_units=1)
    x = array((5, 1), seed=8)
    d1, d2 = mg.InputGradient(net), mg.InputGradient(mg.InputGradient(net))
    fd = fd_directional(d1, [x], 0, nd.ones_like(x))[0]
    assert relative_error(d2(x).asnumpy(), fd.asnumpy()) < 1e-6
    d2.hybridize()
    check_param_grads(d2, [x])


class PINNResidual(gluon.HybridBlock):
    """A parent block with a derivative layer inside, as users write it."""

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.du = mg.InputGradient(net)
            self.net = net

    def hybrid_forward(self, F, x):
        return F.square(self.du(x) - 2 * x) + self.net(x)


@pytest.mark.parametrize('flags', HYBRID, ids=HYBRID_IDS)
def test_child_of_a_hybridized_parent(flags):
    net = mlp([8, 1], in_units=1)
    x = array((5, 1), seed=9)
    expected = (mg.InputGradient(net)(x) - 2 * x) ** 2 + net(x)
    parent = _maybe_hybridize(PINNResidual(net), flags)
    assert relative_error(parent(x).asnumpy(), expected.asnumpy()) < 1e-12
    seq = gluon.nn.HybridSequential()
    seq.add(mg.InputGradient(net), gluon.nn.Dense(1, in_units=1))
    seq[1].initialize()
    seq.cast('float64')
    _maybe_hybridize(seq, flags)
    assert seq(x).shape == (5, 1)
    check_param_grads(parent, [x])


def test_export_and_import_round_trip(tmp_path):
    net = mlp([8, 2], in_units=3)
    x = array((4, 3), seed=10)
    for blk in (mg.InputGradient(net), mg.Jacobian(net), mg.Laplacian(net),
                mg.InputGradient(mg.InputGradient(net))):
        blk.hybridize()
        expected = blk(x)
        prefix = os.path.join(str(tmp_path), blk.name)
        blk.export(prefix)
        loaded = gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data'],
                                           prefix + '-0000.params')
        loaded.cast('float64')
        loaded.load_parameters(prefix + '-0000.params', allow_missing=False)
        assert relative_error(loaded(x).asnumpy(), expected.asnumpy()) < 1e-12


def test_wrapping_a_symbol_block_loaded_from_export(tmp_path):
    net = mlp([8, 1], 'tanh', in_units=2)
    net.hybridize()
    x = array((4, 2), seed=11)
    net(x)
    prefix = os.path.join(str(tmp_path), 'net')
    net.export(prefix)
    loaded = gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data'], prefix + '-0000.params')
    loaded.cast('float64')
    loaded.load_parameters(prefix + '-0000.params')
    for cls in (mg.InputGradient, mg.Jacobian, mg.Hessian, mg.Laplacian):
        assert relative_error(cls(loaded)(x).asnumpy(), cls(net)(x).asnumpy()) < 1e-12
    v, w = array((4, 2), seed=19), array((4, 1), seed=20)
    for cls, extra in ((mg.JVP, v), (mg.VJP, w), (mg.HVP, v)):
        assert relative_error(cls(loaded)(x, extra).asnumpy(),
                              cls(net)(x, extra).asnumpy()) < 1e-12
    div = mg.Divergence(mg.InputGradient(loaded))(x).asnumpy()
    assert relative_error(div, mg.Laplacian(net)(x).asnumpy()[:, 0]) < 1e-12
    check_param_grads(mg.InputGradient(loaded), [x])


def test_save_and_load_parameters_of_the_wrapped_net(tmp_path):
    net = mlp([8, 1], in_units=2)
    blk = mg.InputGradient(net)
    x = array((3, 2), seed=12)
    expected = blk(x).asnumpy()
    path = os.path.join(str(tmp_path), 'net.params')
    net.save_parameters(path)
    fresh = mlp([8, 1], in_units=2, seed=99)
    fresh.load_parameters(path)
    assert relative_error(mg.InputGradient(fresh)(x).asnumpy(), expected) < 1e-12


def test_float32_agrees_with_float64():
    net64 = mlp([16, 1], in_units=3)
    net32 = mlp([16, 1], in_units=3, dtype='float32')
    x = array((5, 3), seed=13)
    g64 = mg.InputGradient(net64)(x).asnumpy()
    for flags in (None, {}):
        g32 = _maybe_hybridize(mg.InputGradient(net32), flags)(x.astype('float32'))
        assert g32.dtype == np.float32
        assert relative_error(g32.asnumpy(), g64) < 1e-5


def test_deferred_initialization_of_the_wrapped_net():
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(4, activation='tanh'), gluon.nn.Dense(1))
    net.initialize()
    x = nd.random.normal(shape=(3, 5))
    g = mg.InputGradient(net)(x)
    assert g.shape == (3, 5) and net[0].weight.shape == (4, 5)


@pytest.mark.parametrize('flags', HYBRID, ids=HYBRID_IDS)
def test_jacobian_shapes_and_values(flags):
    net = mlp([7, 4], in_units=3)
    x = array((5, 3), seed=14)
    for mode in ('forward', 'reverse', 'auto'):
        jac = _maybe_hybridize(mg.Jacobian(net, mode=mode), flags)(x)
        assert jac.shape == (5, 4, 3)
        assert relative_error(jac.asnumpy(), fd_jacobian(net, [x], 0)) < 1e-6
    scalar = mlp([7, 1], in_units=3)
    assert mg.Jacobian(scalar)(x).shape == (5, 1, 3)
    wide = mlp([7, 2], in_units=6)
    z = array((2, 2, 3), seed=15)
    jac = mg.Jacobian(wide)(z)
    assert jac.shape == (2, 2, 2, 3)
    assert relative_error(jac.asnumpy(), fd_jacobian(wide, [z], 0)) < 1e-6


def test_jvp_and_vjp_blocks():
    net = mlp([7, 4], in_units=3)
    x, v, w = array((5, 3), seed=16), array((5, 3), seed=17), array((5, 4), seed=18)
    jac = mg.Jacobian(net)(x).asnumpy()
    assert relative_error(mg.JVP(net)(x, v).asnumpy(),
                          np.einsum('bij,bj->bi', jac, v.asnumpy())) < 1e-12
    assert relative_error(mg.VJP(net)(x, w).asnumpy(),
                          np.einsum('bij,bi->bj', jac, w.asnumpy())) < 1e-12
    assert relative_error(mg.VJP(net)(x, nd.ones_like(w)).asnumpy(),
                          mg.InputGradient(net)(x).asnumpy()) < 1e-12


def test_deferred_initialization_when_hybridized_first():
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(4, activation='tanh'), gluon.nn.Dense(1))
    net.initialize()
    lap = mg.Laplacian(net)
    lap.hybridize(static_alloc=True, static_shape=True)
    x = nd.random.normal(shape=(3, 5))
    assert lap(x).shape == (3, 1)  # the last bias is not read by the Laplacian
    assert net[1].bias.shape == (1,)
    assert relative_error(lap(x).asnumpy(),
                          mg.Laplacian(net, method='hessian_trace')(x).asnumpy()) < 1e-5


def test_inputs_without_feature_axis_and_tuple_outputs():
    u = Lambda(lambda F, x: F.sin(x))
    z = array((5,), seed=16)
    assert mg.Jacobian(u)(z).shape == (5,) and mg.Hessian(u)(z).shape == (5,)
    assert relative_error(mg.Laplacian(u)(z).asnumpy(), -np.sin(z.asnumpy())) < 1e-12
    pair = Lambda(lambda F, x: (F.sin(x), F.cos(x)))
    x = array((4, 3), seed=17)
    out, g = mg.InputGradient(pair, return_output=True)(x)
    assert isinstance(out, tuple) and len(out) == 2
    assert relative_error(g.asnumpy(), np.cos(x.asnumpy()) - np.sin(x.asnumpy())) < 1e-12
    assert [j.shape for j in mg.Jacobian(pair)(x)] == [(4, 3, 3), (4, 3, 3)]


def test_linear_networks_have_zero_curvature():
    lin = gluon.nn.Dense(2, in_units=3)
    lin.initialize()
    lin.cast('float64')
    x = array((4, 3), seed=18)
    for blk in (mg.Laplacian(lin), mg.Hessian(lin)):
        blk.hybridize()
        assert not np.any(blk(x).asnumpy())
    assert relative_error(mg.Jacobian(lin)(x).asnumpy()[0], lin.weight.data().asnumpy()) < 1e-15


def test_jacobian_by_an_input_the_output_ignores_is_zero():
    net = Lambda(lambda F, x, y: F.tanh(x) * 2)
    x = array((4, 3), seed=21)
    for mode in ('forward', 'reverse'):
        jac = mg.Jacobian(net, wrt=1, mode=mode)(x, x)
        assert jac.shape == (4, 3, 3) and not np.any(jac.asnumpy())


class _Ansatz(gluon.HybridBlock):
    """u(x) = x g(x) + 1, a PINN's boundary ansatz: with InputGradient's all-ones seed
    the products by it are skipped (`transform.reverse`'s ``unit_seeds``)."""

    def __init__(self):
        super().__init__()
        with self.name_scope():
            self.g = mlp([5, 1], 'sigmoid', in_units=1)

    def hybrid_forward(self, F, x):
        return x * self.g(x) + 1


@pytest.mark.parametrize('flags', HYBRID, ids=HYBRID_IDS)
def test_unit_seed_products_are_skipped_and_exact(flags):
    u = _Ansatz()
    x = array((6, 1), seed=11)
    blk = _maybe_hybridize(mg.InputGradient(u), flags)
    fd = fd_directional(u, [x], 0, nd.ones_like(x))[0]
    assert relative_error(blk(x).asnumpy(), fd.asnumpy()) < 1e-7
    check_param_grads(blk, [x])
    check_grads(u, [x], order=2, hybridize=flags is not None)
    if flags is not None:  # neither the seed nor the products by it are in the graph
        ops = [n['op'] for n in __import__('json').loads(blk._cached_graph[1].tojson())['nodes']]
        assert 'ones_like' not in ops and '_plus_scalar' not in ops


@pytest.mark.parametrize('flags', HYBRID, ids=HYBRID_IDS)
def test_a_gradient_that_is_an_input_is_a_copy(flags):
    net = Lambda(lambda F, x, y: x * y)
    x, y = array((3, 2), seed=12), array((3, 2), seed=13)
    blk = _maybe_hybridize(mg.InputGradient(net, wrt=0), flags)
    g = blk(x, y)
    assert g is not y and relative_error(g.asnumpy(), y.asnumpy()) == 0
    g[:] = 0  # writing into the result leaves the input alone
    assert relative_error(y.asnumpy(), array((3, 2), seed=13).asnumpy()) == 0


@pytest.mark.parametrize('flags', HYBRID, ids=HYBRID_IDS)
def test_data_cotangents_as_transposed_fully_connected(flags):
    """Weights of 4096 elements (the 64 x 64 layer) and thin ones of 64 or more (the
    1 x 64 head) take `linalg._gemm_pays`'s FullyConnected-against-the-transpose form,
    the small first layer (64 x 4) dot: both to second order against central
    differences, and the parameter gradients of a penalty on the input gradient."""
    from mxgradlayer.rules.linalg import _gemm_pays
    assert _gemm_pays(64, 64) and _gemm_pays(1, 80) and _gemm_pays(64, 1)
    assert not _gemm_pays(8, 4) and not _gemm_pays(1, 32)
    net = mlp([64, 64, 1], 'tanh', in_units=4)
    net[0].weight.set_data(net[0].weight.data() * 0.3)
    net[1].weight.set_data(net[1].weight.data() * 0.2)
    x = array((3, 4), seed=14)
    check_grads(net, [x], order=2, hybridize=flags is not None)
    blk = _maybe_hybridize(mg.InputGradient(net), flags)
    check_param_grads(blk, [x])
    if flags is not None:
        ops = [n['op'] for n in __import__('json').loads(blk._cached_graph[1].tojson())['nodes']]
        assert ops.count('transpose') == 2 and ops.count('dot') == 1, ops
