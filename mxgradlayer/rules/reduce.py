# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Reductions: sum and mean over axes (linear; the VJP broadcasts back)."""
from ..registry import def_linear


def reduced_axes(attrs, rank):
    """Normalised tuple of the axes a reduction removes (MXNet's axis/exclude semantics)."""
    axis = attrs.get('axis', None)
    if axis is None or axis == ():
        axes = tuple(range(rank))
    else:
        axes = tuple(a % rank for a in (axis if isinstance(axis, tuple) else (axis,)))
    if attrs.get('exclude', False):
        axes = tuple(a for a in range(rank) if a not in axes)
    return tuple(sorted(set(axes)))


def _spread(c, eqn, g, x):
    """Broadcast cotangent ``g`` of a reduction back over the reduced axes of ``x``."""
    F = c.F
    shape = eqn.in_shapes[0]
    axes = reduced_axes(eqn.attrs, len(shape))
    if not eqn.attrs.get('keepdims', False):
        if len(axes) == len(shape):
            g = F.reshape(g, shape=(1,) * len(shape)) if c.K == 1 else g
        else:
            for a in axes:
                g = F.expand_dims(g, axis=a)
    if c.K == 1:
        return F.broadcast_like(g, x)
    if any(shape[a] is None for a in axes):
        c.coupling(eqn, 'it reduces over the batch axis')
    return F.broadcast_axis(g, axis=axes, size=tuple(shape[a] for a in axes))


def _sum_vjp(c, eqn, xs, ans, gs):
    return [None if gs[0] is None else _spread(c, eqn, gs[0], xs[0])]


def _mean_vjp(c, eqn, xs, ans, gs):
    if gs[0] is None:
        return [None]
    F = c.F
    g = _spread(c, eqn, gs[0], xs[0])
    shape = eqn.in_shapes[0]
    axes = reduced_axes(eqn.attrs, len(shape))
    if all(shape[a] is not None for a in axes):
        count = 1
        for a in axes:
            count *= shape[a]
        return [g * (1.0 / count)]
    # the count follows the batch size: divide by it at run time (only when K == 1)
    count = F.sum(F.ones_like(xs[0]), axis=axes, keepdims=True)
    return [F.broadcast_div(g, count)]


def_linear('sum', _sum_vjp)
def_linear('sum_axis', _sum_vjp)
def_linear('mean', _mean_vjp)
