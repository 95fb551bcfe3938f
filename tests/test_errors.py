"""Bad input gets a clear error, leaves the model untouched, and the block keeps working."""
import numpy as np
import pytest
import mxnet as mx
from mxnet import gluon, nd

import mxgradlayer as mg
from mxgradlayer.errors import InputSpecError, SampleCouplingError, UnsupportedOperatorError

from helpers import Lambda, array, mlp


def _snapshot(net):
    return {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}


def _assert_untouched(net, snap):
    now = _snapshot(net)
    assert now.keys() == snap.keys()
    for k in snap:
        np.testing.assert_array_equal(now[k], snap[k])


class ProdHead(gluon.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.dense = gluon.nn.Dense(3, in_units=2)

    def hybrid_forward(self, F, x):
        return F.prod(self.dense(x), axis=1, keepdims=True)  # 'prod' has no rules


@pytest.mark.parametrize('cls', [mg.InputGradient, mg.Jacobian, mg.Laplacian, mg.Hessian])
def test_unsupported_operator_is_refused_with_its_name_node_and_where_to_look(cls):
    net = ProdHead()
    net.initialize()
    net.cast('float64')
    snap = _snapshot(net)
    with pytest.raises(UnsupportedOperatorError) as err:
        cls(net)(array((4, 2)))
    msg = str(err.value)
    assert "'prod'" in msg and 'prodhead' in msg and 'supported_ops()' in msg
    _assert_untouched(net, snap)
    report = mg.check(net, array((4, 2)))
    assert not report.ok and "1 operator(s) not covered: prod" in str(report)


def test_unsupported_operator_off_the_differentiated_path_is_fine():
    net = Lambda(lambda F, x, y: F.broadcast_add(F.tanh(x), F.prod(y, axis=1, keepdims=True)))
    x, y = array((3, 4), seed=1), array((3, 4), seed=2)
    g = mg.InputGradient(net, wrt=0)(x, y)
    assert np.allclose(g.asnumpy(), 1 - np.tanh(x.asnumpy()) ** 2)
    with pytest.raises(UnsupportedOperatorError):
        mg.InputGradient(net, wrt=1)(x, y)


def test_wrt_out_of_range_and_wrong_number_of_inputs():
    net = mlp([4, 1], in_units=2)
    x = array((3, 2))
    with pytest.raises(InputSpecError, match='wrt=2 is out of range'):
        mg.InputGradient(net, wrt=2)(x)
    with pytest.raises(InputSpecError, match='does not accept 2 input'):
        mg.InputGradient(net)(x, x)
    with pytest.raises(InputSpecError, match='wrt must be an int'):
        mg.InputGradient(net, wrt='x')
    assert mg.InputGradient(net)(x).shape == (3, 2)


def test_wrong_input_shape_then_good_input():
    net = mlp([4, 1], in_units=2)
    snap = _snapshot(net)
    blk = mg.InputGradient(net)
    with pytest.raises(InputSpecError, match='cannot run on inputs of shapes'):
        blk(array((3, 5)))
    _assert_untouched(net, snap)
    assert blk(array((3, 2))).shape == (3, 2)
    blk.hybridize()
    assert blk(array((3, 2))).shape == (3, 2)


def test_integer_inputs_cannot_be_differentiated():
    net = Lambda(lambda F, x: F.tanh(F.cast(x, 'float64')))
    with pytest.raises(InputSpecError, match='only floating-point inputs'):
        mg.InputGradient(net)(nd.array([[1, 2]], dtype='int32'))


def test_mismatched_dtypes():
    net = mlp([4, 1], in_units=2)  # float64 parameters
    with pytest.raises(InputSpecError):
        mg.InputGradient(net)(array((3, 2), dtype='float32'))


@pytest.mark.parametrize('cls', [mg.JVP, mg.HVP])
def test_direction_of_the_wrong_shape(cls):
    net = mlp([4, 1], in_units=2)
    x = array((3, 2))
    with pytest.raises(InputSpecError, match='v must have the shape'):
        cls(net)(x, array((3, 3)))
    with pytest.raises(InputSpecError, match='followed by 1 direction'):
        mg.VJP(net)(x)
    assert cls(net)(x, array((3, 2))).shape == ((3, 1) if cls is mg.JVP else (3, 2))


def test_vjp_cotangent_of_the_wrong_shape():
    net = mlp([4, 2], in_units=2)
    with pytest.raises(InputSpecError, match='w must have the shape'):
        mg.VJP(net)(array((3, 2)), array((3, 1)))


def test_not_a_hybrid_block():
    with pytest.raises(TypeError, match='HybridBlock'):
        mg.InputGradient(gluon.nn.Sequential())


def test_per_sample_blocks_refuse_networks_that_mix_samples():
    net = Lambda(lambda F, x: F.broadcast_sub(F.tanh(x), F.mean(F.tanh(x), axis=0,
                                                                keepdims=True)))
    x = array((4, 3))
    for cls in (mg.Jacobian, mg.Laplacian, mg.Divergence, mg.Hessian):
        with pytest.raises(SampleCouplingError, match='mixes samples'):
            cls(net)(x)
    # the total derivative of the summed output is still exact
    g = mg.InputGradient(net)(x).asnumpy()
    from mxgradlayer.test_util import fd_directional
    v = array((4, 3), seed=5)
    fd = fd_directional(net, [x], 0, v)[0].sum().asscalar()
    assert abs(float((nd.array(g, dtype='float64') * v).sum().asscalar()) - fd) < 1e-7


def test_nan_and_inf_propagate_like_the_network():
    net = mlp([4, 1], in_units=2)
    x = nd.array([[np.nan, 0.5], [np.inf, 0.1], [0.3, 0.2]], dtype='float64')
    g = mg.InputGradient(net)(x).asnumpy()
    assert np.isnan(g[0]).all() and np.isfinite(g[2]).all()
    out = net(x).asnumpy()
    assert np.isnan(out[0]).all()


def test_symbols_of_unknown_shape_are_refused_clearly():
    blk = mg.InputGradient(mlp([4, 1], in_units=2))
    with pytest.raises(InputSpecError, match='unknown shape'):
        blk(mx.sym.var('x'))
    out = blk(mx.sym.var('x', shape=(3, 2), dtype='float64'))
    assert isinstance(out, mx.sym.Symbol)
