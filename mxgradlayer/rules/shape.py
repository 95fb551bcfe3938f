# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Shape operators: linear; the JVP re-applies the operator, the VJP undoes it.

With K folded directions the batch axis must stay axis 0 and must not be sliced,
concatenated or split, or the directions of different samples would mix; such operators
say so in their entry (``couples``), and the interpreter refuses them in per-sample
sweeps (it also checks shapes generically).
"""
from ..errors import UnsupportedOperatorError
from ..registry import def_linear, def_lowering, def_zero
from ._helpers import broadcast_tangent, reshape_to, unbroadcast


def _reshape_back(c, eqn, xs, ans, gs):
    return [reshape_to(c, gs[0], xs[0], eqn.in_shapes[0])]


def_linear('Reshape', _reshape_back, aliases=('reshape',))
def_linear('Flatten', _reshape_back, aliases=('flatten',))
for _op in ('expand_dims', 'squeeze'):
    def_linear(_op, _reshape_back)


def _along_batch(axis_of, what):
    """``couples``: the operator acts along axis ``axis_of(eqn)``; the batch axis mixes."""
    def couples(eqn):
        return f'it {what} the batch axis' if axis_of(eqn) == 0 else None
    return couples


def _transpose_vjp(c, eqn, xs, ans, gs):
    rank = len(eqn.in_shapes[0])
    axes = eqn.attrs.get('axes') or tuple(reversed(range(rank)))
    inverse = [0] * rank
    for i, a in enumerate(axes):
        inverse[a % rank] = i
    return [c.F.transpose(gs[0], axes=tuple(inverse))]


def_linear('transpose', _transpose_vjp)


def _swapped(eqn):
    rank = len(eqn.in_shapes[0])
    return eqn.attrs.get('dim1', 0) % rank, eqn.attrs.get('dim2', 0) % rank


def _swapaxis_couples(eqn):
    if 0 in _swapped(eqn) and len(set(_swapped(eqn))) == 2:
        return 'it moves the batch axis'
    return None


def _swapaxis_vjp(c, eqn, xs, ans, gs):  # a swap is its own inverse
    return c.apply(eqn, gs)


def_linear('SwapAxis', _swapaxis_vjp, couples=_swapaxis_couples)  # (F.swapaxes makes it)


def _zeros_piece(c, x, axis, begin, end):
    """Zeros shaped like x sliced to [begin, end) along ``axis``, in folded layout."""
    return c.zeros_tangent(c.F.slice_axis(x, axis=axis, begin=begin, end=end))


def _pad_back(c, eqn, g, x, axis, begin, end, size):
    """Place ``g`` at [begin, end) of a zero tensor shaped like ``x`` along ``axis``."""
    parts = []
    if begin:
        parts.append(_zeros_piece(c, x, axis, 0, begin))
    parts.append(g)
    if end is not None and (size is None or end < size):
        parts.append(_zeros_piece(c, x, axis, end, None))
    if len(parts) == 1:
        return g
    return c.F.concat(*parts, dim=axis)


def _norm_range(begin, end, size):
    begin = 0 if begin is None else begin
    if begin < 0:
        if size is None:
            return None
        begin += size
    if end is not None and end < 0:
        if size is None:
            return None
        end += size
    return begin, end


def _slice_axis_vjp(c, eqn, xs, ans, gs):
    shape = eqn.in_shapes[0]
    axis = eqn.attrs['axis'] % len(shape)
    rng = _norm_range(eqn.attrs.get('begin'), eqn.attrs.get('end'), shape[axis])
    if rng is None:
        raise UnsupportedOperatorError(eqn.op, eqn.name, 'VJP',
                                       'negative bounds on an axis of unknown size')
    return [_pad_back(c, eqn, gs[0], xs[0], axis, rng[0], rng[1], shape[axis])]


def _slice_axis_of(eqn):
    return eqn.attrs['axis'] % len(eqn.in_shapes[0])


def_linear('slice_axis', _slice_axis_vjp, couples=_along_batch(_slice_axis_of, 'slices'))


def _lower_slice(F, eqn, xs, options):
    """``slice`` as one ``slice_axis`` per sliced axis.  MXNet runs ``slice`` through
    oneDNN in float32, and its oneDNN slice of an array in a blocked layout (the output of
    a oneDNN convolution, say) with a range that does not fit the block kills the process
    with a division by zero; ``slice_axis`` has no oneDNN path."""
    # (NumPy-mode indexing writes one axis's bounds as scalars: x[:2] has end=2)
    begin, end, step = (_as_tuple(eqn.attrs.get(k)) for k in ('begin', 'end', 'step'))
    x = xs[0]
    for axis in range(len(begin)):
        if axis < len(step) and step[axis] not in (None, 1):
            raise UnsupportedOperatorError(eqn.op, eqn.name, 'lowering',
                                           'slices with step != 1')
        b = begin[axis]
        e = end[axis] if axis < len(end) else None
        if b in (None, 0) and e is None:
            continue
        x = F.slice_axis(x, axis=axis, begin=0 if b is None else b, end=e)
    return [x]


def _as_tuple(value):
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def_lowering('slice', _lower_slice, aliases=('crop',), doc='one slice_axis per axis')


def _concat_axis(eqn):
    return eqn.attrs.get('dim', eqn.attrs.get('axis', 1)) % len(eqn.out_shapes[0])


def _concat_vjp(c, eqn, xs, ans, gs):
    axis = _concat_axis(eqn)
    sizes = [s[axis] for s in eqn.in_shapes]
    if len(xs) > 1 and len(set(eqn.in_shapes)) == 1:  # equal parts: sizes need not be known
        parts = c.F.split(gs[0], num_outputs=len(xs), axis=axis)
        return [parts[i] for i in range(len(xs))]
    if None in sizes:
        raise UnsupportedOperatorError(eqn.op, eqn.name, 'VJP',
                                       'concatenation along the batch axis')
    out, start = [], 0
    for size in sizes:
        out.append(c.F.slice_axis(gs[0], axis=axis, begin=start, end=start + size))
        start += size
    return out


# (the JVP re-applies the operator, zeros for the inputs without tangent)
def_linear('Concat', _concat_vjp, aliases=('concat',),
           couples=_along_batch(_concat_axis, 'concatenates along'))


def _stack_axis(eqn):
    return eqn.attrs.get('axis', 0) % len(eqn.out_shapes[0])


def _stack_vjp(c, eqn, xs, ans, gs):
    axis = _stack_axis(eqn)
    if len(xs) == 1:
        return [c.F.squeeze(gs[0], axis=axis)]
    parts = c.F.split(gs[0], num_outputs=len(xs), axis=axis, squeeze_axis=True)
    return [parts[i] for i in range(len(xs))]


def_linear('stack', _stack_vjp, couples=_along_batch(_stack_axis, 'stacks along'))


def _split_axis(eqn):
    return eqn.attrs.get('axis', 1) % len(eqn.in_shapes[0])


def _split_vjp(c, eqn, xs, ans, gs):
    axis = _split_axis(eqn)
    squeeze = eqn.attrs.get('squeeze_axis', False)
    parts = []
    for a, g in zip(ans, gs):
        g = c.zeros_tangent(a) if g is None else g
        parts.append(c.F.expand_dims(g, axis=axis) if squeeze else g)
    return [parts[0] if len(parts) == 1 else c.F.concat(*parts, dim=axis)]


def_linear('SliceChannel', _split_vjp, aliases=('split',),
           couples=_along_batch(_split_axis, 'splits'))


# ----- broadcasting and *_like operators (linear in the data operand) -----
def _broadcast_jvp(c, eqn, xs, ans, ts):
    return [broadcast_tangent(c, eqn, ts[0], eqn.in_shapes[0], eqn.out_shapes[0], ans[0])]


def _broadcast_vjp(c, eqn, xs, ans, gs):
    return [unbroadcast(c, eqn, gs[0], eqn.in_shapes[0], eqn.out_shapes[0])] + \
        [None] * (len(xs) - 1)


for _op in ('broadcast_like', 'broadcast_to'):
    def_linear(_op, _broadcast_vjp, jvp=_broadcast_jvp)
def_linear('broadcast_axis', _broadcast_vjp, jvp=_broadcast_jvp, aliases=('broadcast_axes',))


def _like_jvp(c, eqn, xs, ans, ts):  # the second operand only lends its shape
    if ts[0] is None:  # (only the shape operand depends on the input)
        return [None]
    return c.apply(eqn, [ts[0], c.repeat(xs[1])])


def _reshape_like_vjp(c, eqn, xs, ans, gs):
    return [reshape_to(c, gs[0], xs[0], eqn.in_shapes[0]), None]


def_linear('reshape_like', _reshape_like_vjp, jvp=_like_jvp)

# operators without array inputs, or whose output does not depend on input values
def_zero('eye', '_eye', 'zeros', '_zeros', 'ones', '_ones', '_full', 'arange', '_arange',
         'shape_array', 'size_array', 'one_hot',
         # random directions (DifferentialOperator's stochastic estimates): constants
         '_random_uniform_like', '_random_normal_like')


# ----- Pad (constant mode): the VJP crops the padding off again -----
def _pad_mode(eqn):
    if eqn.attrs.get('mode', 'constant') != 'constant':
        # edge and reflect padding are rewritten by _lower_pad before any rule runs;
        # a node that escaped the rewrite must not be cropped as if it were constant
        return f"mode {eqn.attrs['mode']!r} was not lowered"
    return None


def _pad_jvp(c, eqn, xs, ans, ts):
    return c.apply(eqn, [ts[0]], constant_value=0.0)


def _pad_vjp(c, eqn, xs, ans, gs):
    width = tuple(eqn.attrs['pad_width'])
    g = gs[0]
    for axis, size in enumerate(eqn.in_shapes[0]):
        if width[2 * axis] or width[2 * axis + 1]:  # (never the batch axis: MXNet pads space)
            g = c.F.slice_axis(g, axis=axis, begin=width[2 * axis],
                               end=width[2 * axis] + size)
    return [g]


def_linear('Pad', _pad_vjp, jvp=_pad_jvp, validate=_pad_mode, aliases=('pad',))


def _lower_pad(F, eqn, xs, options):
    """Edge and reflect padding as slices, flips, repeats and a concatenation per axis
    (so their rules apply); constant padding stays the Pad operator."""
    mode = eqn.attrs.get('mode', 'constant')
    if mode == 'constant':
        return None
    x = xs[0]
    width = tuple(eqn.attrs['pad_width'])
    for axis, size in enumerate(eqn.in_shapes[0]):
        low, high = width[2 * axis], width[2 * axis + 1]
        if not (low or high):
            continue
        parts = []
        if mode == 'edge':
            if low:
                parts.append(F.repeat(F.slice_axis(x, axis=axis, begin=0, end=1),
                                      repeats=low, axis=axis))
            parts.append(x)
            if high:
                parts.append(F.repeat(F.slice_axis(x, axis=axis, begin=size - 1, end=size),
                                      repeats=high, axis=axis))
        else:  # reflect: mirrored about the first and last rows, which are not repeated
            if low:
                parts.append(F.flip(F.slice_axis(x, axis=axis, begin=1, end=low + 1),
                                    axis=axis))
            parts.append(x)
            if high:
                parts.append(F.flip(F.slice_axis(x, axis=axis, begin=size - 1 - high,
                                                 end=size - 1), axis=axis))
        x = F.concat(*parts, dim=axis)
    return [x]


def_lowering('Pad', _lower_pad, doc='edge and reflect modes as slices and flips')


# ----- tile and repeat: the VJP sums the copies -----
def _tile_vjp(c, eqn, xs, ans, gs):
    shape = eqn.in_shapes[0]
    reps = tuple(eqn.attrs['reps'])
    if len(reps) > len(shape):
        c.coupling(eqn, 'it adds leading axes')
    reps = (1,) * (len(shape) - len(reps)) + reps
    split = []
    for r in reps:  # axis i of g -> (r, d_i)
        split += [-4, r, -1]
    g = c.F.reshape(gs[0], shape=tuple(split))
    g = c.F.sum(g, axis=tuple(range(0, 2 * len(reps), 2)))
    return [reshape_to(c, g, xs[0], shape)]


def_linear('tile', _tile_vjp)


def _repeat_vjp(c, eqn, xs, ans, gs):
    F, shape = c.F, eqn.in_shapes[0]
    repeats, axis = int(eqn.attrs['repeats']), eqn.attrs.get('axis')
    if axis is None:  # repeats the flattened array
        c.coupling(eqn, 'it flattens the batch axis away')
        g = F.sum(F.reshape(gs[0], shape=(-1, repeats)), axis=1)
        return [F.reshape_like(g, xs[0])]
    axis %= len(shape)
    g = F.reshape(gs[0], shape=(0,) * axis + (-4, -1, repeats, -2))
    return [F.sum(g, axis=axis + 1)]


def_linear('repeat', _repeat_vjp)


# ----- reverse (flip): its own transpose -----
def _reverse_vjp(c, eqn, xs, ans, gs):
    return c.apply(eqn, [gs[0]])


def_linear('reverse', _reverse_vjp)
