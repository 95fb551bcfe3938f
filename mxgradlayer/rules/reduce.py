# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Reductions and normalisations along axes: sum and mean (linear; the VJP broadcasts
back), max and min (piecewise linear), softmax and log_softmax, the 1- and 2-norm."""
from ..registry import add, def_linear, def_lowering, define, no_curvature, no_higher_terms
from ..series import cauchy, coefficient


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


def _keep(c, eqn, r):
    """A reduction's result with the reduced axes kept as size 1."""
    if eqn.attrs.get('keepdims', False):
        return r
    shape = eqn.in_shapes[0]
    axes = reduced_axes(eqn.attrs, len(shape))
    if len(axes) == len(shape):
        return c.F.reshape(r, shape=(1,) * len(shape))
    for a in axes:
        r = c.F.expand_dims(r, axis=a)
    return r


def _spread(c, eqn, g, x):
    """Broadcast cotangent ``g`` of a reduction back over the reduced axes of ``x``."""
    shape = eqn.in_shapes[0]
    axes = reduced_axes(eqn.attrs, len(shape))
    if c.K > 1 and any(shape[a] is None for a in axes):
        c.coupling(eqn, 'it reduces over the batch axis')
    g = _keep(c, eqn, g)
    if c.K == 1:
        return c.F.broadcast_like(g, x)
    return c.F.broadcast_axis(g, axis=axes, size=tuple(shape[a] for a in axes))


def _sum_vjp(c, eqn, xs, ans, gs):
    return [_spread(c, eqn, gs[0], xs[0])]


def _mean_vjp(c, eqn, xs, ans, gs):
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


def_linear('sum', _sum_vjp, aliases=('sum_axis',))
def_linear('mean', _mean_vjp)


# ----- softmax and log_softmax along one axis -----
def _softmax_axis(eqn):
    return eqn.attrs.get('axis', -1) % len(eqn.in_shapes[0])


def _softmax_validate(eqn):
    if eqn.attrs.get('temperature') not in (None, 1, 1.0) or eqn.attrs.get('use_length', False):
        return 'temperature or use_length is not covered'
    return None


def _softmax_couples(eqn):
    return 'it normalises over the batch axis' if _softmax_axis(eqn) == 0 else None


def _dot_along(c, y, t, axis):
    """<y, t> along ``axis`` for folded directions ``t``, keepdims."""
    return c.F.sum(c.F.elemwise_mul(c.repeat(y), t), axis=axis, keepdims=True)


def _softmax_jvp(c, eqn, xs, ans, ts):  # dy = y (t - <y, t>)
    F, t = c.F, ts[0]
    axis = _softmax_axis(eqn)
    return [F.elemwise_mul(c.repeat(ans[0]), F.broadcast_sub(t, _dot_along(c, ans[0], t, axis)))]


def _softmax_curvature(c, eqn, xs, ans, ts):  # d2y = s (t - <y,t>) - y <s, t>, s = dy
    F, t = c.F, ts[0]
    axis = _softmax_axis(eqn)
    centred = F.broadcast_sub(t, _dot_along(c, ans[0], t, axis))
    s = F.elemwise_mul(c.repeat(ans[0]), centred)
    st = F.sum(F.elemwise_mul(s, t), axis=axis, keepdims=True)
    second = F.elemwise_sub(F.elemwise_mul(s, centred), F.broadcast_mul(c.repeat(ans[0]), st))
    return [c.sum_directions(second)]


def _log_softmax_jvp(c, eqn, xs, ans, ts):  # dz = t - <y, t>, y = exp(z)
    axis = _softmax_axis(eqn)
    y = c.memo((eqn.nid, 'probabilities'), lambda: c.F.exp(ans[0]))
    return [c.F.broadcast_sub(ts[0], _dot_along(c, y, ts[0], axis))]


def _log_softmax_curvature(c, eqn, xs, ans, ts):  # d2z = -(<y, t^2> - <y, t>^2)
    F, t = c.F, ts[0]
    axis = _softmax_axis(eqn)
    y = c.memo((eqn.nid, 'probabilities'), lambda: F.exp(ans[0]))
    mean = _dot_along(c, y, t, axis)
    var = F.elemwise_sub(_dot_along(c, y, F.square(t), axis), F.square(mean))
    return [c.sum_directions(F.broadcast_like(var * -1.0, c.repeat(ans[0])))]


def _softmax_vjp(c, eqn, xs, ans, gs):  # g_x = y (g - <g, y>): self-adjoint
    return _softmax_jvp(c, eqn, xs, ans, gs)


def _log_softmax_vjp(c, eqn, xs, ans, gs):  # g_x = g - y sum(g)
    F = c.F
    axis = _softmax_axis(eqn)
    y = c.memo((eqn.nid, 'probabilities'), lambda: F.exp(ans[0]))
    total = F.sum(gs[0], axis=axis, keepdims=True)
    return [F.elemwise_sub(gs[0], F.broadcast_mul(c.repeat(y), total))]


