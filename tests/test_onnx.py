"""ONNX export: every block on every network family, run in onnxruntime at batch sizes
other than the example's and compared with MXNet (float32); the translations
mxgradlayer supplies, each through one checker; refusals."""
import logging
import os

import numpy as np
import pytest
import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

import mxgradlayer as mg
from mxgradlayer.serving import translations

from helpers import Lambda
from isolated import result_of, run_script

onnx = pytest.importorskip('onnx', reason='the onnx extra (make test installs it)')
onnxruntime = pytest.importorskip('onnxruntime')
logging.getLogger().setLevel(logging.ERROR)  # MXNet's exporter warns about every dot

EXAMPLE_BATCH = 4
OTHER_BATCHES = (1, 7)
RTOL = 1e-5


def _data(shape, seed, low=-1.0, high=1.0):
    return mx.nd.array(np.random.RandomState(seed).uniform(low, high, shape), dtype='float32')


def _session(path):
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def check_exported(block, shapes, path, low=-1.0, high=1.0, rtol=RTOL):
    """Export ``block`` with example inputs of ``shapes`` (batch EXAMPLE_BATCH), check the
    file, and compare onnxruntime with MXNet at two other batch sizes: every output,
    max |onnx - mxnet| / max |mxnet| <= rtol."""
    example = [_data((EXAMPLE_BATCH,) + s, seed=i, low=low, high=high)
               for i, s in enumerate(shapes)]
    mg.export_onnx(block, path, *example)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = _session(path)
    assert [i.name for i in session.get_inputs()] == [f'input{i}' for i in range(len(shapes))]
    for batch in OTHER_BATCHES:
        xs = [_data((batch,) + s, seed=10 + i, low=low, high=high) for i, s in enumerate(shapes)]
        expected = block(*xs)
        expected = expected if isinstance(expected, (list, tuple)) else [expected]
        got = session.run(None, {f'input{i}': x.asnumpy() for i, x in enumerate(xs)})
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            e = e.asnumpy()
            assert g.shape == e.shape
            assert np.abs(g - e).max() <= rtol * np.abs(e).max(), (batch, np.abs(g - e).max())


# ----- network families -----
def _mlp(out=1, activation='tanh', width=16):
    net = nn.HybridSequential()
    net.add(nn.Dense(width, activation=activation), nn.Dense(width, activation='tanh'),
            nn.Dense(out))
    net.initialize(mx.init.Xavier())
    return net


class _Residual(gluon.HybridBlock):
    """conv, BatchNorm (running statistics), relu, max pool, residual addition, global
    average pooling: a CIFAR-style block, small."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = nn.Conv2D(8, 3, padding=1, in_channels=3)
        self.bn = nn.BatchNorm(in_channels=8)
        self.pool = nn.MaxPool2D(2)
        self.conv2 = nn.Conv2D(8, 3, padding=1, in_channels=8)
        self.gap = nn.GlobalAvgPool2D()
        self.out = nn.Dense(1, in_units=8)

    def hybrid_forward(self, F, x):
        h = self.pool(F.relu(self.bn(self.conv1(x))))
        h = F.tanh(h + self.conv2(h))
        return self.out(F.flatten(self.gap(h)))


class _Normalised(gluon.HybridBlock):
    def __init__(self, out=1, **kwargs):
        super().__init__(**kwargs)
        self.a = nn.Dense(16, in_units=3)
        self.norm = nn.LayerNorm(in_channels=16)
        self.out = nn.Dense(out, in_units=16)

    def hybrid_forward(self, F, x):
        return self.out(F.Activation(self.norm(self.a(x)), act_type='softrelu'))


class _TwoInputs(gluon.HybridBlock):
    """u(x, t): a space and a time input."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.x = nn.Dense(16, activation='tanh', in_units=3)
        self.t = nn.Dense(16, activation='sigmoid', in_units=1)
        self.out = nn.Dense(1, in_units=16)

    def hybrid_forward(self, F, x, t):
        return F.broadcast_add(self.out(self.x(x) * self.t(t)), F.sin(t))


