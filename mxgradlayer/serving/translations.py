# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The ONNX forms mxgradlayer supplies beside MXNet 1.9.1's exporter, one per MXNet
operator, in one table (`TRANSLATIONS`).

Each is a function of MXNet's translation signature ``(node, **kwargs) -> [NodeProto]``
(or ``(nodes, dtypes)`` for a node without inputs), written for opset 13.  `registered`
puts them into MXNet's registry for one export and restores it afterwards.  What each
replaces or adds, and why, is in the README ("Serving outside MXNet: ONNX", and the
exporter's issues under "Known MXNet 1.9.1 issues").
"""
import contextlib

import numpy as np

__all__ = ['TRANSLATIONS', 'registered', 'OPSET', 'tensor_type']

OPSET = 13
"""The ONNX opset written: the newest MXNet 1.9.1's translations were written for."""

_INT64_MAX = np.iinfo(np.int64).max


def tensor_type(dtype):
    from onnx import helper
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


TRANSLATIONS = {}


def _translation(*ops):
    def register(fn):
        for op in ops:
            TRANSLATIONS[op] = fn
        return fn
    return register


_SHAPES = {}  # (node index, output) -> static shape at the example, for this export


def _input_shape(node, k=0):
    """Static shape (at the example) of input ``k`` of a node being translated."""
    return _SHAPES[tuple(node['inputs'][k][:2])]


@contextlib.contextmanager
def registered(shapes):
    """Ours beside MXNet's for one export.  The exporter checks its graph against
    onnx's newest opset, where opset-13 nodes (ReduceMax's ``axes``) are invalid; that
    check is skipped here and the model checked against the opset it declares."""
    import onnx.checker
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    table = MXNetGraph.registry_.setdefault(OPSET, {})
    saved, check_graph = dict(table), onnx.checker.check_graph
    table.update(TRANSLATIONS)
    _SHAPES.clear()
    _SHAPES.update(shapes)
    onnx.checker.check_graph = lambda *args, **kwargs: None
    try:
        yield
    finally:
        onnx.checker.check_graph = check_graph
        table.clear()
        table.update(saved)
        _SHAPES.clear()


def _io(node, kwargs):
    from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import (
        get_inputs, get_input_dtypes)
    name, inputs, attrs = get_inputs(node, kwargs)
    return name, inputs, attrs, get_input_dtypes(node, kwargs)[0] if inputs else None


def _const(kwargs, name, value, dtype):
    from onnx import numpy_helper
    kwargs['initializer'].append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
    return name


def _ints(text):
    text = str(text).strip('()[] ')
    return [int(v) for v in text.split(',') if v.strip() and v.strip() != 'None']


def _elementwise(onnx_op, arity=1):
    """An MXNet operator that is one ONNX operator on its first ``arity`` inputs."""
    def convert(node, **kwargs):
        from onnx.helper import make_node
        name, inputs, _, _ = _io(node, kwargs)
        return [make_node(onnx_op, inputs[:arity], [name], name=name)]
    return convert


for _op, _onnx_op in (('erf', 'Erf'), ('sign', 'Sign'), ('sinh', 'Sinh'), ('cosh', 'Cosh'),
                      ('arcsinh', 'Asinh'), ('arccosh', 'Acosh'), ('arctanh', 'Atanh'),
                      ('softsign', 'Softsign')):
    TRANSLATIONS[_op] = _elementwise(_onnx_op)
TRANSLATIONS['broadcast_maximum'] = _elementwise('Max', 2)
TRANSLATIONS['broadcast_minimum'] = _elementwise('Min', 2)


@_translation('rsqrt')
def _rsqrt(node, **kwargs):
    from onnx.helper import make_node
    name, inputs, _, _ = _io(node, kwargs)
    return [make_node('Sqrt', inputs[:1], [name + '_sqrt']),
            make_node('Reciprocal', [name + '_sqrt'], [name], name=name)]


@_translation('log1p', 'expm1')
def _log1p_expm1(node, **kwargs):
    from onnx.helper import make_node
    name, inputs, _, dtype = _io(node, kwargs)
    one = _const(kwargs, name + '_one', 1, dtype)
    if node['op'] == 'log1p':
        return [make_node('Add', [inputs[0], one], [name + '_x1']),
                make_node('Log', [name + '_x1'], [name], name=name)]
    return [make_node('Exp', inputs[:1], [name + '_exp']),
            make_node('Sub', [name + '_exp', one], [name], name=name)]


@_translation('_rminus_scalar', '_rdiv_scalar', '_rpower_scalar')
def _reversed_scalar(node, **kwargs):
    """scalar - x, scalar / x, scalar ** x; keyed on the operator, not the node name."""
    from onnx.helper import make_node
    name, inputs, attrs, dtype = _io(node, kwargs)
    scalar = _const(kwargs, name + '_scalar', float(attrs.get('scalar', 1)), dtype)
    onnx_op = {'_rminus_scalar': 'Sub', '_rdiv_scalar': 'Div', '_rpower_scalar': 'Pow'}
    return [make_node(onnx_op[node['op']], [scalar, inputs[0]], [name], name=name)]


@_translation('_eye')
def _eye(node, **kwargs):
    from onnx.helper import make_node
    name, _, attrs, _ = _io(node, kwargs)
    n = int(attrs['N'])
    m = int(attrs.get('M', 0)) or n
    dtype = np.dtype(attrs.get('dtype', 'float32'))
    value = _const(kwargs, name + '_value', np.eye(n, m, int(attrs.get('k', 0))), dtype)
    # no inputs to take the dtype from: the exporter wants it returned
    return [make_node('Identity', [value], [name], name=name)], (dtype,)


@_translation('dot')
def _dot(node, **kwargs):
    """MXNet's dot contracts a's last axis with b's first, whatever their ranks
    (after reversing all axes of a transposed operand); ONNX MatMul batches over the
    leading axes, so beyond two axes both are flattened to matrices around it."""
    from onnx.helper import make_node
    name, inputs, attrs, _ = _io(node, kwargs)
    ranks = [len(_input_shape(node, k)) for k in range(2)]
    a, b = inputs[:2]
    nodes = []
    for k, flag in enumerate(('transpose_a', 'transpose_b')):
        if str(attrs.get(flag, 'False')) in ('True', '1', 'true'):
            t = f'{name}_t{k}'
            nodes.append(make_node('Transpose', [(a, b)[k]], [t],
                                   perm=list(range(ranks[k]))[::-1]))
            a, b = (t, b) if k == 0 else (a, t)
    if ranks == [2, 2]:
        return nodes + [make_node('MatMul', [a, b], [name], name=name)]
    begin, minus1 = _const(kwargs, name + '_0', [0], np.int64), _const(
        kwargs, name + '_m1', [-1], np.int64)
    one, end = _const(kwargs, name + '_1', [1], np.int64), _const(
        kwargs, name + '_end', [_INT64_MAX], np.int64)
    nodes += [
        make_node('Shape', [a], [name + '_sa']), make_node('Shape', [b], [name + '_sb']),
        make_node('Slice', [name + '_sa', minus1, end], [name + '_k']),
        make_node('Concat', [minus1, name + '_k'], [name + '_as'], axis=0),
        make_node('Concat', [name + '_k', minus1], [name + '_bs'], axis=0),
        make_node('Reshape', [a, name + '_as'], [name + '_a2']),
        make_node('Reshape', [b, name + '_bs'], [name + '_b2']),
        make_node('MatMul', [name + '_a2', name + '_b2'], [name + '_ab']),
        make_node('Slice', [name + '_sa', begin, minus1], [name + '_lead']),
        make_node('Slice', [name + '_sb', one, end], [name + '_trail']),
        make_node('Concat', [name + '_lead', name + '_trail'], [name + '_shape'], axis=0),
        make_node('Reshape', [name + '_ab', name + '_shape'], [name], name=name)]
    return nodes


@_translation('Reshape')
def _reshape(node, **kwargs):
    """MXNet's reshape codes (0 copy, -1 infer, -2 copy the rest, -3 merge two, -4 split
    one; ``reverse`` matches from the right), on the runtime shape of the input."""
    from onnx.helper import make_node
    name, inputs, attrs, _ = _io(node, kwargs)
    codes = _ints(attrs['shape'])
    rank = len(_input_shape(node))
    reverse = str(attrs.get('reverse', 'False')) in ('True', '1', 'true')
    nodes = [make_node('Shape', [inputs[0]], [name + '_in'])]
    counter = iter(range(10 ** 6))

    def dims(begin, end):
        out = f'{name}_d{next(counter)}'
        bounds = [_const(kwargs, out + '_b', [begin], np.int64),
                  _const(kwargs, out + '_e', [end], np.int64)]
        nodes.append(make_node('Slice', [name + '_in'] + bounds, [out]))
        return out

    def literal(values):
        return _const(kwargs, f'{name}_c{next(counter)}', values, np.int64)

    def binary(op, x, y):
        out = f'{name}_o{next(counter)}'
        nodes.append(make_node(op, [x, y], [out]))
        return out

    # positions count from the left; with reverse, both lists are read from the right
    position = (lambda i: (rank - 1 - i, rank - i)) if reverse else (lambda i: (i, i + 1))
    if reverse:
        codes = codes[::-1]
    pieces, src, i = [], 0, 0
    while i < len(codes):
        code = codes[i]
        if code > 0 or code == -1:
            pieces.append(literal([code]))
            src += 1
        elif code == 0:
            pieces.append(dims(*position(src)))
            src += 1
        elif code == -2:
            rest = [dims(*position(j)) for j in range(src, rank)]
            pieces.extend(rest)
            src = rank
        elif code == -3:
            pieces.append(binary('Mul', dims(*position(src)), dims(*position(src + 1))))
            src += 2
        elif code == -4:
            first, second = codes[i + 1], codes[i + 2]  # as MXNet reads them, reversed too
            whole = dims(*position(src))
            if first == -1:
                first = binary('Div', whole, literal([second]))
                second = literal([second])
            elif second == -1:
                second = binary('Div', whole, literal([first]))
                first = literal([first])
            else:
                first, second = literal([first]), literal([second])
            pieces.extend([first, second])
            src += 1
            i += 2
        else:
            raise NotImplementedError(f'Reshape code {code} in {codes}')
        i += 1
    if reverse:
        pieces = pieces[::-1]
    nodes.append(make_node('Concat', pieces, [name + '_shape'], axis=0))
    nodes.append(make_node('Reshape', [inputs[0], name + '_shape'], [name], name=name))
    return nodes


def _window_weight(channels, kernel, dtype):
    """One-hot filters: grouped convolution with them is im2col (rows ordered channel,
    then kernel position, as MXNet's), its transpose col2im."""
    k = int(np.prod(kernel))
    weight = np.zeros((channels * k, 1) + tuple(kernel), dtype=dtype)
    for c in range(channels):
        for j in range(k):
            weight[(c * k + j, 0) + np.unravel_index(j, kernel)] = 1
    return weight


def _window_attrs(attrs, spatial):
    kernel = _ints(attrs['kernel'])
    stride = _ints(attrs.get('stride', '()')) or [1] * spatial
    dilate = _ints(attrs.get('dilate', '()')) or [1] * spatial
    pad = _ints(attrs.get('pad', '()')) or [0] * spatial
    return kernel, stride, dilate, pad


@_translation('im2col')
def _im2col(node, **kwargs):
    from onnx.helper import make_node
    name, inputs, attrs, dtype = _io(node, kwargs)
    shape = _input_shape(node)
    kernel, stride, dilate, pad = _window_attrs(attrs, len(shape) - 2)
    channels = shape[1]
    weight = _const(kwargs, name + '_w', _window_weight(channels, kernel, dtype), dtype)
    rows = _const(kwargs, name + '_rows', [0, channels * int(np.prod(kernel)), -1], np.int64)
    return [make_node('Conv', [inputs[0], weight], [name + '_conv'], group=channels,
                      kernel_shape=kernel, strides=stride, dilations=dilate, pads=pad + pad),
            make_node('Reshape', [name + '_conv', rows], [name], name=name)]


@_translation('col2im')
def _col2im(node, **kwargs):
    from onnx.helper import make_node
    name, inputs, attrs, dtype = _io(node, kwargs)
    shape = _input_shape(node)
    size = _ints(attrs['output_size'])
    kernel, stride, dilate, pad = _window_attrs(attrs, len(size))
    channels = shape[1] // int(np.prod(kernel))
    out = [(s + 2 * p - d * (k - 1) - 1) // st + 1
           for s, p, d, k, st in zip(size, pad, dilate, kernel, stride)]
    full = [(o - 1) * st - 2 * p + d * (k - 1) + 1
            for o, p, d, k, st in zip(out, pad, dilate, kernel, stride)]
    weight = _const(kwargs, name + '_w', _window_weight(channels, kernel, dtype), dtype)
    grid = _const(kwargs, name + '_grid', [0, shape[1]] + out, np.int64)
    return [make_node('Reshape', [inputs[0], grid], [name + '_grid_cols']),
            make_node('ConvTranspose', [name + '_grid_cols', weight], [name], name=name,
                      group=channels, kernel_shape=kernel, strides=stride, dilations=dilate,
                      pads=pad + pad, output_padding=[s - f for s, f in zip(size, full)])]


@_translation('reverse')
def _reverse(node, **kwargs):
    """A slice of step -1 per axis (MXNet's translation pads the input to eight axes,
    which onnxruntime rejects)."""
    from onnx.helper import make_node
    name, inputs, attrs, _ = _io(node, kwargs)
    axes = _ints(attrs.get('axis', '0'))
    count = len(axes)
    return [make_node('Slice', [inputs[0],
                                _const(kwargs, name + '_starts', [-1] * count, np.int64),
                                _const(kwargs, name + '_ends', [np.iinfo(np.int64).min] * count,
                                       np.int64),
                                _const(kwargs, name + '_axes', axes, np.int64),
                                _const(kwargs, name + '_steps', [-1] * count, np.int64)],
                      [name], name=name)]


_MXNET_POOLING = []


@_translation('Pooling')
def _pooling(node, **kwargs):
    """Sum pooling (the UpSampling rules emit it) as average pooling over the whole
    window times its size; every other kind by MXNet's translation."""
    from onnx.helper import make_node
    from mxnet.onnx.mx2onnx._op_translations import _op_translations_opset12 as opset12
    name, inputs, attrs, dtype = _io(node, kwargs)
    if attrs.get('pool_type') != 'sum' or str(attrs.get('global_pool', 'False')) in (
            'True', '1') or attrs.get('pooling_convention', 'valid') != 'valid':
        return opset12.convert_pooling(node, **kwargs)
    kernel, stride, _, pad = _window_attrs(attrs, len(_ints(attrs['kernel'])))
    size = _const(kwargs, name + '_size', float(np.prod(kernel)), dtype)
    return [make_node('AveragePool', inputs[:1], [name + '_mean'], kernel_shape=kernel,
                      strides=stride, pads=pad + pad, count_include_pad=1),
            make_node('Mul', [name + '_mean', size], [name], name=name)]


@_translation('Activation')
def _activation(node, **kwargs):
    """softrelu as relu(x) + log(1 + exp(-|x|)): the same function, overflow-free, and
    onnxruntime 1.19's Softplus kernel takes 85 % of the force-field model's time
    (297 of 350 ms over 20 batches of 10,000 points); every other act_type by MXNet's
    translation."""
    from onnx.helper import make_node
    from mxnet.onnx.mx2onnx._op_translations import _op_translations_opset12 as opset12
    name, inputs, attrs, dtype = _io(node, kwargs)
    if attrs.get('act_type') != 'softrelu':
        return opset12.convert_activation(node, **kwargs)
    one = _const(kwargs, name + '_one', 1, dtype)
    return [make_node('Relu', inputs[:1], [name + '_relu']),
            make_node('Abs', inputs[:1], [name + '_abs']),
            make_node('Neg', [name + '_abs'], [name + '_neg']),
            make_node('Exp', [name + '_neg'], [name + '_exp']),
            make_node('Add', [name + '_exp', one], [name + '_1p']),
            make_node('Log', [name + '_1p'], [name + '_log']),
            make_node('Add', [name + '_relu', name + '_log'], [name], name=name)]


_COMPARISONS = {  # MXNet's comparisons (MXNet's exporter has the other scalar ones)
    '_equal': ('Equal', False), '_not_equal': ('Equal', True),
    '_greater': ('Greater', False), '_greater_equal': ('GreaterOrEqual', False),
    '_lesser': ('Less', False), '_lesser_equal': ('LessOrEqual', False),
    '_greater_equal_scalar': ('GreaterOrEqual', False),
    '_lesser_equal_scalar': ('LessOrEqual', False), '_not_equal_scalar': ('Equal', True)}


@_translation(*_COMPARISONS)
def _compare(node, **kwargs):
    """1 or 0 in the operands' dtype; ``x op scalar`` or two arrays of one shape."""
    from onnx.helper import make_node
    name, inputs, attrs, dtype = _io(node, kwargs)
    onnx_op, negate = _COMPARISONS[node['op']]
    operands = inputs[:2] if not node['op'].endswith('_scalar') else [
        inputs[0], _const(kwargs, name + '_scalar', float(attrs.get('scalar', 0)), dtype)]
    nodes = [make_node(onnx_op, operands, [name + '_bool'])]
    if negate:
        nodes.append(make_node('Not', [name + '_bool'], [name + '_not']))
    return nodes + [make_node('Cast', [nodes[-1].output[0]], [name], name=name,
                              to=tensor_type(dtype))]


@_translation('rint', 'round', 'fix', 'trunc')
def _rounding(node, **kwargs):
    """rint: half to even, as ONNX Round; round: half away from zero; fix and trunc:
    toward zero (both as sign(x) * floor(|x| + offset))."""
    from onnx.helper import make_node
    name, inputs, _, dtype = _io(node, kwargs)
    if node['op'] == 'rint':
        return [make_node('Round', inputs[:1], [name], name=name)]
    offset = _const(kwargs, name + '_offset', 0.5 if node['op'] == 'round' else 0.0, dtype)
    return [make_node('Abs', inputs[:1], [name + '_abs']),
            make_node('Add', [name + '_abs', offset], [name + '_shifted']),
            make_node('Floor', [name + '_shifted'], [name + '_floor']),
            make_node('Sign', inputs[:1], [name + '_sign']),
            make_node('Mul', [name + '_sign', name + '_floor'], [name], name=name)]


@_translation('pick')
def _pick(node, **kwargs):
    """data[..., index, ...] along ``axis``: GatherElements on the index with that axis
    restored, clipped (mode 'clip') or wrapped (mode 'wrap') to the axis' length."""
    from onnx.helper import make_node
    name, inputs, attrs, _ = _io(node, kwargs)
    shape = _input_shape(node)
    axis = int(attrs.get('axis', -1)) % len(shape)
    keepdims = str(attrs.get('keepdims', 'False')) in ('True', '1', 'true')
    size = shape[axis]
    index_rank = len(_input_shape(node, 1))
    nodes = [make_node('Cast', [inputs[1]], [name + '_index'], to=tensor_type(np.int64))]
    index = name + '_index'
    if index_rank < len(shape):
        nodes.append(make_node('Unsqueeze', [index, _const(kwargs, name + '_axis', [axis],
                                                            np.int64)], [name + '_unsq']))
        index = name + '_unsq'
    if attrs.get('mode', 'clip') == 'wrap':
        nodes.append(make_node('Mod', [index, _const(kwargs, name + '_n', size, np.int64)],
                               [name + '_wrapped'], fmod=0))
        index = name + '_wrapped'
    else:
        nodes.append(make_node('Clip', [index, _const(kwargs, name + '_lo', 0, np.int64),
                                        _const(kwargs, name + '_hi', size - 1, np.int64)],
                               [name + '_clipped']))
        index = name + '_clipped'
    if keepdims:
        return nodes + [make_node('GatherElements', [inputs[0], index], [name], name=name,
                                  axis=axis)]
    return nodes + [
        make_node('GatherElements', [inputs[0], index], [name + '_picked'], axis=axis),
        make_node('Squeeze', [name + '_picked', _const(kwargs, name + '_sq', [axis], np.int64)],
                  [name], name=name)]


@_translation('_full')
def _full(node, **kwargs):
    from onnx.helper import make_node
    name, _, attrs, _ = _io(node, kwargs)
    dtype = np.dtype(attrs.get('dtype', 'float32'))
    value = _const(kwargs, name + '_value', np.full(tuple(_ints(attrs['shape'])),
                                                    float(attrs.get('value', 0))), dtype)
    return [make_node('Identity', [value], [name], name=name)], (dtype,)
