# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Truncated Taylor series of folded tensors: the arithmetic the Taylor rules share.

A series is the list ``[x_1, ..., x_j]`` of the normalised Taylor coefficients of a value
along a curve, x(t) = x_0 + x_1 t + x_2 t^2 + ... (x_0, the primal value, is not in the
list), each folded like a tangent (K directions in the batch axis); None is a zero
coefficient.  A Taylor rule returns, for coefficient k of each output, the part that
does not involve the inputs' own coefficient k (the interpreter adds that part with the
JVP rule), so it reads only ``x_1 .. x_(k-1)``: the rules here never see a coefficient
they are asked to produce.
"""
import math

__all__ = ['coefficient', 'cauchy', 'power_coefficient', 'faa_di_bruno', 'autonomous']


def coefficient(s, j):
    """Coefficient j >= 1 of series ``s`` (None if zero or beyond its length)."""
    return s[j - 1] if s is not None and 1 <= j <= len(s) else None


def cauchy(F, a, b, k, mul=None):
    """sum_{i=1}^{k-1} a_i b_(k-i): coefficient k of the product of two series without
    their constant terms (the Leibniz part that is not linear in a_k or b_k).
    ``mul(u, v)`` multiplies two coefficients (default elemwise_mul)."""
    mul = mul or F.elemwise_mul
    total = None
    for i in range(1, k):
        u, v = coefficient(a, i), coefficient(b, k - i)
        if u is not None and v is not None:
            term = mul(u, v)
            total = term if total is None else F.elemwise_add(total, term)
    return total


def power_coefficient(c, key, s, m, k):
    """Coefficient k of (x_1 t + x_2 t^2 + ...)^m, from x_1 .. x_(k-m+1), memoised per
    sweep under ``key`` (powers are shared between the coefficients of one node)."""
    if k < m:
        return None
    if m == 1:
        return coefficient(s, k)

    def make():
        if m == 2:  # sum_j s_j s_(k-j): each cross term once, doubled, the middle squared
            total = None
            for j in range(1, (k + 1) // 2):
                u, v = coefficient(s, j), coefficient(s, k - j)
                if u is not None and v is not None:
                    term = c.F.elemwise_mul(u, v)
                    total = term if total is None else c.F.elemwise_add(total, term)
            total = None if total is None else total * 2.0
            mid = coefficient(s, k // 2) if k % 2 == 0 else None
            if mid is not None:
                total = c.F.square(mid) if total is None else \
                    c.F.elemwise_add(total, c.F.square(mid))
            return total
        total = None
        for j in range(1, k - m + 2):
            u, v = coefficient(s, j), power_coefficient(c, key, s, m - 1, k - j)
            if u is not None and v is not None:
                term = c.F.elemwise_mul(u, v)
                total = term if total is None else c.F.elemwise_add(total, term)
        return total
    return c.memo_local((key, 'power', m, k), make)


def faa_di_bruno(c, key, s, k, derivative):
    """The part of coefficient k of f(x(t)) beyond f'(x_0) x_k:
    sum_{m=2}^{k} f^(m)(x_0) / m! (x_1 t + ...)^m |_k.

    ``derivative(m)`` returns f^(m)(x_0) for m >= 2 as a primal (unfolded) tensor, or
    None where it is zero; it is called once per m and sweep.  When the sweep collapses
    coefficient k (``c.collapsing``: the directions' weights), each power is summed over
    the directions before its primal factor multiplies it, and the result is collapsed.
    """
    total = None
    for m in range(2, k + 1):
        p = power_coefficient(c, key, s, m, k)
        if p is None:
            continue
        equal = c.collapsing is not None and len(set(c.collapsing)) == 1
        # equal weights (the Laplacian's): sum the directions, and fold the weight into
        # the primal factor, one scalar multiplication of f^(m) in all
        w = float(c.collapsing[0]) if equal else 1.0
        d = c.memo((key, 'taylor-derivative', m, w),
                   lambda m=m: _over_factorial(derivative(m), m, w))
        if d is None:
            continue
        if equal:
            term = c.F.elemwise_mul(c.sum_directions(p), d)
        elif c.collapsing is not None:
            term = c.F.elemwise_mul(c.collapse(p, c.collapsing), d)
        else:
            term = c.scale(p, d)
        total = term if total is None else c.F.elemwise_add(total, term)
    return total


def _over_factorial(d, m, w=1.0):
    scale = w / math.factorial(m)
    return d if d is None or scale == 1.0 else d * scale


def _times(F, t, w):
    return t if w == 1.0 else t * float(w)


def autonomous(c, key, xs, ys, y0, k, poly):
    """The part of coefficient k of y = f(x(t)) beyond f'(x_0) x_k, for an f with
    f' = P(f), P = ``poly`` (ascending, degree <= 2: tanh 1 - y^2, sigmoid y - y^2,
    exp y, tan 1 + y^2), by the recurrence of y' = P(y) x' (Griewank & Walther, 13.2):
    k y_k = sum_(j=1)^k j x_j z_(k-j), z = P(y), whose coefficients need only y's lower
    ones and products of two series.  About half the products of Faa di Bruno at order 4,
    and no derivative table.  ``xs``, ``ys``: the input's and output's series so far;
    ``y0``: f(x_0).
    """
    F = c.F
    b, q = (list(poly) + [0.0, 0.0, 0.0])[1:3]

    def z(m):  # coefficient m >= 1 of P(y(t)): (b + 2 q y_0) y_m + q sum_(0<i<m) y_i y_(m-i)
        def make():
            ym = coefficient(ys, m)
            total = None
            if ym is not None:
                slope = c.memo((key, 'ode-slope'), lambda: y0 * (2.0 * q) + b if q else None)
                total = c.scale(ym, slope) if slope is not None else _times(F, ym, b)
            if q:
                half = None
                for i in range(1, (m + 1) // 2):
                    u, v = coefficient(ys, i), coefficient(ys, m - i)
                    if u is not None and v is not None:
                        term = F.elemwise_mul(u, v)
                        half = term if half is None else F.elemwise_add(half, term)
                square = _times(F, half, 2.0 * q) if half is not None else None
                if m % 2 == 0 and coefficient(ys, m // 2) is not None:
                    mid = _times(F, F.square(coefficient(ys, m // 2)), q)
                    square = mid if square is None else F.elemwise_add(square, mid)
                if square is not None:
                    total = square if total is None else F.elemwise_add(total, square)
            return total
        return c.memo_local((key, 'ode', m), make)

    total = None
    for j in range(1, k):
        xj, zj = coefficient(xs, j), z(k - j)
        if xj is None or zj is None:
            continue
        if j > 1:
            xj = c.memo_local((key, 'ode-x', j), lambda xj=xj, j=j: xj * float(j))
        term = F.elemwise_mul(xj, zj)
        total = term if total is None else F.elemwise_add(total, term)
    return None if total is None else total * (1.0 / k)
