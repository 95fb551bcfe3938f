# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Linear algebra: FullyConnected, dot, batch_dot, bilinear in their two matrix inputs.

Each is a `def_bilinear` row: the product and its two transposes.  The common case, a
data tensor against a parameter matrix, is linear in the data and folds any number of
directions into the batch axis.  When the shared matrix operand depends on the
differentiated input too, its tangent has no batch axis to fold into, so that case is
exact for one direction and refused for several; batch_dot's operands both have a
batch axis, so its directions fold freely.
"""
from ..registry import def_bilinear
from ._helpers import reshape_to


def _rows(F, x):
    """(d0, ..., dk) -> (d0*...*d(k-1), dk), without knowing any size."""
    return F.reshape(x, shape=(-1, 0), reverse=True)


# ----- FullyConnected(data, weight[, bias]) -----
def _fc(c, eqn, data, weight):
    return c.F.FullyConnected(data, weight, no_bias=True, num_hidden=eqn.attrs['num_hidden'],
                              flatten=eqn.attrs.get('flatten', True))


def _fc_data_cotangent(c, eqn, g, data, weight):
    flatten = eqn.attrs.get('flatten', True)
    hidden, units = eqn.in_shapes[1]
    if _gemm_pays(hidden, units):
        transposed = c.memo_value(weight, 'transposed', c.F.transpose)
        gx = c.F.FullyConnected(g, transposed, no_bias=True, num_hidden=units,
                                flatten=flatten)
    else:
        gx = c.F.dot(g, weight)
    if flatten and len(eqn.in_shapes[0]) != 2:
        gx = reshape_to(c, gx, data, eqn.in_shapes[0])
    return gx


def _gemm_pays(hidden, units):
    """Whether g x W is better computed as FullyConnected(g, W^T) than as dot(g, W).

    MXNet's dot is up to three times slower than FullyConnected (oneDNN's inner
    product) on thin or larger products; with backward, two cores, float32, rows x
    hidden x units: 1024 x 1 x 1024 9.8 / 7.1 ms, 1024 x 1024 x 1 1.09 / 0.37 ms,
    4096 x 64 x 64 5.3 / 2.7 ms, 4096 x 64 x 1 0.53 / 0.26 ms (the thin ones are the
    means and spreads of BatchNorm's lowering, `norm._Channels`).  The transpose costs
    an operator, which decides small products the other way: 64 x 32 x 32 0.21 / 0.29 ms,
    64 x 1 x 32 0.20 / 0.27 ms.  So: weights of 4096 elements or more, and thin weights
    (one dimension 1) of 64 or more."""
    return hidden * units >= 4096 or (min(hidden, units) == 1 and max(hidden, units) >= 64)


def _fc_rows(c, eqn, g):
    return c.F.reshape(g, shape=(-1, eqn.attrs['num_hidden']))


def _fc_weight_cotangent(c, eqn, g, data, weight):
    flat = c.F.flatten(data) if eqn.attrs.get('flatten', True) else _rows(c.F, data)
    return c.F.dot(_fc_rows(c, eqn, g), flat, transpose_a=True)


def _fc_bias_tangent(c, eqn, t, ans):
    rank = len(eqn.out_shapes[0])
    return c.F.broadcast_like(c.F.reshape(t, shape=(1,) * (rank - 1) + (-1,)), ans)


def _fc_bias_cotangent(c, eqn, g):
    return c.F.sum(_fc_rows(c, eqn, g), axis=0)


def_bilinear('FullyConnected', _fc, _fc_data_cotangent, _fc_weight_cotangent,
             right='weight', bias=(_fc_bias_tangent, _fc_bias_cotangent))


# ----- dot(lhs, rhs) -----
def _dot_flags(eqn):
    return bool(eqn.attrs.get('transpose_a', False)), bool(eqn.attrs.get('transpose_b', False))


def _dot(c, eqn, a, b):
    ta, tb = _dot_flags(eqn)
    return c.F.dot(a, b, transpose_a=ta, transpose_b=tb)


def _dot_left_cotangent(c, eqn, g, a, b):
    ta, tb = _dot_flags(eqn)
    if ta:  # 2-D only in MXNet: a^T b', so dA = b' g^T
        return c.F.dot(b, g, transpose_a=tb, transpose_b=True)
    return c.F.dot(g, b, transpose_b=not tb)  # dA = g b'^T, any rank of a


def _dot_right_cotangent(c, eqn, g, a, b):
    ta, tb = _dot_flags(eqn)
    a2, g2 = (a, g) if ta else (_rows(c.F, a), _rows(c.F, g))
    if tb:  # b = b'^T with b' = a'^T g
        return c.F.dot(g2, a2, transpose_a=True, transpose_b=ta)
    return c.F.dot(a2, g2, transpose_a=not ta)


def_bilinear('dot', _dot, _dot_left_cotangent, _dot_right_cotangent)


# ----- batch_dot(lhs, rhs): per-sample matrix products -----
def _batch_dot(c, eqn, a, b):
    ta, tb = _dot_flags(eqn)
    return c.F.batch_dot(a, b, transpose_a=ta, transpose_b=tb)


def _batch_dot_left_cotangent(c, eqn, g, a, b):
    ta, tb = _dot_flags(eqn)
    if ta:
        return c.F.batch_dot(b, g, transpose_a=tb, transpose_b=True)
    return c.F.batch_dot(g, b, transpose_b=not tb)


def _batch_dot_right_cotangent(c, eqn, g, a, b):
    ta, tb = _dot_flags(eqn)
    if tb:
        return c.F.batch_dot(g, a, transpose_a=True, transpose_b=ta)
    return c.F.batch_dot(a, g, transpose_a=not ta)


def_bilinear('batch_dot', _batch_dot, _batch_dot_left_cotangent, _batch_dot_right_cotangent,
             shared_right=False)