def _family(name, out=1):
    mx.random.seed(7)
    if name == 'mlp':
        return _mlp(out), [(3,)]
    if name == 'conv':
        net = _Residual()
        net.initialize(mx.init.Xavier())
        net.bn.running_mean.set_data(mx.nd.array(np.linspace(-0.2, 0.2, 8)))
        net.bn.running_var.set_data(mx.nd.array(np.linspace(0.5, 1.5, 8)))
        return net, [(3, 6, 6)]
    if name == 'normalised':
        net = _Normalised(out)
        net.initialize(mx.init.Xavier())
        return net, [(3,)]
    net = _TwoInputs()
    net.initialize(mx.init.Xavier())
    return net, [(3,), (1,)]


FAMILIES = ['mlp', 'conv', 'normalised', 'two_inputs']
BLOCKS = ['InputGradient', 'JVP', 'VJP', 'HVP', 'HVP_rev_rev', 'Jacobian', 'Hessian',
          'Laplacian', 'Divergence']


def _block(kind, family):
    field = kind == 'Divergence' and family in ('mlp', 'normalised')
    net, shapes = _family(family, out=3 if field else 1)
    if kind == 'Divergence':
        if not field:
            net = mg.InputGradient(net)  # the divergence of a gradient field
        return mg.Divergence(net), shapes
    if kind == 'InputGradient':
        return mg.InputGradient(net, return_output=True), shapes
    if kind in ('JVP', 'HVP'):
        return getattr(mg, kind)(net), shapes + [shapes[0]]
    if kind == 'HVP_rev_rev':
        return mg.HVP(net, mode='rev_rev'), shapes + [shapes[0]]
    if kind == 'VJP':
        return mg.VJP(net), shapes + [(1,)]
    return getattr(mg, kind)(net), shapes


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('kind', BLOCKS)
def test_block_runs_in_onnxruntime_as_in_mxnet(kind, family, tmp_path):
    block, shapes = _block(kind, family)
    check_exported(block, shapes, str(tmp_path / 'model.onnx'))


@pytest.mark.parametrize('nested', ['grad_of_grad', 'fourth_derivative', 'grad_of_laplacian',
                                    'jacobian_of_grad'])
def test_nested_blocks_export(nested, tmp_path):
    if nested == 'fourth_derivative':
        net, shapes = _mlp(), [(1,)]
        block = net
        for _ in range(4):
            block = mg.InputGradient(block)
    else:
        net, shapes = _family('mlp')
        inner = mg.Laplacian(net) if nested == 'grad_of_laplacian' else mg.InputGradient(net)
        block = mg.Jacobian(inner) if nested == 'jacobian_of_grad' else mg.InputGradient(inner)
    check_exported(block, shapes, str(tmp_path / 'model.onnx'))