def _inner(c, axis, u, v):
    """<u, v> along ``axis``, keepdims, of two folded series coefficients (None: zero)."""
    if u is None or v is None:
        return None
    return c.F.sum(c.F.elemwise_mul(u, v), axis=axis, keepdims=True)


def _weighted_inner_sum(c, axis, p0, ps, xs, k):
    """sum_(i=0)^(k-1) (k - i) <p_i, x_(k-i)> with p_0 the primal (its i = 0 term only
    if ``p0`` is given), the others folded series."""
    F, total = c.F, None
    for i in range(0 if p0 is not None else 1, k):
        x = coefficient(xs, k - i)
        if x is None:
            continue
        term = _dot_along(c, p0, x, axis) if i == 0 else _inner(c, axis, coefficient(ps, i), x)
        if term is not None:
            total = add(F, total, term * float(k - i) if k - i != 1 else term)
    return total


def _softmax_taylor(c, eqn, xs, ans, ins, outs, k):
    """y = softmax(x) solves y' = y (x' - <y, x'>) (the JVP along the curve), so with
    q(t) = x'(t) - <y(t), x'(t)>: k y_k = sum_(i<k) y_i q_(k-1-i); the terms without
    x_k: y_0 times q_(k-1) less its x_k part, and i >= 1 (q from lower coefficients)."""
    F, axis = c.F, _softmax_axis(eqn)
    sx, sy, y0 = ins[0], outs[0], ans[0]

    def q(m, full=True):  # coefficient m of q(t); without its x_(m+1) part if not full
        def make():
            inner = _weighted_inner_sum(c, axis, y0 if full else None, sy, sx, m + 1)
            x = coefficient(sx, m + 1) if full else None
            x = None if x is None else (x * float(m + 1) if m else x)
            if inner is None:
                return x
            return inner * -1.0 if x is None else F.broadcast_sub(x, inner)
        return c.memo_local((eqn.nid, 'softmax-q', m, full), make)

    total = None
    lead = q(k - 1, full=False)
    if lead is not None:
        total = F.broadcast_mul(c.repeat(y0), lead)
    for i in range(1, k):
        y, qi = coefficient(sy, i), q(k - 1 - i)
        if y is not None and qi is not None:
            total = add(F, total, F.broadcast_mul(y, qi))
    return [None if total is None else total * (1.0 / k)]


def _log_softmax_taylor(c, eqn, xs, ans, ins, outs, k):
    """z = x - lse(x), lse' = <p, x'> with p = exp(z) = softmax(x): lse_k =
    (1/k) sum_(i<k) (k-i) <p_i, x_(k-i)>; p's coefficients by the recurrence of exp,
    m p_m = sum_(j=1)^m j z_j p_(m-j), from z's lower ones."""
    F, axis = c.F, _softmax_axis(eqn)
    sz = outs[0]
    p0 = c.memo((eqn.nid, 'probabilities'), lambda: F.exp(ans[0]))

    def p(m):
        def make():
            total = None
            for j in range(1, m + 1):
                z = coefficient(sz, j)
                if z is None:
                    continue
                z = z * float(j) if j > 1 else z
                term = c.scale(z, p0) if j == m else \
                    (None if p(m - j) is None else F.elemwise_mul(z, p(m - j)))
                total = add(F, total, term)
            return None if total is None else total * (1.0 / m) if m > 1 else total
        return c.memo_local((eqn.nid, 'log-softmax-p', m), make)

    lse = _weighted_inner_sum(c, axis, None, [p(m) for m in range(1, k)], ins[0], k)
    if lse is None:
        return [None]
    like = coefficient(ins[0], 1)
    return [F.broadcast_like(lse * (-1.0 / k), c.repeat(ans[0]) if like is None else like)]


_SOFTMAX = dict(validate=_softmax_validate, couples=_softmax_couples)
define('softmax', jvp=_softmax_jvp, vjp=_softmax_vjp, curvature=_softmax_curvature,
       taylor=_softmax_taylor, **_SOFTMAX)
define('log_softmax', jvp=_log_softmax_jvp, vjp=_log_softmax_vjp,
       curvature=_log_softmax_curvature, taylor=_log_softmax_taylor, **_SOFTMAX)


def _lower_softmax_activation(F, eqn, xs, options):
    """SoftmaxActivation (deprecated in MXNet, and what the Wolfram Language's MXNet
    export ends its nets in): 'instance' is a softmax over the last axis (the kernel
    flattens to mshadow's 2-D view, all leading axes by the last), 'channel' over axis 1."""
    channel = eqn.attrs.get('mode', 'instance') == 'channel'
    return [F.softmax(xs[0], axis=1 if channel else -1)]


