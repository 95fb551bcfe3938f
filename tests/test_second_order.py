"""HVP, Hessian, Laplacian, Divergence, JVP/VJP and the functional helpers, against closed
forms and against finite differences of lower-order blocks, with parameter gradients."""
import numpy as np
import pytest
from mxnet import nd

import mxgradlayer as mg
from mxgradlayer.test_util import (check_param_grads, fd_directional, fd_jacobian,
                                   relative_error)

from helpers import Lambda, array, mlp

HYBRID = [False, True]


def _h(block, hybridize):
    if hybridize:
        block.hybridize(static_alloc=True)
    return block


# u(x) = sin(x0) exp(x1) + x0^3 x1, with its derivatives in closed form
def _u(F, x):
    x0 = F.slice_axis(x, axis=1, begin=0, end=1)
    x1 = F.slice_axis(x, axis=1, begin=1, end=2)
    return F.sin(x0) * F.exp(x1) + (x0 ** 3) * x1


def _closed_forms(x):
    x0, x1 = x[:, 0], x[:, 1]
    s, c, e = np.sin(x0), np.cos(x0), np.exp(x1)
    h = np.stack([np.stack([-s * e + 6 * x0 * x1, c * e + 3 * x0 ** 2], -1),
                  np.stack([c * e + 3 * x0 ** 2, s * e], -1)], -2)
    return h


@pytest.mark.parametrize('hybridize', HYBRID)
def test_closed_forms_of_second_order_blocks(hybridize):
    u = Lambda(_u)
    x = array((5, 2), seed=1)
    v = array((5, 2), seed=2)
    H = _closed_forms(x.asnumpy())
    got = _h(mg.Hessian(u), hybridize)(x).asnumpy()
    assert got.shape == (5, 1, 2, 2)
    assert relative_error(got[:, 0], H) < 1e-12
    for mode in ('fwd_rev', 'rev_rev'):
        hv = _h(mg.HVP(u, mode=mode), hybridize)(x, v).asnumpy()
        assert relative_error(hv, np.einsum('bij,bj->bi', H, v.asnumpy())) < 1e-12
    with pytest.warns(DeprecationWarning, match='mode='):  # the former name still works
        old = mg.HVP(u, method='rev_rev')
    assert old._mode == 'rev_rev'
    for method in ('forward', 'hessian_trace'):
        lap = _h(mg.Laplacian(u, method=method), hybridize)(x).asnumpy()
        assert lap.shape == (5, 1)
        assert relative_error(lap[:, 0], np.trace(H, axis1=1, axis2=2)) < 1e-12
    div = _h(mg.Divergence(mg.InputGradient(u)), hybridize)(x).asnumpy()
    assert relative_error(div, np.trace(H, axis1=1, axis2=2)) < 1e-12


def test_third_derivatives_through_nesting():
    u = Lambda(_u)
    x = array((4, 2), seed=3)
    x0, x1 = x.asnumpy()[:, 0], x.asnumpy()[:, 1]
    s, c, e = np.sin(x0), np.cos(x0), np.exp(x1)
    # grad of the Laplacian: d/dx0 = -c e + 6 x1 + c e = 6 x1; d/dx1 = 6 x0
    grad_lap = mg.InputGradient(mg.Laplacian(u))(x).asnumpy()
    assert relative_error(grad_lap, np.stack([6 * x1, 6 * x0], -1)) < 1e-12
    # Laplacian of the gradient: (d/dx0 lap u, d/dx1 lap u) as well
    lap_grad = mg.Laplacian(mg.InputGradient(u))(x).asnumpy()
    assert relative_error(lap_grad, np.stack([6 * x1, 6 * x0], -1)) < 1e-12
    # HVP of the gradient field: d/dx (grad u . ... ) vs finite differences of its Jacobian
    v = array((4, 2), seed=4)
    hvp_g = mg.HVP(mg.InputGradient(u))(x, v).asnumpy()
    ref = fd_directional(mg.InputGradient(mg.InputGradient(u)), [x], 0, v)[0].asnumpy()
    assert relative_error(hvp_g, ref) < 1e-6
    # third derivative of sin(x0) e^x1 + x0^3 x1 along x0 three times: -c e + 6 x1
    d3 = mg.Jacobian(mg.Jacobian(mg.Jacobian(u)))(x).asnumpy()
    assert d3.shape == (4, 1, 2, 2, 2)
    assert relative_error(d3[:, 0, 0, 0, 0], -c * e + 6 * x1) < 1e-12
    assert relative_error(d3[:, 0, 1, 1, 1], s * e) < 1e-12


