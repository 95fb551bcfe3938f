# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Helpers shared by the rule families: broadcasting, reshaping back, folding primal factors."""
from ..registry import add  # noqa: F401  (re-exported for the families)

__all__ = ['unbroadcast', 'broadcast_tangent', 'reshape_to', 'neg', 'add']


def neg(F, x):
    return None if x is None else x * -1.0


def unbroadcast(c, eqn, g, in_shape, out_shape):
    """Sum cotangent ``g`` (of ``out_shape``) down to ``in_shape`` (numpy broadcasting)."""
    if tuple(in_shape) == tuple(out_shape):
        return g
    lead = len(out_shape) - len(in_shape)
    keep = tuple(i + lead for i, d in enumerate(in_shape)
                 if d == 1 and out_shape[i + lead] != 1)
    if lead or any(out_shape[a] is None for a in keep):
        c.coupling(eqn, 'a per-sample operand is broadcast along the batch axis')
    if keep:
        g = c.F.sum(g, axis=keep, keepdims=True)
    if lead:
        g = c.F.sum(g, axis=tuple(range(lead)))
    return g


def broadcast_tangent(c, eqn, t, in_shape, out_shape, ans):
    """Broadcast tangent ``t`` of an operand of ``in_shape`` to the output ``ans``."""
    if t is None or tuple(in_shape) == tuple(out_shape):
        return t
    F = c.F
    if c.K == 1:
        for _ in range(len(out_shape) - len(in_shape)):
            t = F.expand_dims(t, axis=0)
        return F.broadcast_like(t, ans)
    if len(in_shape) != len(out_shape):
        c.coupling(eqn, 'an operand without batch axis depends on the input')
    axes = tuple(i for i, d in enumerate(in_shape) if d == 1 and out_shape[i] != 1)
    if any(out_shape[a] is None for a in axes):
        c.coupling(eqn, 'a batch-independent operand depends on the input')
    return F.broadcast_axis(t, axis=axes, size=tuple(out_shape[a] for a in axes))


def reshape_to(c, g, x, x_shape):
    """Reshape folded ``g`` to the folded shape of primal ``x``."""
    if c.K == 1:
        return c.F.reshape_like(g, x)
    return c.F.reshape(g, shape=(-1,) + tuple(x_shape[1:]))