def_lowering('SoftmaxActivation', _lower_softmax_activation, doc='as softmax')


# ----- max and min over axes: the arg-max's tangent (ties share it equally, as in
# HIPS/autograd's grad_chooser), so the rules are piecewise linear -----
def _chooser(c, eqn, x, y):
    """Indicator of the extremal elements, divided by their count: (B, *s)."""
    def make():
        F = c.F
        axes = reduced_axes(eqn.attrs, len(eqn.in_shapes[0]))
        # detached, as the pooling mask (rules/conv.py): a mask has no derivative
        hits = F.broadcast_equal(F.BlockGrad(x), F.BlockGrad(_keep(c, eqn, y)))
        return F.broadcast_div(hits, F.sum(hits, axis=axes, keepdims=True))
    return c.memo((eqn.nid, 'chooser'), make)


def _weighted_reduction(factor):
    """Rules of a reduction whose derivative weighs each element by ``factor(c, eqn, x,
    y)`` (B, *s): the JVP sums t * factor over the axes, the VJP spreads g back and
    multiplies by it."""
    def jvp(c, eqn, xs, ans, ts):
        shape = eqn.in_shapes[0]
        axes = reduced_axes(eqn.attrs, len(shape))
        if any(shape[a] is None for a in axes):
            c.coupling(eqn, 'it reduces over the batch axis')
        picked = c.scale(ts[0], factor(c, eqn, xs[0], ans[0]))
        return [c.F.sum(picked, axis=axes, keepdims=bool(eqn.attrs.get('keepdims', False)))]

    def vjp(c, eqn, xs, ans, gs):
        return [c.scale(_spread(c, eqn, gs[0], xs[0]), factor(c, eqn, xs[0], ans[0]))]
    return jvp, vjp


for _op in ('max', 'min'):  # piecewise linear
    _jvp, _vjp = _weighted_reduction(_chooser)
    define(_op, jvp=_jvp, vjp=_vjp, curvature=no_curvature, taylor=no_higher_terms,
           aliases=(_op + '_axis',))


# ----- norm (ord 1 or 2) over axes -----
def _norm_ord(eqn):
    return eqn.attrs.get('ord', 2)


def _norm_validate(eqn):
    if _norm_ord(eqn) not in (1, 2) or eqn.attrs.get('out_dtype') not in (None, 'None'):
        return 'only ord=1 and ord=2 without out_dtype are covered'
    return None


def _norm_factor(c, eqn, x, y):
    """d norm / dx: sign(x) for ord 1, x / norm for ord 2 (B, *s)."""
    F = c.F
    if _norm_ord(eqn) == 1:
        return c.memo((eqn.nid, 'norm-d1'), lambda: F.sign(x))
    return c.memo((eqn.nid, 'norm-d1'), lambda: F.broadcast_div(x, _keep(c, eqn, y)))


def _norm_curvature(c, eqn, xs, ans, ts):
    """ord 2: (|t|^2 - <u, t>^2) / |x| with u = x / |x|, summed over directions."""
    if _norm_ord(eqn) == 1:
        return [None]
    F = c.F
    axes = reduced_axes(eqn.attrs, len(eqn.in_shapes[0]))
    keep = bool(eqn.attrs.get('keepdims', False))
    along = F.sum(c.scale(ts[0], _norm_factor(c, eqn, xs[0], ans[0])), axis=axes, keepdims=keep)
    total = F.elemwise_sub(F.sum(F.square(ts[0]), axis=axes, keepdims=keep), F.square(along))
    return [F.elemwise_div(c.sum_directions(total), ans[0])]


def _norm_taylor(c, eqn, xs, ans, ins, outs, k):
    """ord 2: y^2 = sum x^2 along the axes, so 2 y_0 y_k = sum_(0<i<k) (sum x_i x_(k-i)
    - y_i y_(k-i)) + 2 <x_0, x_k>, the last the JVP's part; ord 1 is piecewise linear."""
    if _norm_ord(eqn) == 1:
        return [None]
    F = c.F
    axes = reduced_axes(eqn.attrs, len(eqn.in_shapes[0]))
    keep = bool(eqn.attrs.get('keepdims', False))
    squares = cauchy(F, ins[0], ins[0], k)
    if squares is None:
        return [None]
    total = F.sum(squares, axis=axes, keepdims=keep)
    cross = cauchy(F, outs[0], outs[0], k)
    if cross is not None:
        total = F.elemwise_sub(total, cross)
    return [c.scale(total, c.memo((eqn.nid, 'half-reciprocal'),
                                  lambda: F.reciprocal(ans[0]) * 0.5))]


_jvp, _vjp = _weighted_reduction(_norm_factor)
define('norm', jvp=_jvp, vjp=_vjp, curvature=_norm_curvature, taylor=_norm_taylor,
       validate=_norm_validate)