@pytest.mark.parametrize('hybridize', HYBRID)
@pytest.mark.parametrize('act', ['tanh', 'sigmoid', 'softrelu'])
def test_mlp_second_order_against_finite_differences(act, hybridize):
    net = mlp([8, 8, 2], act, in_units=3)
    x, v = array((4, 3), seed=5), array((4, 3), seed=6)
    grad = mg.InputGradient(net)
    hv = _h(mg.HVP(net), hybridize)(x, v).asnumpy()
    assert relative_error(hv, fd_directional(grad, [x], 0, v)[0].asnumpy()) < 1e-6
    hess = _h(mg.Hessian(net), hybridize)(x).asnumpy()
    assert hess.shape == (4, 2, 3, 3)
    assert relative_error(hess, fd_jacobian(mg.Jacobian(net), [x], 0)) < 1e-6
    lap = _h(mg.Laplacian(net), hybridize)(x).asnumpy()
    assert relative_error(lap, np.trace(hess, axis1=2, axis2=3)) < 1e-10
    field = mlp([8, 3], act, in_units=3)
    div = _h(mg.Divergence(field), hybridize)(x).asnumpy()
    assert relative_error(div, np.trace(fd_jacobian(field, [x], 0), axis1=1, axis2=2)) < 1e-6


@pytest.mark.parametrize('cls,extra', [(mg.Laplacian, 0), (mg.HVP, 1), (mg.Hessian, 0),
                                       (mg.Divergence, 0), (mg.JVP, 1), (mg.VJP, 1)])
def test_parameter_gradients_of_losses_on_second_order_blocks(cls, extra):
    net = mlp([6, 6, 3 if cls in (mg.Divergence,) else 1], 'tanh', in_units=3)
    x = array((4, 3), seed=7)
    args = [x] + ([array((4, 3) if cls is not mg.VJP else (4, 1), seed=8)] if extra else [])
    for hybridize in HYBRID:
        check_param_grads(_h(cls(net), hybridize), args, rtol=1e-5)


def test_functional_helpers():
    u = Lambda(_u)
    x, v = array((3, 2), seed=9), array((3, 2), seed=10)
    H = _closed_forms(x.asnumpy())
    assert relative_error(mg.hessian(u, x).asnumpy()[:, 0], H) < 1e-12
    assert relative_error(mg.hvp(u, x, v).asnumpy(), np.einsum('bij,bj->bi', H, v.asnumpy())) < 1e-12
    assert relative_error(mg.laplacian(u, x).asnumpy()[:, 0], np.trace(H, axis1=1, axis2=2)) < 1e-12
    g = mg.grad(u, x)
    assert relative_error(mg.vjp(u, x, nd.ones((3, 1), dtype='float64')).asnumpy(),
                          g.asnumpy()) < 1e-12
    assert relative_error(mg.jvp(u, x, v).asnumpy()[:, 0],
                          (g * v).sum(axis=1).asnumpy()) < 1e-12


def test_forward_laplacian_scales_to_many_dimensions():
    net = mlp([16, 16, 1], 'tanh', in_units=12)
    x = array((3, 12), seed=11)
    lap = mg.Laplacian(net)(x).asnumpy()
    ref = mg.Laplacian(net, method='hessian_trace')(x).asnumpy()
    assert relative_error(lap, ref) < 1e-10


def test_functional_helpers_reuse_blocks_and_do_not_keep_nets_alive():
    import gc
    import weakref
    net = mlp([4, 1], 'tanh', in_units=2)
    x = array((3, 2), seed=12)
    first = mg.grad(net, x)
    assert relative_error(mg.grad(net, x).asnumpy(), first.asnumpy()) == 0
    assert len(net._mxgradlayer_cache.blocks) == 1  # the second call reused the block
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None
