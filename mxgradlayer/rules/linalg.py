# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Linear algebra: FullyConnected, dot, batch_dot (bilinear in their two matrix inputs).

The common case, a data tensor against a parameter matrix, is linear in the data and
folds any number of directions into the batch axis.  When the matrix operand depends on
the differentiated input too, its tangent has no batch axis to fold into, so that case
is exact for one direction and refused (``c.coupling``) for several.
"""
from ..registry import defrule
from ._helpers import add, reshape_to


def _rows(F, x):
    """(d0, ..., dk) -> (d0*...*d(k-1), dk), without knowing any size."""
    return F.reshape(x, shape=(-1, 0), reverse=True)


# ----- FullyConnected(data, weight, bias) -----
def _fc(c, eqn, data, weight):
    return c.F.FullyConnected(data, weight, no_bias=True, num_hidden=eqn.attrs['num_hidden'],
                              flatten=eqn.attrs.get('flatten', True))


def _fc_jvp(c, eqn, xs, ans, ts):
    F = c.F
    out = None
    if ts[0] is not None:
        out = _fc(c, eqn, ts[0], xs[1])
    if ts[1] is not None:
        c.coupling(eqn, 'its weight depends on the input')
        out = add(F, out, _fc(c, eqn, xs[0], ts[1]))
    if len(ts) > 2 and ts[2] is not None:
        c.coupling(eqn, 'its bias depends on the input')
        out = add(F, out, F.broadcast_like(F.reshape(ts[2], shape=(1,) * (len(
            eqn.out_shapes[0]) - 1) + (-1,)), ans[0]))
    return [out]


def _fc_vjp(c, eqn, xs, ans, gs):
    F = c.F
    g = gs[0]
    if g is None:
        return [None] * len(xs)
    data, weight = xs[0], xs[1]
    flatten = eqn.attrs.get('flatten', True)
    gx = F.dot(g, weight)
    if flatten and len(eqn.in_shapes[0]) != 2:
        gx = reshape_to(c, gx, data, eqn.in_shapes[0])
    out = [gx, None] + [None] * (len(xs) - 2)
    if c.K == 1 and (c.needs(1) or c.needs(2)):  # weight or bias depends on the input
        g2 = F.reshape(g, shape=(-1, eqn.attrs['num_hidden']))
        x2 = F.flatten(data) if flatten else _rows(F, data)
        out[1] = F.dot(g2, x2, transpose_a=True)
        if len(xs) > 2:
            out[2] = F.sum(g2, axis=0)
    return out


def _fc_curvature(c, eqn, xs, ans, ts):
    if ts[0] is None or ts[1] is None:
        return [None]
    return [_fc(c, eqn, ts[0], ts[1]) * 2.0]  # K == 1 here (see _fc_jvp)


defrule('FullyConnected', _fc_jvp, _fc_vjp, _fc_curvature)


# ----- dot(lhs, rhs) -----
def _dot(c, a, b, ta=False, tb=False):
    return c.F.dot(a, b, transpose_a=ta, transpose_b=tb)


def _dot_flags(eqn):
    return bool(eqn.attrs.get('transpose_a', False)), bool(eqn.attrs.get('transpose_b', False))


def _dot_jvp(c, eqn, xs, ans, ts):
    ta, tb = _dot_flags(eqn)
    out = None
    if ts[0] is not None:
        out = _dot(c, ts[0], xs[1], ta, tb)
    if ts[1] is not None:
        c.coupling(eqn, 'its right operand depends on the input')
        out = add(c.F, out, _dot(c, xs[0], ts[1], ta, tb))
    return [out]


def _dot_vjp(c, eqn, xs, ans, gs):
    g = gs[0]
    if g is None:
        return [None, None]
    F = c.F
    a, b = xs
    ta, tb = _dot_flags(eqn)
    if ta:  # 2-D only in MXNet: a^T b', so dA = b' g^T
        ga = _dot(c, b, g, tb, True)
    else:  # dA = g b'^T, any rank of a
        ga = _dot(c, g, b, False, not tb)
    gb = None
    if c.K == 1 and c.needs(1):
        a2 = a if ta else _rows(F, a)
        g2 = g if ta else _rows(F, g)
        # b' = a'^T g; b = b'^T if transpose_b
        gb = _dot(c, a2, g2, not ta, False) if not tb else _dot(c, g2, a2, True, ta)
    return [ga, gb]


def _dot_curvature(c, eqn, xs, ans, ts):
    if ts[0] is None or ts[1] is None:
        return [None]
    ta, tb = _dot_flags(eqn)
    return [_dot(c, ts[0], ts[1], ta, tb) * 2.0]


defrule('dot', _dot_jvp, _dot_vjp, _dot_curvature)


# ----- batch_dot(lhs, rhs): per-sample matrix products, so directions fold freely -----
def _bdot(c, a, b, ta=False, tb=False):
    return c.F.batch_dot(a, b, transpose_a=ta, transpose_b=tb)


def _batch_dot_jvp(c, eqn, xs, ans, ts):
    ta, tb = _dot_flags(eqn)
    a, b = xs
    out = None
    if ts[0] is not None:
        out = _bdot(c, ts[0], c.repeat(b), ta, tb)
    if ts[1] is not None:
        out = add(c.F, out, _bdot(c, c.repeat(a), ts[1], ta, tb))
    return [out]


def _batch_dot_vjp(c, eqn, xs, ans, gs):
    g = gs[0]
    if g is None:
        return [None, None]
    ta, tb = _dot_flags(eqn)
    a, b = c.repeat(xs[0]), c.repeat(xs[1])
    ga = _bdot(c, b, g, tb, True) if ta else _bdot(c, g, b, False, not tb)
    gb = _bdot(c, g, a, True, ta) if tb else _bdot(c, a, g, not ta, False)
    return [ga, gb]


def _batch_dot_curvature(c, eqn, xs, ans, ts):
    if ts[0] is None or ts[1] is None:
        return [None]
    ta, tb = _dot_flags(eqn)
    return [c.sum_directions(_bdot(c, ts[0], ts[1], ta, tb)) * 2.0]


defrule('batch_dot', _batch_dot_jvp, _batch_dot_vjp, _batch_dot_curvature)