def test_interface_names_and_a_dynamic_batch_axis(tmp_path):
    net, _ = _family('two_inputs')
    path = str(tmp_path / 'named.onnx')
    x, t = _data((5, 3), 0), _data((5, 1), 1)
    mg.export_onnx(mg.InputGradient(net, wrt=1, return_output=True), path, x, t,
                   input_names=['x', 't'], output_names=['u', 'u_t'])
    model = onnx.load(path)
    assert [i.name for i in model.graph.input] == ['x', 't']
    assert [o.name for o in model.graph.output] == ['u', 'u_t']
    for value in list(model.graph.input) + list(model.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == 'batch'
    u, u_t = _session(path).run(None, {'x': x.asnumpy(), 't': t.asnumpy()})
    expected_u, expected_u_t = mg.InputGradient(net, wrt=1, return_output=True)(x, t)
    assert np.abs(u - expected_u.asnumpy()).max() <= RTOL * np.abs(expected_u.asnumpy()).max()
    assert np.abs(u_t - expected_u_t.asnumpy()).max() <= RTOL * np.abs(
        expected_u_t.asnumpy()).max()


def test_an_input_the_outputs_do_not_read_is_still_declared(tmp_path):
    net = nn.HybridSequential()  # piecewise linear throughout: the HVP is 0
    net.add(nn.Dense(16, activation='relu'), nn.Dense(16, activation='relu'), nn.Dense(1))
    net.initialize(mx.init.Xavier())
    path = str(tmp_path / 'hvp.onnx')
    x, v = _data((4, 3), 0), _data((4, 3), 1)
    mg.export_onnx(mg.HVP(net), path, x, v)
    session = _session(path)
    assert [i.name for i in session.get_inputs()] == ['input0', 'input1']
    hvp, = session.run(None, {'input0': x.asnumpy(), 'input1': v.asnumpy()})
    assert not hvp.any() and not mg.HVP(net)(x, v).asnumpy().any()


# ----- the translations mxgradlayer supplies, each through check_exported -----
TRANSLATED = {
    'erf_sign_rsqrt': (lambda F, x: F.erf(x) * F.sign(x) + F.rsqrt(x + 2), (3,)),
    'sinh_cosh_arcsinh': (lambda F, x: F.sinh(x) + F.cosh(x) * F.arcsinh(x), (3,)),
    'log1p_expm1': (lambda F, x: F.log1p(x + 1) - F.expm1(x), (3,)),
    'reversed_scalars': (lambda F, x: (2 - x) + 3 / (x + 2)
                         + F._internal._rpower_scalar(x, scalar=2.0), (3,)),
    'compare_scalars': (lambda F, x: x * (x >= 0.1) + x * (x <= -0.2) + (x != 0.3) * x,
                        (3,)),
    'maximum_minimum': (lambda F, x: F.broadcast_maximum(x, x * x)
                        - F.broadcast_minimum(x, -x), (3,)),
    'eye': (lambda F, x: F.dot(x, F.eye(3) * 2), (3,)),
    'dot_3d': (lambda F, x: F.dot(F.reshape(x, (0, 2, 3)), F.ones((3, 2, 2))), (6,)),
    'dot_3d_transposed': (lambda F, x: F.dot(F.reshape(x, (0, 2, 3)), F.ones((2, 3)),
                                             transpose_b=True), (6,)),
    'reshape_minus4': (lambda F, x: F.sum(F.reshape(x, (0, -4, 2, -1)), axis=1), (6,)),
    'reshape_minus4_leading': (lambda F, x: F.reshape(F.reshape(x, (-4, -1, 1, -2)),
                                                      (-3, -2)), (2, 3)),
    'reshape_minus3_minus2': (lambda F, x: F.reshape(x, (-3, -2)), (2, 3)),
    'reshape_reverse': (lambda F, x: F.reshape(x, (-1, 0), reverse=True), (2, 3)),
    'reverse_axes': (lambda F, x: F.reverse(x, axis=(1, 2)) * x, (2, 3)),
    'im2col': (lambda F, x: F.im2col(x, kernel=(2, 3), stride=(1, 2), pad=(1, 1),
                                     dilate=(2, 1)), (2, 5, 6)),
    'col2im': (lambda F, x: F.col2im(x, output_size=(5, 6), kernel=(2, 3), stride=(2, 2),
                                     pad=(1, 0)), (12, 6)),
    'softrelu_large_inputs': (lambda F, x: F.Activation(30 * x, act_type='softrelu'), (3,)),
    'comparisons': (lambda F, x: x * F._internal._greater(x, F.sin(x))
                    + F._internal._lesser_equal(x, x * x) * F._internal._not_equal(x, -x)
                    + F._internal._equal(x, x) + F._internal._greater_equal(x, F.cos(x))
                    - F._internal._lesser(x, F.cos(x)), (5,)),
    'rounding': (lambda F, x: F.rint(4 * x) + F.round(4 * x) + F.fix(4 * x) + F.trunc(3 * x)
                 + F.softsign(x), (8,)),
    'pick_clip': (lambda F, x: F.pick(x, F.floor(F.abs(F.slice_axis(x, axis=1, begin=0, end=1)
                                                        * 9)).reshape((-1,)), axis=1), (5,)),
    'pick_wrap_keepdims': (lambda F, x: F.pick(x, F.floor(F.slice_axis(x, axis=1, begin=0, end=1)
                                                          * 9), axis=-1, mode='wrap',
                                               keepdims=True), (5,)),
    'full': (lambda F, x: F.broadcast_mul(x, F._internal._full(shape=(1, 3), value=2.5)),
             (3,)),
    'sum_pooling': (lambda F, x: F.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type='sum'),
                    (2, 4, 4)),
}


