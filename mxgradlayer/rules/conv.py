# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Convolutions, pooling and nearest upsampling: sliding-window operators.

Each is linear in its data input (max pooling piecewise so), and each one's transpose is
another operator of this family, so the table stays closed under differentiation:

* ``Convolution`` <-> ``Deconvolution`` (same kernel, stride, dilation, padding, groups
  and weight array; ``adj`` restores the rows a strided convolution drops).  Where
  MXNet's Deconvolution is missing (3-D) or wrong (stride and dilation on one axis), the
  transpose is a Convolution of the stride-spread, padded cotangent with the flipped
  kernel (`_transposed_conv_nd`);
* ``im2col`` <-> ``col2im``;
* ``Pooling`` is written with ``im2col``: a window's average is a mean over the unfolded
  axis, and a window's maximum selects its arg-max (ties share the derivative equally,
  as in HIPS/autograd), so its JVP and VJP are ``im2col`` / ``col2im`` with a mask;
* ``UpSampling`` (nearest) is the transpose of sum pooling with kernel = stride = scale.

Windows act on each sample alone, so K folded directions pass through unchanged.  Only
the channels-first layouts (NCW, NCHW, NCDHW) that MXNet's CPU kernels support are
accepted.
"""
from ..errors import UnsupportedOperatorError
from ..registry import defrule, def_linear

_LAYOUTS = (None, 'None', 'NCW', 'NCHW', 'NCDHW')


def _tuple(value, n, default):
    if value is None or value == ():
        return (default,) * n
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _window(eqn):
    """kernel, stride, dilate, pad of a sliding-window operator, as full tuples."""
    a = eqn.attrs
    if a.get('layout') not in _LAYOUTS:
        raise UnsupportedOperatorError(eqn.op, eqn.name, 'JVP/VJP',
                                       f"layout {a['layout']} (use channels-first)")
    kernel = tuple(a['kernel']) if a.get('kernel') not in (None, ()) else ()
    n = len(kernel) or len(eqn.in_shapes[0]) - 2
    return kernel, _tuple(a.get('stride'), n, 1), _tuple(a.get('dilate'), n, 1), \
        _tuple(a.get('pad'), n, 0)


def _unsupported(eqn, why):
    return UnsupportedOperatorError(eqn.op, eqn.name, 'JVP/VJP', why)


# ----- Convolution(data, weight[, bias]) and Deconvolution(data, weight[, bias]) -----
def _conv(c, eqn, data, weight, **attrs):
    kernel, stride, dilate, pad = _window(eqn)
    return c.F.Convolution(data, weight, kernel=kernel, stride=stride, dilate=dilate, pad=pad,
                           num_group=eqn.attrs.get('num_group', 1), no_bias=True, **attrs)


def _deconv(c, eqn, data, weight, **attrs):
    kernel, stride, dilate, pad = _window(eqn)
    return c.F.Deconvolution(data, weight, kernel=kernel, stride=stride, dilate=dilate,
                             pad=pad, num_group=eqn.attrs.get('num_group', 1), no_bias=True,
                             **attrs)


def _transpose_weight(c, weight):
    """The weight for the transposed operator.  A copy: in float32, MXNet's oneDNN
    kernels keep a weight in the layout of the operator that read it first, and the
    other operator then fails its layout check (a convolution's weight read by a
    deconvolution and vice versa)."""
    return c.F.identity(weight)


def _conv_jvp(c, eqn, xs, ans, ts):
    if ts[0] is None:
        return [None]
    return [_conv(c, eqn, ts[0], xs[1], num_filter=eqn.attrs['num_filter'])]


def _conv_vjp(c, eqn, xs, ans, gs):
    if gs[0] is None:
        return [None] * len(xs)
    kernel, stride, dilate, pad = _window(eqn)
    strided_dilation = any(s > 1 and d > 1 for s, d in zip(stride, dilate))
    # MXNet 1.9.1 has no 3-D Deconvolution, and its 2-D one is wrong with a strided
    # dilation; F.pad (which the construction needs) takes 4-D and 5-D arrays only
    if len(kernel) == 3 or (len(kernel) == 2 and strided_dilation):
        return [_transposed_conv_nd(c, eqn, gs[0], xs[1])] + [None] * (len(xs) - 1)
    _strided_dilation_check(eqn)
    size = eqn.in_shapes[0][2:]
    # the rows of the input a strided convolution never reaches
    adj = tuple((h + 2 * p - d * (k - 1) - 1) % s
                for h, p, d, k, s in zip(size, pad, dilate, kernel, stride))
    g = _deconv(c, eqn, gs[0], _transpose_weight(c, xs[1]), adj=adj,
                num_filter=eqn.in_shapes[0][1])
    return [g] + [None] * (len(xs) - 1)


def _transposed_conv_nd(c, eqn, g, weight):
    """The transpose of a convolution written as a convolution: the cotangent, spread
    out by the stride (zeros in between) and padded by d(k-1) - p (plus the rows a
    strided window never reached), convolved with the flipped, in/out-swapped kernel."""
    F = c.F
    kernel, stride, dilate, pad = _window(eqn)
    groups = int(eqn.attrs.get('num_group', 1))
    channels, filters = eqn.in_shapes[0][1], int(eqn.attrs['num_filter'])
    size, out = eqn.in_shapes[0][2:], eqn.out_shapes[0][2:]
    n = len(kernel)
    for i, (s, o) in enumerate(zip(stride, out)):
        if s > 1:  # (.., o, ..) -> (.., (o - 1) s + 1, ..) with s - 1 zeros between
            axis = 2 + i
            spread = F.stack(*([g] + [F.zeros_like(g)] * (s - 1)), axis=axis + 1)
            g = F.reshape(spread, shape=(0,) * axis + (-3, -2))
            g = F.slice_axis(g, axis=axis, begin=0, end=(o - 1) * s + 1)
    width = [0, 0, 0, 0]
    crop = []
    for h, k, s, d, p in zip(size, kernel, stride, dilate, pad):
        low = d * (k - 1) - p
        rest = (h + 2 * p - d * (k - 1) - 1) % s  # rows no window reaches
        width += [max(low, 0), max(low, 0) + rest]
        crop.append(max(-low, 0))
    g = F.pad(g, mode='constant', pad_width=tuple(width), constant_value=0.0)
    # weight (F, C/G, *k) -> (C, F/G, *k), flipped in space
    w = F.reshape(weight, shape=(groups, filters // groups, channels // groups) + kernel)
    w = F.transpose(w, axes=(0, 2, 1) + tuple(range(3, 3 + n)))
    w = F.reshape(w, shape=(channels, filters // groups) + kernel)
    w = F.flip(w, axis=tuple(range(2, 2 + n)))
    gx = F.Convolution(g, w, kernel=kernel, dilate=dilate, num_filter=channels,
                       num_group=groups, no_bias=True)
    if any(crop):  # padding beyond the kernel's reach: those rows get no gradient path
        gx = F.slice(gx, begin=(None, None) + tuple(crop),
                     end=(None, None) + tuple(cr + h for cr, h in zip(crop, size)))
    return gx


def _deconv_check(eqn):
    if eqn.attrs.get('target_shape') not in (None, (), ''):
        raise _unsupported(eqn, 'target_shape is not covered (give pad and adj instead)')
    _strided_dilation_check(eqn)


def _strided_dilation_check(eqn):
    """MXNet 1.9.1's Deconvolution is wrong where one axis has both stride and dilation
    above 1 (measured: it is then not the transpose of the Convolution, nor of its own
    backward); elsewhere the two agree to 1e-10."""
    kernel, stride, dilate, pad = _window(eqn)
    if any(s > 1 and d > 1 for s, d in zip(stride, dilate)):
        raise _unsupported(eqn, 'stride and dilation above 1 on one axis: the transposed '
                           "convolution this needs is wrong in MXNet 1.9.1's Deconvolution")


def _deconv_jvp(c, eqn, xs, ans, ts):
    _deconv_check(eqn)
    if ts[0] is None:
        return [None]
    return [_deconv(c, eqn, ts[0], xs[1], adj=_tuple(eqn.attrs.get('adj'), len(_window(eqn)[0]),
                                                      0), num_filter=eqn.attrs['num_filter'])]


def _deconv_vjp(c, eqn, xs, ans, gs):
    _deconv_check(eqn)
    if gs[0] is None:
        return [None] * len(xs)
    return [_conv(c, eqn, gs[0], _transpose_weight(c, xs[1]), num_filter=eqn.in_shapes[0][1])
            ] + [None] * (len(xs) - 1)


# the weight and bias are parameters: a network whose filters depend on its input is refused
defrule('Convolution', _conv_jvp, _conv_vjp, linear=True, diff_args=(0,))
defrule('Deconvolution', _deconv_jvp, _deconv_vjp, linear=True, diff_args=(0,))


# ----- im2col <-> col2im -----
def _im2col_vjp(c, eqn, xs, ans, gs):
    kernel, stride, dilate, pad = _window(eqn)
    return [None if gs[0] is None else c.F.col2im(
        gs[0], output_size=eqn.in_shapes[0][2:], kernel=kernel, stride=stride, dilate=dilate,
        pad=pad)]


def _col2im_vjp(c, eqn, xs, ans, gs):
    kernel, stride, dilate, pad = _window(eqn)
    return [None if gs[0] is None else c.F.im2col(gs[0], kernel=kernel, stride=stride,
                                                  dilate=dilate, pad=pad)]


def_linear('im2col', _im2col_vjp)
def_linear('col2im', _col2im_vjp)


# ----- Pooling -----
def _pool_geometry(eqn):
    """(kernel, stride, pad, channels, window size) with MXNet's defaults applied."""
    a = eqn.attrs
    in_shape, out_shape = eqn.in_shapes[0], eqn.out_shapes[0]
    spatial = tuple(in_shape[2:])
    if a.get('layout') not in _LAYOUTS:
        raise _unsupported(eqn, f"layout {a['layout']} (use channels-first)")
    if len(spatial) not in (1, 2):
        raise _unsupported(eqn, f'{len(spatial)}-D pooling is not covered (1-D and 2-D are)')
    if a.get('pool_type', 'max') not in ('max', 'avg', 'sum'):
        raise _unsupported(eqn, f"pool_type {a['pool_type']} is not covered")
    if a.get('global_pool', False):
        kernel, stride, pad = spatial, (1,) * len(spatial), (0,) * len(spatial)
    else:
        kernel = tuple(a['kernel'])
        stride = _tuple(a.get('stride'), len(kernel), 1)
        pad = _tuple(a.get('pad'), len(kernel), 0)
    valid = tuple((h + 2 * p - k) // s + 1 for h, p, k, s in zip(spatial, pad, kernel, stride))
    if tuple(out_shape[2:]) != valid:
        raise _unsupported(eqn, f"pooling_convention {a.get('pooling_convention')} adds "
                           'partial windows; use the default "valid" (ceil_mode=False)')
    size = 1
    for k in kernel:
        size *= k
    return kernel, stride, pad, in_shape[1], size


def _geometry_2d(eqn):
    """1-D windows as 2-D ones over a unit axis: MXNet's im2col computes only 2-D."""
    kernel, stride, pad = _pool_geometry(eqn)[:3]
    if len(kernel) == 2:
        return kernel, stride, pad
    return (1,) + kernel, (1,) + stride, (0,) + pad


def _unfold(c, eqn, x):
    """x (N, C, *s) -> windows (N, C, window size, positions)."""
    channels, size = _pool_geometry(eqn)[3:]
    kernel, stride, pad = _geometry_2d(eqn)
    if len(eqn.in_shapes[0]) == 3:
        x = c.F.reshape(x, shape=(0, 0, 1, -1))
    cols = c.F.im2col(x, kernel=kernel, stride=stride, pad=pad)
    return c.F.reshape(cols, shape=(0, channels, size, -1))


def _fold(c, eqn, windows):
    """Transpose of `_unfold`: windows (N, C, size, positions) -> (N, C, *s)."""
    spatial = tuple(eqn.in_shapes[0][2:])
    kernel, stride, pad = _geometry_2d(eqn)
    out = c.F.col2im(c.F.reshape(windows, shape=(0, -3, -2)),
                     output_size=spatial if len(spatial) == 2 else (1,) + spatial,
                     kernel=kernel, stride=stride, pad=pad)
    return out if len(spatial) == 2 else c.F.reshape(out, shape=(0, 0, -1))


def _window_weights(c, eqn, x):
    """Each window element's weight in its window's output, (B, C, size, positions):
    the arg-max indicator (shared among ties) for max, 1/count for avg, 1 for sum."""
    F = c.F
    kind = eqn.attrs.get('pool_type', 'max')
    kernel, stride, pad, channels, size = _pool_geometry(eqn)
    padded = any(pad)
    if kind == 'sum':
        return None
    if kind == 'avg':
        if not padded or eqn.attrs.get('count_include_pad', True) in (True, None):
            return 1.0 / size
        inside = _unfold(c, eqn, F.ones_like(x))
        return F.broadcast_like(F.reciprocal(F.sum(inside, axis=2, keepdims=True)), inside)
    # from a detached copy: the mask has no derivative, and MXNet 1.9.1's backward
    # segfaulted when a `where` (an ELU's value) fed only this piecewise-constant path
    windows = _unfold(c, eqn, F.BlockGrad(x))
    if padded:  # padding is -inf for max pooling, not the zeros im2col inserts
        windows = F.elemwise_add(windows, (_unfold(c, eqn, F.ones_like(x)) - 1.0) * 1e30)
    hits = F.broadcast_equal(windows, F.max(windows, axis=2, keepdims=True))
    return F.broadcast_div(hits, F.sum(hits, axis=2, keepdims=True))


def _weights(c, eqn, x):
    return c.memo((eqn.nid, 'pool-weights'), lambda: _window_weights(c, eqn, x))


def _weigh(c, windows, w):
    if w is None:
        return windows
    if isinstance(w, float):
        return windows * w
    return c.scale(windows, w)


def _pool_jvp(c, eqn, xs, ans, ts):
    if ts[0] is None:
        return [None]
    if eqn.attrs.get('pool_type', 'max') != 'max':  # linear: pool the tangent
        return c.apply(eqn, [ts[0]])
    picked = _weigh(c, _unfold(c, eqn, ts[0]), _weights(c, eqn, xs[0]))
    return [c.F.reshape(c.F.sum(picked, axis=2), shape=(0, 0) + tuple(eqn.out_shapes[0][2:]))]


def _pool_vjp(c, eqn, xs, ans, gs):
    if gs[0] is None:
        return [None]
    F = c.F
    size = _pool_geometry(eqn)[4]
    spread = F.broadcast_axis(F.expand_dims(F.reshape(gs[0], shape=(0, 0, -1)), axis=2),
                              axis=2, size=size)
    return [_fold(c, eqn, _weigh(c, spread, _weights(c, eqn, xs[0])))]


defrule('Pooling', _pool_jvp, _pool_vjp, linear=True)


# ----- UpSampling (nearest): each pixel copied to a scale x scale block -----
def _upsampling_check(eqn):
    a = eqn.attrs
    if a.get('sample_type') != 'nearest' or a.get('num_args', 1) != 1:
        raise _unsupported(eqn, 'only nearest upsampling of one input is covered')
    return int(a['scale'])


def _upsampling_jvp(c, eqn, xs, ans, ts):
    _upsampling_check(eqn)
    return [None] if ts[0] is None else c.apply(eqn, [ts[0]])


def _upsampling_vjp(c, eqn, xs, ans, gs):
    scale = _upsampling_check(eqn)
    if gs[0] is None:
        return [None]
    k = (scale,) * (len(eqn.in_shapes[0]) - 2)
    return [c.F.Pooling(gs[0], kernel=k, stride=k, pool_type='sum')]


defrule('UpSampling', _upsampling_jvp, _upsampling_vjp, linear=True)
