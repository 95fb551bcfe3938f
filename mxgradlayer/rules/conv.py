# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Convolutions, pooling and nearest upsampling: sliding-window operators.

Each is linear in its data input (max pooling piecewise so), and each one's transpose is
another operator of this family, so the table stays closed under differentiation:

* ``Convolution``: its transpose is again a Convolution, of the stride-spread cotangent
  with the flipped, in/out-swapped kernel (`transposed_convolution`).  ``Deconvolution``
  is lowered to the same form when a block is traced, so MXNet's Deconvolution kernel
  never appears in a derived graph (see `transposed_convolution` for why);
* ``im2col`` <-> ``col2im``;
* ``Pooling`` is written with ``im2col``: a window's average is a mean over the unfolded
  axis, and a window's maximum selects its arg-max (ties share the derivative equally,
  as in HIPS/autograd), so its JVP and VJP are ``im2col`` / ``col2im`` with a mask;
* ``UpSampling`` (nearest) is the transpose of sum pooling with kernel = stride = scale.

Windows act on each sample alone, so K folded directions pass through unchanged.  Only
the channels-first layouts (NCW, NCHW, NCDHW) that MXNet's CPU kernels support are
accepted.
"""
import math

import numpy as np

from ..errors import UnsupportedOperatorError
from ..ir import apply_op
from ..registry import def_linear, def_lowering

_LAYOUTS = (None, 'None', 'NCW', 'NCHW', 'NCDHW')


def _tuple(value, n, default):
    if value is None or value == ():
        return (default,) * n
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _layout_problem(eqn):
    """The entries' ``validate``: MXNet's CPU kernels take channels-first layouts only."""
    layout = eqn.attrs.get('layout')
    return None if layout in _LAYOUTS else f'layout {layout} (use channels-first)'


def _window(eqn):
    """kernel, stride, dilate, pad of a sliding-window operator, as full tuples."""
    a = eqn.attrs
    problem = _layout_problem(eqn)
    if problem:  # (reached by the Deconvolution lowering, before any rule)
        raise _unsupported(eqn, problem)
    kernel = tuple(a['kernel']) if a.get('kernel') not in (None, ()) else ()
    n = len(kernel) or len(eqn.in_shapes[0]) - 2
    return kernel, _tuple(a.get('stride'), n, 1), _tuple(a.get('dilate'), n, 1), \
        _tuple(a.get('pad'), n, 0)


def _unsupported(eqn, why):
    return UnsupportedOperatorError(eqn.op, eqn.name, 'lowering', why)


# ----- Convolution(data, weight[, bias]); Deconvolution is lowered to a Convolution -----
def _conv(c, eqn, data, weight, **attrs):
    kernel, stride, dilate, pad = _window(eqn)
    return c.F.Convolution(data, weight, kernel=kernel, stride=stride, dilate=dilate, pad=pad,
                           num_group=eqn.attrs.get('num_group', 1), no_bias=True, **attrs)


def transposed_convolution(F, g, weight, kernel, stride, dilate, pad, groups, filters, channels,
                           size, out_size, dtype=None):
    """The transpose of ``Convolution(x, weight, kernel, stride, dilate, pad, groups)`` for x
    with ``channels`` channels and spatial ``size``, applied to ``g`` (N, filters, *out_size),
    written with Convolutions of the flipped, in/out-swapped kernel.

    Never MXNet's Deconvolution: in float32 its oneDNN backward fails whenever its weight
    gradient goes anywhere but a parameter's own gradient buffer ("could not execute a
    primitive", or the process aborts; README, known issues), which is every derived
    graph.  A strided transpose is split by output phase (`_phases`): each phase of the
    stride is a stride-1 convolution with the kernel taps that reach it, and the phases
    are interleaved, so it costs the forward convolution's multiply-adds, not stride^d
    times them as a convolution of the zero-spread cotangent would.  ``dtype``: g's
    (float32 if not given and g is a Symbol).
    """
    dtype = dtype or getattr(g, 'dtype', None)  # (an NDArray's; a Symbol has none)
    n = len(kernel)
    if n == 1:  # as 2-D over a unit axis (F.pad and the fast kernels are 2-D and 3-D)
        g = F.reshape(g, shape=(0, 0, 1, -1))
        weight = F.reshape(weight, shape=(0, 0, 1, -1))
        out = transposed_convolution(F, g, weight, (1,) + kernel, (1,) + stride, (1,) + dilate,
                                     (0,) + pad, groups, filters, channels, (1,) + size,
                                     (1,) + out_size, dtype)
        return F.reshape(out, shape=(0, 0, -1))
    # weight (filters, channels / groups, *k) -> (channels, filters / groups, *k)
    w = weight
    if groups == 1:
        w = F.transpose(w, axes=(1, 0) + tuple(range(2, 2 + n)))
    elif not groups == channels == filters:  # (depthwise: already of that shape)
        w = F.reshape(w, shape=(groups, filters // groups, channels // groups) + kernel)
        w = F.transpose(w, axes=(0, 2, 1) + tuple(range(3, 3 + n)))
        w = F.reshape(w, shape=(channels, filters // groups) + kernel)
    conv = dict(num_filter=channels, num_group=groups, no_bias=True)
    if all(k == 1 for k in kernel) and not any(pad):  # pointwise: convolve, then spread
        return _spread(F, F.Convolution(g, w, kernel=kernel, **conv), stride, size, out_size,
                       dtype)
    plans = [_phases(*a) for a in zip(kernel, stride, dilate, pad, size, out_size)]
    if any(not taps for plan in plans for taps, _, _, _ in plan):
        # a phase no tap reaches (dilation a multiple of the stride): zero-spread form
        g = _spread(F, g, stride, [(o - 1) * s + 1 for o, s in zip(out_size, stride)],
                    out_size, dtype)
        low = [d * (k - 1) - p for d, k, p in zip(dilate, kernel, pad)]
        high = [lo + h - ((o - 1) * s + 1 + 2 * lo - d * (k - 1))
                for lo, h, o, s, d, k in zip(low, size, out_size, stride, dilate, kernel)]
        return _convolve_cropped(F, g, F.flip(w, axis=tuple(range(2, 2 + n))), kernel, dilate,
                                 low, high, size, conv)

    def phase(axis, picks):
        if axis == n:  # one stride-1 convolution for this combination of phases
            sub = w
            for i, (taps, _, _, _) in enumerate(picks):  # (reversed: a correlation)
                if taps == list(reversed(range(kernel[i]))):
                    if len(taps) > 1:
                        sub = F.flip(sub, axis=2 + i)
                else:
                    sub = F.concat(*[F.slice_axis(sub, axis=2 + i, begin=a, end=a + 1)
                                     for a in taps], dim=2 + i)
            out = F.Convolution(g, sub, kernel=tuple(len(t) for t, _, _, _ in picks),
                                dilate=tuple(d for _, d, _, _ in picks),
                                pad=tuple(p for _, _, p, _ in picks), **conv)
            for i, (_, _, _, (begin, end, length)) in enumerate(picks):
                if (begin, end) != (0, length):
                    out = F.slice_axis(out, axis=2 + i, begin=begin, end=end)
            return out
        parts = [phase(axis + 1, picks + [p]) for p in plans[axis]]
        if len(parts) == 1:
            return parts[0]
        _, _, _, (begin, end, _) = plans[axis][0]
        return _interleave(F, parts, 2 + axis, n + 2, end - begin, dtype)
    gx = phase(0, [])
    for i, (s, p, h) in enumerate(zip(stride, pad, size)):
        if s > 1:
            begin = p - (p // s) * s
            gx = F.slice_axis(gx, axis=2 + i, begin=begin, end=begin + h)
    return gx


def _phases(k, s, d, p, h, o):
    """How one axis of a transposed convolution splits by output phase.

    Row i of the result takes W[a] g[o'] for i + p = o' s + a d.  With t = i + p = q s + r,
    phase r reads the taps a with a d = r (mod s), an arithmetic progression a0 + j s'
    (s' = s / gcd(d, s)) at offsets q - m0 - j d' (d' = d / gcd(d, s)): a stride-1
    correlation with those taps reversed, dilation d', low padding m0 + (L - 1) d'.  Every
    phase covers q in [p // s, (h - 1 + p) // s], so that they interleave.  Returns per
    phase (taps reversed, dilation, symmetric padding, (begin, end, length) of the rows
    kept); for s = 1 one phase, the plain flipped correlation cropped to the h rows.
    """
    if s == 1:
        low = d * (k - 1) - p
        pad = max(low, 0)
        length = o + 2 * pad - d * (k - 1)
        begin = pad - low
        return [(list(reversed(range(k))), d, pad, (begin, begin + h, length))]
    g = math.gcd(d, s)
    q_lo, q_hi = p // s, (h - 1 + p) // s
    plan = []
    for r in range(s):
        taps = [a for a in range(k) if (a * d - r) % s == 0]
        if not taps:
            plan.append(([], 0, 0, None))
            continue
        length_taps, m0, dd = len(taps), (taps[0] * d - r) // s, d // g
        extra = max(0, q_hi - o - 2 * m0 - (length_taps - 1) * dd + 1)
        pad = m0 + (length_taps - 1) * dd + extra
        length = o + 2 * pad - dd * (length_taps - 1)
        plan.append((list(reversed(taps)), dd, pad, (q_lo + extra, q_hi + extra + 1, length)))
    return plan


def _spread(F, g, stride, size, in_size, dtype):
    """Put s - 1 zeros after every row along each strided axis, keeping ``size`` rows
    (``in_size``: g's spatial size)."""
    for i, (s, h, w) in enumerate(zip(stride, size, in_size)):
        if s == 1:
            continue
        axis = 2 + i
        g = _interleave(F, [g] + [None] * (s - 1), axis, len(stride) + 2, w, dtype)
        g = F.slice_axis(g, axis=axis, begin=0, end=h)
    return g


def _interleave(F, parts, axis, rank, length, dtype):
    """Row q * s + r of the result is row q of ``parts[r]`` along ``axis``; each part has
    ``length`` rows there, and the parts after the first may be None (zeros).

    Along the last axis, as a product with a permutation matrix (FullyConnected over that
    axis; only the columns of the parts present), up to s * length = 128: MXNet's stack
    along the last axis copies element by element, and with its backward took 8.2 ms to
    interleave two (64, 16, 32, 16) float32 arrays against 1.5 ms for the product (3.9
    against 0.85 ms at (64, 32, 16, 8), 120 against 55 ms at (16, 64, 112, 56); the
    product's cost grows with s * length, the copy's does not).  Otherwise stack.
    """
    s = len(parts)
    if axis == rank - 1 and s * length <= 128:
        n = s * length
        # row q * s + r of the permutation is the unit vector of column r * length + q
        eye = F.eye(n, dtype=np.dtype(dtype or 'float32').name)
        perm = F.reshape(F.transpose(F.reshape(eye, shape=(s, length, n)), axes=(1, 0, 2)),
                         shape=(n, n))
        present = [p for p in parts if p is not None]
        assert all(p is not None for p in parts[:len(present)]), 'zeros only at the end'
        weight = F.slice_axis(perm, axis=1, begin=0, end=len(present) * length)
        data = present[0] if len(present) == 1 else F.concat(*present, dim=axis)
        return F.FullyConnected(data, weight, num_hidden=n, no_bias=True, flatten=False)
    parts = [F.zeros_like(parts[0]) if p is None else p for p in parts]
    woven = F.stack(*parts, axis=axis + 1)  # (.., q, r, ..) -> row q * s + r
    return F.reshape(woven, shape=(0,) * axis + (-3, -2))


def _convolve_cropped(F, g, w, kernel, dilate, low, high, size, conv):
    """Correlate g with w after padding low[i] / high[i] rows (cropping where negative);
    asymmetric padding by F.pad, which takes 4-D and 5-D arrays."""
    width = [0, 0, 0, 0]
    for lo, hi in zip(low, high):
        width += [max(lo, 0), max(hi, 0)]
    if any(width):
        g = F.pad(g, mode='constant', pad_width=tuple(width), constant_value=0.0)
    gx = F.Convolution(g, w, kernel=kernel, dilate=dilate, **conv)
    for i, (lo, hi) in enumerate(zip(low, high)):
        if lo < 0 or hi < 0:  # padding beyond the kernel's reach: rows without a path
            gx = F.slice_axis(gx, axis=2 + i, begin=max(-lo, 0), end=max(-lo, 0) + size[i])
    return gx


def _conv_jvp(c, eqn, xs, ans, ts):
    return [_conv(c, eqn, ts[0], xs[1], num_filter=eqn.attrs['num_filter'])]


def _conv_vjp(c, eqn, xs, ans, gs):
    kernel, stride, dilate, pad = _window(eqn)
    g = transposed_convolution(c.F, gs[0], xs[1], kernel, stride, dilate, pad,
                               int(eqn.attrs.get('num_group', 1)), int(eqn.attrs['num_filter']),
                               eqn.in_shapes[0][1], tuple(eqn.in_shapes[0][2:]),
                               tuple(eqn.out_shapes[0][2:]), eqn.dtype)
    return [g] + [None] * (len(xs) - 1)


def_linear('Convolution', _conv_vjp, jvp=_conv_jvp, validate=_layout_problem, diff_args=(0,),
           not_differentiable='its weight and bias are parameters: a network whose '
                              'filters depend on its input is not covered')


def _lower_deconvolution(F, eqn, xs, options):
    """Deconvolution(x, W) is the transpose of the Convolution with weight W that maps
    its output back to its input (W is (in channels, filters / groups, *kernel) in both)."""
    a = eqn.attrs
    if a.get('target_shape') not in (None, (), ''):
        raise _unsupported(eqn, 'target_shape is not covered (give pad and adj instead)')
    kernel, stride, dilate, pad = _window(eqn)
    if any(s > 1 and d > 1 for s, d in zip(stride, dilate)):
        # measured: MXNet 1.9.1's kernel is then neither the transpose of the
        # Convolution nor of its own backward, so the network computes something else
        raise _unsupported(eqn, "stride and dilation above 1 on one axis: MXNet 1.9.1's "
                           'Deconvolution kernel does not compute a transposed convolution '
                           'there, so the function to differentiate is unknown')
    y = transposed_convolution(F, xs[0], xs[1], kernel, stride, dilate, pad,
                               int(a.get('num_group', 1)), eqn.in_shapes[0][1],
                               int(a['num_filter']), tuple(eqn.out_shapes[0][2:]),
                               tuple(eqn.in_shapes[0][2:]), eqn.dtype)
    if not a.get('no_bias', True) and len(xs) > 2:
        y = F.broadcast_add(y, F.reshape(xs[2], shape=(1, -1) + (1,) * len(kernel)))
    return [y]


def_lowering('Deconvolution', _lower_deconvolution,
             doc='as the transposed Convolution (MXNet\'s oneDNN Deconvolution fails in '
                 'derived graphs)')


# ----- im2col <-> col2im -----
def _im2col_vjp(c, eqn, xs, ans, gs):
    kernel, stride, dilate, pad = _window(eqn)
    return [c.F.col2im(
        gs[0], output_size=eqn.in_shapes[0][2:], kernel=kernel, stride=stride, dilate=dilate,
        pad=pad)]


def _col2im_vjp(c, eqn, xs, ans, gs):
    kernel, stride, dilate, pad = _window(eqn)
    return [c.F.im2col(gs[0], kernel=kernel, stride=stride, dilate=dilate, pad=pad)]


def_linear('im2col', _im2col_vjp, validate=_layout_problem)
def_linear('col2im', _col2im_vjp, validate=_layout_problem)


# ----- Pooling -----
def _pool_geometry_unchecked(eqn):
    """(kernel, stride, pad) with MXNet's defaults applied."""
    a = eqn.attrs
    problem = _layout_problem(eqn)
    if problem:
        raise _unsupported(eqn, problem)
    spatial = tuple(eqn.in_shapes[0][2:])
    if a.get('global_pool', False):
        return spatial, (1,) * len(spatial), (0,) * len(spatial)
    kernel = tuple(a['kernel'])
    return kernel, _tuple(a.get('stride'), len(kernel), 1), _tuple(a.get('pad'), len(kernel), 0)


def _pool_geometry(eqn):
    """(kernel, stride, pad, channels, window size) with MXNet's defaults applied."""
    a = eqn.attrs
    in_shape, out_shape = eqn.in_shapes[0], eqn.out_shapes[0]
    spatial = tuple(in_shape[2:])
    if len(spatial) not in (1, 2):
        raise _unsupported(eqn, f'{len(spatial)}-D pooling is not covered (1-D and 2-D are)')
    if a.get('pool_type', 'max') not in ('max', 'avg', 'sum'):
        raise _unsupported(eqn, f"pool_type {a['pool_type']} is not covered")
    kernel, stride, pad = _pool_geometry_unchecked(eqn)
    valid = tuple((h + 2 * p - k) // s + 1 for h, p, k, s in zip(spatial, pad, kernel, stride))
    if tuple(out_shape[2:]) != valid:  # 'full' windows are made whole by _lower_pooling
        raise _unsupported(eqn, f"pooling_convention {a.get('pooling_convention')!r} with "
                           'partial windows was not lowered')
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


def _unfold(F, eqn, x):
    """x (N, C, *s) -> windows (N, C, window size, positions)."""
    channels, size = _pool_geometry(eqn)[3:]
    kernel, stride, pad = _geometry_2d(eqn)
    if len(eqn.in_shapes[0]) == 3:
        x = F.reshape(x, shape=(0, 0, 1, -1))
    cols = F.im2col(x, kernel=kernel, stride=stride, pad=pad)
    return F.reshape(cols, shape=(0, channels, size, -1))


def _fold(F, eqn, windows):
    """Transpose of `_unfold`: windows (N, C, size, positions) -> (N, C, *s)."""
    spatial = tuple(eqn.in_shapes[0][2:])
    kernel, stride, pad = _geometry_2d(eqn)
    out = F.col2im(F.reshape(windows, shape=(0, -3, -2)),
                   output_size=spatial if len(spatial) == 2 else (1,) + spatial,
                   kernel=kernel, stride=stride, pad=pad)
    return out if len(spatial) == 2 else F.reshape(out, shape=(0, 0, -1))


def _window_weights(F, eqn, x, windows=None):
    """Each window element's weight in its window's output, (B, C, size, positions):
    the arg-max indicator (shared among ties) for max, 1/count for avg, 1 for sum.
    ``windows``: the unfolded x, where the caller has it already."""
    kind = eqn.attrs.get('pool_type', 'max')
    kernel, stride, pad, channels, size = _pool_geometry(eqn)
    padded = any(pad)
    if kind == 'sum':
        return None
    if kind == 'avg':
        if not padded or eqn.attrs.get('count_include_pad', True) in (True, None):
            return 1.0 / size
        inside = _unfold(F, eqn, F.ones_like(x))
        return F.broadcast_like(F.reciprocal(F.sum(inside, axis=2, keepdims=True)), inside)
    # from a detached copy: the mask has no derivative, and MXNet 1.9.1's backward
    # segfaulted when a `where` (an ELU's value) fed only this piecewise-constant path
    windows = F.BlockGrad(_unfold(F, eqn, x) if windows is None else windows)
    if padded:  # padding is -inf for max pooling, not the zeros im2col inserts
        windows = F.elemwise_add(windows, (_unfold(F, eqn, F.ones_like(x)) - 1.0) * 1e30)
    hits = F.broadcast_equal(windows, F.max(windows, axis=2, keepdims=True))
    return F.broadcast_div(hits, F.sum(hits, axis=2, keepdims=True))


def _weights(c, eqn, x):
    return c.memo((eqn.nid, 'pool-weights'), lambda: _window_weights(c.F, eqn, x))


def _pool_problem(eqn):
    """The entry's ``validate``: what `_pool_geometry` refuses, or None."""
    try:
        _pool_geometry(eqn)
    except UnsupportedOperatorError as err:
        return err.detail
    return None


def _max_pool_primal(F, eqn, xs, memo):
    """Max pooling in a derived graph, as the weighted sum of its windows that its rules
    differentiate.  MXNet 1.9.1's oneDNN max-pooling backward reads a workspace that its
    forward fills only in training mode: after a forward under
    ``autograd.record(train_mode=False)`` (a gradient penalty, an attack on a model in
    inference mode) the gradient through it is silently wrong (measured: 125% relative
    error; float64, which has no oneDNN kernel, is right).  Here no Pooling backward is
    run at all, and the windows and weights are shared with the rules (``memo``).  The
    cost: about 5 % of a gradient-penalty step on ResNet-18 and VGG-11 (README)."""
    if eqn.attrs.get('pool_type', 'max') != 'max' or _pool_problem(eqn):
        # (an uncovered pooling off the differentiated path keeps MXNet's kernel)
        return apply_op(F, eqn.op, xs, eqn.raw_attrs)
    x = xs[0]
    windows = _unfold(F, eqn, x)
    key = (eqn.nid, 'pool-weights')
    if key not in memo:
        memo[key] = _window_weights(F, eqn, x, windows)
    y = F.sum(F.elemwise_mul(windows, memo[key]), axis=2)
    return [F.reshape(y, shape=(0, 0) + tuple(eqn.out_shapes[0][2:]))]


def _weigh(c, windows, w):
    if w is None:
        return windows
    if isinstance(w, float):
        return windows * w
    return c.scale(windows, w)


def _pool_jvp(c, eqn, xs, ans, ts):
    if eqn.attrs.get('pool_type', 'max') != 'max':  # linear: pool the tangent
        return c.apply(eqn, [ts[0]])
    picked = _weigh(c, _unfold(c.F, eqn, ts[0]), _weights(c, eqn, xs[0]))
    return [c.F.reshape(c.F.sum(picked, axis=2), shape=(0, 0) + tuple(eqn.out_shapes[0][2:]))]


def _pool_vjp(c, eqn, xs, ans, gs):
    F = c.F
    size = _pool_geometry(eqn)[4]
    spread = F.broadcast_axis(F.expand_dims(F.reshape(gs[0], shape=(0, 0, -1)), axis=2),
                              axis=2, size=size)
    return [_fold(F, eqn, _weigh(c, spread, _weights(c, eqn, xs[0])))]


# (lp pooling is not linear: _pool_problem refuses it)
def_linear('Pooling', _pool_vjp, jvp=_pool_jvp, validate=_pool_problem,
           primal=_max_pool_primal)

# the lowest float32: MXNet pads max pooling with the lowest value of the type
_LOWEST = -3.4028234663852886e38


def _lower_pooling(F, eqn, xs, options):
    """``pooling_convention='full'`` (``ceil_mode=True``) adds windows that hang over the
    high edge.  They are made whole by padding explicitly (the lowest float for max, whose
    kernels take the maximum over what is inside; zeros for sum and avg) and pooled
    'valid'; avg then divides by MXNet's count: the part of the window inside the input
    and, with ``count_include_pad``, inside its symmetric padding (src/operator/nn/pool.h).
    Any other Pooling is left as it is."""
    a = eqn.attrs
    convention = a.get('pooling_convention', 'valid')
    if convention in (None, 'valid') or a.get('global_pool', False):
        return None
    if convention != 'full':
        raise _unsupported(eqn, f'pooling_convention {convention!r} is not covered '
                           "('valid' and 'full' are)")
    kernel, stride, pad = _pool_geometry_unchecked(eqn)
    spatial, out = tuple(eqn.in_shapes[0][2:]), tuple(eqn.out_shapes[0][2:])
    extra = tuple((o - 1) * s + k - (h + 2 * p) for o, s, k, h, p in
                  zip(out, stride, kernel, spatial, pad))
    if not any(e > 0 for e in extra):
        return None
    if len(spatial) not in (1, 2):
        raise _unsupported(eqn, f'{len(spatial)}-D pooling is not covered (1-D and 2-D are)')
    kind = a.get('pool_type', 'max')
    if kind not in ('max', 'avg', 'sum'):
        raise _unsupported(eqn, f'pool_type {kind} is not covered')
    flat = len(spatial) == 1
    if flat:  # MXNet pads only 4-D and 5-D arrays
        kernel, stride = (1,) + kernel, (1,) + stride
        pad, extra = (0,) + pad, (0,) + extra
    def widths(low, high):
        return (0, 0, 0, 0) + sum(((l, h) for l, h in zip(low, high)), ())

    whole = widths(pad, [p + max(e, 0) for p, e in zip(pad, extra)])

    def padded(x, value, width=whole):
        x = F.reshape(x, shape=(0, 0, 1, -1)) if flat else x
        return F.pad(x, mode='constant', pad_width=width, constant_value=value)

    def pooled(x, pool_type):
        y = F.Pooling(x, kernel=kernel, stride=stride, pool_type=pool_type)
        return F.reshape(y, shape=(0, 0, -1)) if flat else y

    x = xs[0]
    if kind == 'max':
        return [pooled(padded(x, _LOWEST), 'max')]
    total = pooled(padded(x, 0.0), 'sum')
    if kind == 'sum':
        return [total]
    inside = padded(F.ones_like(x), 0.0)
    if a.get('count_include_pad', True) in (True, None) and any(pad):
        inside = padded(F.ones_like(x), 1.0, widths(pad, pad))
        inside = F.pad(inside, mode='constant', constant_value=0.0,
                       pad_width=widths([0] * len(pad), [max(e, 0) for e in extra]))
    return [F.broadcast_div(total, pooled(inside, 'sum'))]


def_lowering('Pooling', _lower_pooling,
             doc="pooling_convention='full' as explicit padding and 'valid' windows")


# ----- resampling: adaptive average pooling and bilinear resizing -----
def _resample(F, x, matrices):
    """Apply a (out, in) matrix along each spatial axis of x (N, C, H, W): separable
    resampling as two ``dot``s with swaps, so its rules are those of dot and SwapAxis."""
    rows, cols = matrices
    if cols is not None:
        x = F.dot(x, cols, transpose_b=True)
    if rows is not None:
        x = F.swapaxes(F.dot(F.swapaxes(x, dim1=2, dim2=3), rows, transpose_b=True),
                       dim1=2, dim2=3)
    return x


def _index_grid(F, n_out, n_in):
    """(n_out, 1) output positions and (1, n_in) input positions, float32 like MXNet's
    index arithmetic; built from ``arange``, so the matrices below need no constants."""
    return (F.reshape(F.arange(start=0, stop=n_out, dtype='float32'), shape=(-1, 1)),
            F.reshape(F.arange(start=0, stop=n_in, dtype='float32'), shape=(1, -1)))


def _adaptive_matrix(F, n_out, n_in, dtype):
    """Row i averages inputs [floor(i n_in / n_out), ceil((i + 1) n_in / n_out)), the
    windows of src/operator/contrib/adaptive_avg_pooling.cc."""
    i, h = _index_grid(F, n_out, n_in)
    start = F.floor(i * float(n_in) / float(n_out))
    end = F.ceil((i + 1.0) * float(n_in) / float(n_out))
    inside = F.broadcast_greater_equal(h, start) * F.broadcast_lesser(h, end)
    # the indices are exact in float32; the weights 1 / count are not, so they are
    # divided in the data's dtype (MXNet's kernel divides in it too)
    return F.broadcast_div(F.cast(inside, dtype=dtype), F.cast(end - start, dtype=dtype))


def _bilinear_matrix(F, n_out, n_in, align_corners, dtype):
    """Row i interpolates between inputs h0 and h0 + 1 (h0 at the edge) with weights
    1 - l and l, from MXNet's source index (src/operator/contrib/bilinear_resize-inl.h)."""
    if n_out > 1:
        scale = (n_in - 1) / (n_out - 1) if align_corners else n_in / n_out
    else:
        scale = 0.0
    i, h = _index_grid(F, n_out, n_in)
    if align_corners:
        src = i * float(scale)
    else:
        src = F.relu((i + 0.5) * float(scale) - 0.5)
    h0 = F.floor(src)
    h1 = h0 + (h0 < float(n_in - 1))
    lam = src - h0
    m = F.broadcast_mul(F.broadcast_equal(h, h0), 1.0 - lam) + \
        F.broadcast_mul(F.broadcast_equal(h, h1), lam)
    return F.cast(m, dtype=dtype)


def _lower_adaptive_pooling(F, eqn, xs, options):
    """AdaptiveAvgPooling2D: an avg Pooling when the windows tile the input (squeeze-and-
    excitation's output size 1, say), else separable averaging matrices."""
    (hi, wi), (ho, wo) = eqn.in_shapes[0][2:], eqn.out_shapes[0][2:]
    if hi % ho == 0 and wi % wo == 0:
        k = (hi // ho, wi // wo)
        return [F.Pooling(xs[0], kernel=k, stride=k, pool_type='avg')]
    return [_resample(F, xs[0], [_adaptive_matrix(F, ho, hi, eqn.dtype),
                                 _adaptive_matrix(F, wo, wi, eqn.dtype)])]


def _lower_bilinear_resize(F, eqn, xs, options):
    """BilinearResize2D (every mode: the output size is known when traced) as separable
    interpolation matrices; in mode 'like' the second input lends only its shape."""
    (hi, wi), (ho, wo) = eqn.in_shapes[0][2:], eqn.out_shapes[0][2:]
    corners = eqn.attrs.get('align_corners', True) in (True, None)
    return [_resample(F, xs[0], [  # (an unchanged size is the identity in both conventions)
        None if ho == hi else _bilinear_matrix(F, ho, hi, corners, eqn.dtype),
        None if wo == wi else _bilinear_matrix(F, wo, wi, corners, eqn.dtype)])]


def_lowering('_contrib_AdaptiveAvgPooling2D', _lower_adaptive_pooling,
             doc='avg Pooling, or averaging matrices applied with dot')
def_lowering('_contrib_BilinearResize2D', _lower_bilinear_resize,
             doc='interpolation matrices applied with dot')


# ----- UpSampling (nearest): each pixel copied to a scale x scale block -----
def _upsampling_problem(eqn):
    a = eqn.attrs
    if a.get('sample_type') != 'nearest' or a.get('num_args', 1) != 1:
        return 'only nearest upsampling of one input is covered'
    return None


def _upsampling_vjp(c, eqn, xs, ans, gs):
    k = (int(eqn.attrs['scale']),) * (len(eqn.in_shapes[0]) - 2)
    return [c.F.Pooling(gs[0], kernel=k, stride=k, pool_type='sum')]


def_linear('UpSampling', _upsampling_vjp, validate=_upsampling_problem)