@pytest.mark.parametrize('case', sorted(TRANSLATED))
def test_translation_agrees_with_mxnet(case, tmp_path):
    fn, shape = TRANSLATED[case]
    check_exported(Lambda(fn), [shape], str(tmp_path / 'op.onnx'))


def test_export_leaves_mxnets_exporter_as_it_was(tmp_path):
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    before = {v: dict(t) for v, t in MXNetGraph.registry_.items()}
    check_state = onnx.checker.check_graph
    mg.export_onnx(mg.Laplacian(_mlp()), str(tmp_path / 'a.onnx'), _data((4, 3), 0))
    assert {v: dict(t) for v, t in MXNetGraph.registry_.items()} == before
    assert onnx.checker.check_graph is check_state


# ----- refusals -----
def test_an_operator_without_translation_is_refused_by_name(tmp_path):
    # a plain network, not traced: its GroupNorm is not lowered to primitives
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=3), nn.GroupNorm(2), nn.Activation('tanh'),
            nn.Dense(1))
    net.initialize()
    path = str(tmp_path / 'groupnorm.onnx')
    with pytest.raises(mg.ExportError, match="'GroupNorm'.*Nothing was written"):
        mg.export_onnx(net, path, _data((4, 3, 6, 6), 0))
    assert not os.path.exists(path)
    # through a derivative block it is lowered, and exports
    check_exported(mg.InputGradient(net), [(3, 6, 6)], path)


def test_a_translation_that_computes_something_else_is_caught(tmp_path, monkeypatch):
    monkeypatch.setitem(translations.TRANSLATIONS, 'sinh', translations._elementwise('Cosh'))
    net = Lambda(lambda F, x: F.sinh(x) * x)
    path = str(tmp_path / 'wrong.onnx')
    with pytest.raises(mg.MXGradLayerError,
                       match=r"node '.*sinh.*' \(operator 'sinh'\) computes something else"):
        mg.export_onnx(mg.InputGradient(net), path, _data((4, 3), 0))
    assert not os.path.exists(path)


def test_bad_arguments_are_refused(tmp_path):
    net = _mlp()
    with pytest.raises(mg.InputSpecError, match='one example NDArray per input'):
        mg.export_onnx(mg.InputGradient(net), str(tmp_path / 'a.onnx'))
    with pytest.raises(mg.InputSpecError, match='distinct names'):
        mg.export_onnx(mg.InputGradient(net), str(tmp_path / 'a.onnx'), _data((4, 3), 0),
                       input_names=['x', 'y'])


def _check_real(results, count):
    assert len(results) == count
    for case, r in results.items():
        assert r['culprit'] is None, case
        assert r['relative_error'] <= 1e-5, (case, r)


def test_real_shaped_float32_networks_in_a_process_of_their_own():
    """ResNet-style networks with BatchNorm and global pooling, and mobilenet v2, oneDNN
    on (tests/onnx_real_check.py)."""
    _check_real(result_of(run_script('onnx_real_check.py')), 12)


