# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Indexing: Embedding, take, pick.  Linear in the array they read from; the integer
indices are not differentiable (a network whose indices depend on the differentiated
input is refused), and the VJP scatters through ``one_hot``, which has no derivative."""
import numpy as np

from ..errors import UnsupportedOperatorError
from ..registry import def_linear

# the entries' ``not_differentiable``: why a network whose indices depend on the
# differentiated input is refused
_INDICES = ('it holds integer indices, which cannot be differentiated: do not pass that '
            'input as wrt, and do not compute indices from a differentiated input')


# ----- Embedding(data=indices, weight): rows of the weight, looked up by index -----
def _embedding_jvp(c, eqn, xs, ans, ts):
    c.coupling(eqn, 'its weight depends on the input')
    return c.apply(eqn, [xs[0], ts[1]])


def _embedding_vjp(c, eqn, xs, ans, gs):
    c.coupling(eqn, 'its weight depends on the input')
    F, dim = c.F, int(eqn.attrs['input_dim'])
    one_hot = F.one_hot(F.reshape(xs[0], shape=(-1,)), depth=dim, dtype=eqn.dtype)  # (N, dim)
    rows = F.reshape(gs[0], shape=(-1, int(eqn.attrs['output_dim'])))
    return [None, F.dot(one_hot, rows, transpose_a=True)]


def_linear('Embedding', _embedding_vjp, jvp=_embedding_jvp, diff_args=(1,),
           not_differentiable=_INDICES)


# ----- take(a, indices, axis, mode) -----
def _take_axis(eqn):
    return eqn.attrs.get('axis', 0) % len(eqn.in_shapes[0])


def _clipped(c, eqn, indices, n):
    """The indices MXNet reads with mode 'clip' (default) or 'wrap'."""
    if eqn.attrs.get('mode', 'clip') == 'wrap':
        return indices - c.F.floor(indices / n) * n
    return c.F.clip(indices, 0, n - 1)


def _take_jvp(c, eqn, xs, ans, ts):
    return c.apply(eqn, [ts[0], xs[1]])


def _take_couples(eqn):
    return 'it indexes the batch axis' if _take_axis(eqn) == 0 else None


def _take_vjp(c, eqn, xs, ans, gs):
    F = c.F
    shape, axis = eqn.in_shapes[0], _take_axis(eqn)
    if None in eqn.in_shapes[1]:
        raise UnsupportedOperatorError(eqn.op, eqn.name, 'VJP',
                                       'indices whose shape follows the batch size')
    n = shape[axis]
    m = int(np.prod(eqn.in_shapes[1]))
    s = int(np.prod(shape[axis + 1:]))
    one_hot = F.one_hot(F.reshape(_clipped(c, eqn, xs[1], n), shape=(-1,)), depth=n,
                        dtype=eqn.dtype)                                  # (M, n)
    # g (*before, *index shape, *after) -> (P, M, S) -> (P, S, M) . (M, n) -> (P, n, S)
    g = F.transpose(F.reshape(gs[0], shape=(-1, m, s)), axes=(0, 2, 1))
    scattered = F.transpose(F.dot(g, one_hot), axes=(0, 2, 1))
    return [F.reshape(scattered, shape=(-1,) + tuple(shape[1:])), None]


def_linear('take', _take_vjp, jvp=_take_jvp, diff_args=(0,), not_differentiable=_INDICES,
           couples=_take_couples)


# ----- pick(data, index, axis, keepdims, mode) -----
def _pick_axis(eqn):
    return eqn.attrs.get('axis', -1) % len(eqn.in_shapes[0])


def _pick_jvp(c, eqn, xs, ans, ts):
    return c.apply(eqn, [ts[0], c.repeat(xs[1])])


def _pick_vjp(c, eqn, xs, ans, gs):
    F = c.F
    rank, axis = len(eqn.in_shapes[0]), _pick_axis(eqn)
    n = eqn.in_shapes[0][axis]
    index = c.repeat(xs[1])
    if len(eqn.in_shapes[1]) == rank:  # an index with the picked axis kept
        index = F.squeeze(index, axis=axis)
    one_hot = F.one_hot(_clipped(c, eqn, index, n), depth=n, dtype=eqn.dtype)  # (..., n)
    if axis != rank - 1:
        order = list(range(rank - 1))
        order.insert(axis, rank - 1)
        one_hot = F.transpose(one_hot, axes=tuple(order))
    g = gs[0] if eqn.attrs.get('keepdims', False) else F.expand_dims(gs[0], axis=axis)
    return [F.broadcast_mul(one_hot, g), None]


def_linear('pick', _pick_vjp, jvp=_pick_jvp, diff_args=(0,), not_differentiable=_INDICES)
