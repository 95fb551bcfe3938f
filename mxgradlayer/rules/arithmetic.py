# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Arithmetic: elementwise and broadcast binary operators, scalar operators, clip, where.

Binary operators are described by their partial derivatives (`_binary`): the JVP is
da*ta + db*tb, the VJP (da*g, db*g) summed back to each operand's shape, and the
forward-Laplacian curvature daa*S(ta^2) + 2 dab*S(ta tb) + dbb*S(tb^2), where S sums
the folded directions.  ``None`` partials mean 1 (so addition emits no multiply).  Their
Taylor terms (``taylor=``): none for the (piecewise) linear ones, Leibniz for products,
the quotient recurrence for division, exp(b log a) for powers of a variable exponent.
"""
import math

from ..registry import def_elementwise, def_linear, define, no_curvature, no_higher_terms
from ..series import cauchy, coefficient
from ._helpers import add, broadcast_tangent, neg, unbroadcast

ONE, MINUS_ONE = 'one', 'minus_one'


def _times(c, t, d, broadcast):
    if t is None:
        return None
    if d is ONE:
        return t
    if d is MINUS_ONE:
        return neg(c.F, t)
    return c.scale(t, d, broadcast=broadcast)


def _binary(op, partials, second, broadcast=False, taylor=None):
    """Register a binary operator from ``partials(F, a, b, ans) -> (da, db)``.

    ``second(F, a, b, ans) -> (daa, dab, dbb)`` (None entries are zero) gives the
    forward Laplacian's curvature; ``taylor(c, eqn, a, b, ans, sa, sb, sy, k)`` its Taylor
    terms from the operands' series broadcast to the output's shape (``sy``: the output's).
    """
    def jvp(c, eqn, xs, ans, ts):
        a, b = xs
        da, db = partials(c.F, a, b, ans[0])
        out = eqn.out_shapes[0]
        parts = [_times(c, broadcast_tangent(c, eqn, t, shp, out, ans[0]), d, broadcast)
                 if t is not None else None
                 for t, d, shp in ((ts[0], da, eqn.in_shapes[0]), (ts[1], db, eqn.in_shapes[1]))]
        return [add(c.F, *parts)]

    def vjp(c, eqn, xs, ans, gs):
        a, b = xs
        g = gs[0]
        da, db = partials(c.F, a, b, ans[0])
        out = eqn.out_shapes[0]
        return [unbroadcast(c, eqn, _times(c, g, d, broadcast), eqn.in_shapes[j], out)
                if c.needs(j) else None for j, d in enumerate((da, db))]

    def curvature(c, eqn, xs, ans, ts):
        F = c.F
        a, b = xs
        daa, dab, dbb = second(F, a, b, ans[0])
        out = eqn.out_shapes[0]
        ta = broadcast_tangent(c, eqn, ts[0], eqn.in_shapes[0], out, ans[0])
        tb = broadcast_tangent(c, eqn, ts[1], eqn.in_shapes[1], out, ans[0])
        terms = []
        for coef, u, v, k in ((daa, ta, ta, 1.0), (dab, ta, tb, 2.0), (dbb, tb, tb, 1.0)):
            if coef is None or u is None or v is None:
                continue
            s = c.sum_directions(F.elemwise_mul(u, v), eqn)
            terms.append(F.broadcast_mul(s, coef) * k if coef is not ONE else s * k)
        if not terms:
            return [None]
        total = terms[0]
        for t in terms[1:]:
            total = F.elemwise_add(total, t)
        return [total]

    def taylor_terms(c, eqn, xs, ans, ins, outs, k):
        out = eqn.out_shapes[0]
        sa, sb = [None if s is None else
                  [broadcast_tangent(c, eqn, t, shp, out, ans[0]) for t in s]
                  for s, shp in zip(ins, eqn.in_shapes)]
        return [taylor(c, eqn, xs[0], xs[1], ans[0], sa, sb, outs[0], k)]

    rules = {} if taylor is None else {
        'taylor': no_higher_terms if taylor == 'linear' else taylor_terms}
    define(op, jvp=jvp, vjp=vjp, curvature=curvature, **rules)


def _add_partials(F, a, b, ans):
    return ONE, ONE


def _sub_partials(F, a, b, ans):
    return ONE, MINUS_ONE


def _mul_partials(F, a, b, ans):
    return b, a


def _mul_second(F, a, b, ans):
    return None, ONE, None


def _div_partials(F, a, b, ans):  # d(a/b) = da/b - a db/b^2
    rb = F.reciprocal(b)
    return rb, F.broadcast_mul(ans, rb) * -1.0


def _div_second(F, a, b, ans):  # daa 0, dab -1/b^2, dbb 2a/b^3
    rb = F.reciprocal(b)
    return None, F.square(rb) * -1.0, F.broadcast_mul(ans, F.square(rb)) * 2.0


def _mul_taylor(c, eqn, a, b, y, sa, sb, sy, k):  # Leibniz
    return cauchy(c.F, sa, sb, k)


def _div_taylor(c, eqn, a, b, y, sa, sb, sy, k):
    """y = a / b: y_k = (a_k - sum_{j=1}^{k} b_j y_(k-j)) / b; the terms j < k here."""
    if sb is None:
        return None
    part = cauchy(c.F, sb, sy, k)
    return None if part is None else c.scale(part, c.F.reciprocal(b) * -1.0,
                                             broadcast=True)


def _ge(F, a, b):
    return F.broadcast_greater_equal(a, b)


def _le(F, a, b):
    return F.broadcast_lesser_equal(a, b)


def _max_partials(F, a, b, ans):  # ties go to the left operand, as in MXNet's backward
    m = _ge(F, a, b)
    return m, 1.0 - m


def _min_partials(F, a, b, ans):
    m = _le(F, a, b)
    return m, 1.0 - m


def _zero_second(F, a, b, ans):  # linear, or piecewise so
    return None, None, None


def _power_partials(F, a, b, ans):  # d a^b = b a^(b-1) da + a^b log(a) db
    return (F.broadcast_mul(b, F.broadcast_power(a, b - 1.0)),
            F.broadcast_mul(ans, F.log(a)))


def _power_second(F, a, b, ans):
    la = F.log(a)
    daa = F.broadcast_mul(F.broadcast_mul(b, b - 1.0), F.broadcast_power(a, b - 2.0))
    dab = F.broadcast_mul(F.broadcast_power(a, b - 1.0),
                          F.broadcast_add(F.broadcast_mul(b, la), F.ones_like(la)))
    dbb = F.broadcast_mul(ans, F.square(la))
    return daa, dab, dbb


def _power_taylor(c, eqn, a, b, y, sa, sb, sy, k):
    """y = exp(w), w = b log a: with l = log a (a l' = a': m l_m = (m a_m - sum_(0<j<m)
    j l_j a_(m-j)) / a), w_m = b l_m + log(a) b_m + sum_(0<i<m) b_i l_(m-i) and
    k y_k = sum_(j=1)^k j w_j y_(k-j); the terms here leave out b l_k's a_k / a and
    log(a) b_k, the JVP's."""
    F = c.F
    inv_a = c.memo((eqn.nid, 'power-inv'), lambda: F.reciprocal(a))
    log_a = c.memo((eqn.nid, 'power-log'), lambda: F.log(a))

    def l(m, full=True):  # coefficient m of log a, without a_m / a unless full
        def make():
            rest = None
            for j in range(1, m):
                lj, am = l(j), coefficient(sa, m - j)
                if lj is not None and am is not None:
                    term = F.elemwise_mul(lj, am) * (-float(j) / m)
                    rest = term if rest is None else F.elemwise_add(rest, term)
            am = coefficient(sa, m) if full else None
            total = am if rest is None else rest if am is None else F.elemwise_add(am, rest)
            return c.scale(total, inv_a, broadcast=True)
        return c.memo_local((eqn.nid, 'power-l', m, full), make)

    def w(m, full=True):  # coefficient m of b log a, without the JVP's part unless full
        def make():
            parts = [cauchy(F, sb, [l(i) for i in range(1, m)], m)]
            lm = l(m, full)
            parts.append(c.scale(lm, b, broadcast=True) if lm is not None else None)
            bm = coefficient(sb, m) if full else None
            parts.append(c.scale(bm, log_a, broadcast=True) if bm is not None else None)
            return add(F, add(F, parts[0], parts[1]), parts[2])
        return c.memo_local((eqn.nid, 'power-w', m, full), make)

    total = None
    lead = w(k, full=False)
    if lead is not None:
        total = c.scale(lead, y, broadcast=True)
    for j in range(1, k):
        wj, yk = w(j), coefficient(sy, k - j)
        if wj is not None and yk is not None:
            term = F.elemwise_mul(wj, yk) * (float(j) / k)
            total = term if total is None else F.elemwise_add(total, term)
    return total


# ----- elementwise (same shape) and broadcast binary operators -----
LINEAR = 'linear'
for _suffix, _p, _s, _t in (('add', _add_partials, _zero_second, LINEAR),
                            ('sub', _sub_partials, _zero_second, LINEAR),
                            ('mul', _mul_partials, _mul_second, _mul_taylor),
                            ('div', _div_partials, _div_second, _div_taylor)):
    _binary('elemwise_' + _suffix, _p, _s, taylor=_t)
    _binary('broadcast_' + _suffix, _p, _s, broadcast=True, taylor=_t)
_binary('broadcast_plus', _add_partials, _zero_second, broadcast=True, taylor=LINEAR)
_binary('broadcast_minus', _sub_partials, _zero_second, broadcast=True, taylor=LINEAR)
_binary('_plus', _add_partials, _zero_second, taylor=LINEAR)
_binary('_minus', _sub_partials, _zero_second, taylor=LINEAR)
_binary('_mul', _mul_partials, _mul_second, taylor=_mul_taylor)
_binary('_div', _div_partials, _div_second, taylor=_div_taylor)
_binary('broadcast_maximum', _max_partials, _zero_second, broadcast=True, taylor=LINEAR)
_binary('broadcast_minimum', _min_partials, _zero_second, broadcast=True, taylor=LINEAR)
_binary('_maximum', _max_partials, _zero_second, broadcast=True, taylor=LINEAR)
_binary('_minimum', _min_partials, _zero_second, broadcast=True, taylor=LINEAR)
for _op in ('broadcast_power', '_power'):
    _binary(_op, _power_partials, _power_second, broadcast=True, taylor=_power_taylor)


# ----- scalar operators (attribute ``scalar``) -----
def _scalar(a):
    return float(a['scalar'])


def _same_vjp(c, eqn, xs, ans, gs):
    return [gs[0]]


def _apply_vjp(c, eqn, xs, ans, gs):
    return c.apply(eqn, [gs[0]])


def _identity_jvp(c, eqn, xs, ans, ts):
    return [ts[0]]


def _negate_jvp(c, eqn, xs, ans, ts):
    return [neg(c.F, ts[0])]


def _negate_vjp(c, eqn, xs, ans, gs):
    return [neg(c.F, gs[0])]


for _op in ('_plus_scalar', '_minus_scalar', '_copy', 'identity'):
    def_linear(_op, _same_vjp, jvp=_identity_jvp)
def_linear('_rminus_scalar', _negate_vjp, jvp=_negate_jvp)
def_linear('negative', _negate_vjp, jvp=_negate_jvp)
def_linear('_mul_scalar', _apply_vjp)
def_linear('_div_scalar', _apply_vjp)
def _rdiv_nth(F, x, y, a, m):  # d^m (s/x) = s (-1)^m m! x^-(m+1) = y (-1)^m m! x^-m
    return F.elemwise_mul(y, F._internal._power_scalar(x, scalar=-float(m))) * (
        (-1.0) ** m * math.factorial(m))


def_elementwise('_rdiv_scalar',  # s / x: -s/x^2, 2s/x^3
                lambda F, x, y, a: F.elemwise_div(y, x) * -1.0,
                lambda F, x, y, a: F.elemwise_div(y, F.square(x)) * 2.0, nth=_rdiv_nth)


def _pow_d1(F, x, y, a):
    p = _scalar(a)
    if p == 1.0:
        return F.ones_like(x)
    return F._internal._power_scalar(x, scalar=p - 1.0) * p


def _pow_d2(F, x, y, a):
    p = _scalar(a)
    if p in (0.0, 1.0):
        return None
    if p == 2.0:
        return F.ones_like(x) * 2.0
    return F._internal._power_scalar(x, scalar=p - 2.0) * (p * (p - 1.0))


def _pow_nth(F, x, y, a, m):  # p (p-1) ... (p-m+1) x^(p-m); None once p is exhausted
    p = _scalar(a)
    falling = math.prod(p - i for i in range(m))
    return None if falling == 0.0 else F._internal._power_scalar(x, scalar=p - m) * falling


def_elementwise('_power_scalar', _pow_d1, _pow_d2, nth=_pow_nth)
def_elementwise('_rpower_scalar', lambda F, x, y, a: y * math.log(_scalar(a)),
                lambda F, x, y, a: y * math.log(_scalar(a)) ** 2,
                nth=lambda F, x, y, a, m: y * math.log(_scalar(a)) ** m)
# maximum(x, s): MXNet's backward passes the gradient where x >= s (and x <= s for minimum)
def_elementwise('_maximum_scalar',
                lambda F, x, y, a: F._internal._greater_equal_scalar(x, scalar=_scalar(a)))
def_elementwise('_minimum_scalar',
                lambda F, x, y, a: F._internal._lesser_equal_scalar(x, scalar=_scalar(a)))


def _clip_d1(F, x, y, a):  # 1 inside [a_min, a_max], as MXNet's clip backward
    return F.elemwise_mul(F._internal._greater_equal_scalar(x, scalar=float(a['a_min'])),
                          F._internal._lesser_equal_scalar(x, scalar=float(a['a_max'])))


def_elementwise('clip', _clip_d1)


# ----- where(condition, x, y) -----
def _where_masks(c, cond):
    m = c.F._internal._not_equal_scalar(cond, scalar=0.0)
    return m, 1.0 - m


def _where_jvp(c, eqn, xs, ans, ts):
    m, n = _where_masks(c, xs[0])
    return [add(c.F, c.scale(ts[1], m), c.scale(ts[2], n))]


def _where_vjp(c, eqn, xs, ans, gs):
    m, n = _where_masks(c, xs[0])
    return [None, c.scale(gs[0], m), c.scale(gs[0], n)]


# The condition is piecewise constant: its derivative is zero wherever it is defined.
define('where', jvp=_where_jvp, vjp=_where_vjp, curvature=no_curvature,
       taylor=no_higher_terms)


# ----- add_n (ElementWiseSum): what sums of many terms emit -----
def _add_n_jvp(c, eqn, xs, ans, ts):
    present = [t for t in ts if t is not None]
    return [present[0] if len(present) == 1 else c.F.add_n(*present)]


def _add_n_vjp(c, eqn, xs, ans, gs):
    return [gs[0]] * len(xs)


def_linear('add_n', _add_n_vjp, jvp=_add_n_jvp, aliases=('ElementWiseSum',))