@pytest.mark.slow
def test_model_zoo_resnet18_exports():
    _check_real(result_of(run_script('onnx_real_check.py', '--networks', 'resnet18_v1')), 4)


def test_a_node_of_more_than_100_outputs_is_refused(tmp_path):
    net = Lambda(lambda F, x: F.split(x, num_outputs=101, axis=1)[100] * 2)
    with pytest.raises(mg.ExportError, match='101 outputs'):
        mg.export_onnx(net, str(tmp_path / 'split.onnx'), _data((4, 101), 0))


def test_a_block_output_taken_from_a_multi_output_node(tmp_path):
    net = Lambda(lambda F, x: F.split(F.tanh(x), num_outputs=12, axis=1)[11])
    check_exported(net, [(12,)], str(tmp_path / 'split.onnx'))
    check_exported(mg.Jacobian(net), [(12,)], str(tmp_path / 'jac.onnx'))


def test_every_operator_a_derived_graph_can_hold_exports():
    """For every row of the rule tests (tests/op_specs.py): the operators of its
    InputGradient, JVP and Laplacian graphs -- the network's own and those the rules
    emit -- all have an ONNX form."""
    import json
    from op_specs import SPECS, VARIANTS
    exportable = set(mg.exportable_ops())
    missing, seen = {}, set()
    for spec in SPECS + VARIANTS:
        net = Lambda(spec.fn)
        for wrt in spec.wrt:
            variables = [mx.sym.var(f'x{i}', shape=s, dtype='float64')
                         for i, s in enumerate(spec.shapes)]
            blocks = [(mg.InputGradient(net, wrt), variables),
                      (mg.JVP(net, wrt), variables + [mx.sym.var(
                          'v', shape=spec.shapes[wrt], dtype='float64')]),
                      (mg.Laplacian(net, wrt), variables)]
            for block, args in blocks:
                try:
                    out = block(*args)
                except (mg.SampleCouplingError, mg.UnsupportedOperatorError):
                    continue  # refused for this block (mixes samples, or no such rule)
                out = out if isinstance(out, mx.sym.Symbol) else mx.sym.Group(list(out))
                for node in json.loads(out.tojson())['nodes']:
                    seen.add(node['op'])
                    if node['op'] != 'null' and node['op'] not in exportable:
                        missing.setdefault(node['op'], set()).add(spec.op)
    assert not missing, f'operators with no ONNX form, by the rows that emit them: {missing}'
    assert {'erf', 'im2col', 'col2im', 'Reshape', 'pick', 'Convolution'} <= seen


def test_a_model_onnxruntime_cannot_run_is_refused(tmp_path, monkeypatch):
    """MXNet's own reverse translation (which onnxruntime rejects) in place of ours."""
    from mxnet.onnx.mx2onnx._op_translations import _op_translations_opset13 as opset13
    monkeypatch.setitem(translations.TRANSLATIONS, 'reverse', opset13.convert_reverse)
    path = str(tmp_path / 'reverse.onnx')
    with pytest.raises(mg.MXGradLayerError, match='onnxruntime could not run'):
        mg.export_onnx(Lambda(lambda F, x: F.reverse(x, axis=1) * x), path, _data((4, 3), 0))
    assert not os.path.exists(path)


@pytest.mark.parametrize('codes,reverse,shape', [
    ((0, -4, -1, 2, 0), False, (4, 5)), ((0, 0, 2, -1, -4), True, (3, 4)),
    ((0, -3, -1), True, (2, 3, 2)), ((-2,), False, (3, 2)), ((0, 0, -1), True, (2, 3, 2)),
    ((0, 3, -1), False, (3, 4))])
def test_reshape_codes_as_mxnet_reads_them(codes, reverse, shape, tmp_path):
    net = Lambda(lambda F, x: F.reshape(x, shape=codes, reverse=reverse) * 2)
    check_exported(net, [shape], str(tmp_path / 'reshape.onnx'))
