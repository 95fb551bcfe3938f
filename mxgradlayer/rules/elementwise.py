# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Unary elementwise operators: one row per operator, f'(x) and f''(x).

Each row is ``def_elementwise(op, d1, d2)`` with ``d1(F, x, ans, attrs)`` = f'(x) and
``d2`` = f''(x) (for the forward Laplacian), or ``def_elementwise(op, d1, ratio=...)``
with f''/f' where that is cheap (tanh, sigmoid, erf); no ``d2`` means f'' = 0 (relu).
``nth=`` gives every higher derivative f^(m), for Taylor mode: most from a closed form
(sin, log, powers) or from a derivative table built once by polynomial algebra
(`_autonomous`: f' = P(z) for z = f or sigmoid; `_rational`: f' = (1 + x^2)^-a; Hermite
polynomials for erf and gelu).  ``ans`` = f(x) is reused where it is cheaper.
At points of non-differentiability the one-sided value of MXNet's own first-order
gradient is used (relu'(0) = 0, abs'(0) = sign(0) = 0).
Activation and LeakyReLU dispatch on ``act_type`` (keys ``'Activation:tanh'``...).
"""
import math

import numpy as np
from numpy.polynomial import hermite, hermite_e, polynomial as P

from ..registry import (def_elementwise, def_linear, def_zero, define, no_curvature,
                        no_higher_terms)

SQRT_2 = math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
# MXNet stores SELU's constants as float32 (src/operator/leaky_relu-inl.h).
SELU_ALPHA = float(np.float32(1.6732632423543772848170429916717))
SELU_LAMBDA = float(np.float32(1.0507009873554804934193349852946))


def _positive(F, x):
    return F._internal._greater_scalar(x, scalar=0.0)


def _sigmoid_d1(F, x, s, a):
    return F.elemwise_mul(s, 1.0 - s)


def _tanh_d1(F, x, y, a):
    return 1.0 - F.square(y)


def _tanh_ratio(F, x, y, a):  # f''/f' = -2 y, f'' = -2 y (1 - y^2)
    return y * -2.0


def _sigmoid_ratio(F, x, s, a):  # 1 - 2s, f'' = s (1 - s) (1 - 2s)
    return 1.0 - 2.0 * s


def _erf_ratio(F, x, y, a):  # -2x, f'' = -2x f'
    return x * -2.0


def _relu_d1(F, x, y, a):
    return _positive(F, x)


def _fast_sigmoid(F, x):
    """Activation(sigmoid): MXNet's oneDNN kernel, several times faster than F.sigmoid."""
    return F.Activation(x, act_type='sigmoid')


def _softrelu_d1(F, x, y, a):  # d/dx log(1 + e^x) = sigmoid(x)
    return _fast_sigmoid(F, x)


def _softrelu_d2(F, x, y, a, d1=None):  # sigmoid'(x), d1 = sigmoid(x)
    s = _fast_sigmoid(F, x) if d1 is None else d1
    return F.elemwise_mul(s, 1.0 - s)


def _softsign_d1(F, x, y, a):  # 1 / (1 + |x|)^2
    return F.square(F.reciprocal(F.abs(x) + 1.0))


def _softsign_d2(F, x, y, a):  # -2 sign(x) / (1 + |x|)^3
    return F.elemwise_mul(F.sign(x) * -2.0, F._internal._power_scalar(F.abs(x) + 1.0,
                                                                    scalar=-3.0))


def _erf_d1(F, x, y, a):  # 2/sqrt(pi) exp(-x^2)
    return F.exp(F.square(x) * -1.0) * TWO_OVER_SQRT_PI


# ----- higher derivatives, for Taylor mode -----
def _horner(F, coefficients, z):
    """sum_i coefficients[i] z^i with F operators (coefficients ascending, not all zero)."""
    cs = np.trim_zeros(np.asarray(coefficients, dtype=float), 'b')
    if cs.size == 1:
        return F.ones_like(z) * float(cs[0])
    out = z * float(cs[-1])
    for i, c in enumerate(reversed(cs[:-1])):
        if c:
            out = out + float(c)
        if i < cs.size - 2:
            out = F.elemwise_mul(out, z)
    return out


def _autonomous(slope, first, z):
    """f^(m) = Q_m(z) for a z with dz/dx = slope(z) and f' = first(z), both polynomials
    in z (tanh: z = f, f' = 1 - z^2; softrelu: z = sigmoid): Q_(m+1) = Q_m'(z) slope(z)."""
    table = {1: np.array(first, dtype=float)}

    def q(m):
        if m not in table:
            table[m] = P.polymul(P.polyder(q(m - 1)), slope)
        return table[m]

    def nth(F, x, y, a, m):
        return _horner(F, q(m), z(F, x, y, a))
    return nth


def _rational(a_exp):
    """f' = (1 + x^2)^-a (arctan a = 1, arcsinh a = 1/2): f^(m) = R_m(x) (1 + x^2)^-(a+m-1),
    R_(m+1) = R_m' (1 + x^2) - 2 (a + m - 1) x R_m."""
    table = {1: np.array([1.0])}

    def r(m):
        if m not in table:
            prev = r(m - 1)
            table[m] = P.polysub(P.polymul(P.polyder(prev), [1.0, 0.0, 1.0]),
                                 P.polymul(prev, [0.0, 2.0 * (a_exp + m - 2)]))
        return table[m]

    def nth(F, x, y, attrs, m):
        return F.elemwise_mul(_horner(F, r(m), x), F._internal._power_scalar(
            F.square(x) + 1.0, scalar=-(a_exp + m - 1)))
    return nth


def _power_nth(p):
    """d^m/dx^m x^p = p (p-1) ... (p-m+1) x^(p-m); None once an integer power is exhausted."""
    def nth(F, x, y, a, m):
        falling = math.prod(p - i for i in range(m))
        if falling == 0.0:
            return None
        return F._internal._power_scalar(x, scalar=p - m) * falling
    return nth


def _log_nth(shift):
    def nth(F, x, y, a, m):  # (-1)^(m-1) (m-1)! (x + shift)^-m
        return F._internal._power_scalar(x + shift if shift else x, scalar=-float(m)) * (
            (-1.0) ** (m - 1) * math.factorial(m - 1))
    return nth


def _cycle(*derivatives):
    """f^(m) = derivatives[m % len](F, x, y)."""
    def nth(F, x, y, a, m):
        return derivatives[m % len(derivatives)](F, x, y)
    return nth


def _erf_nth(F, x, y, a, m):  # 2/sqrt(pi) (-1)^(m-1) H_(m-1)(x) exp(-x^2)
    h = hermite.herm2poly([0.0] * (m - 1) + [1.0]) * ((-1.0) ** (m - 1) * TWO_OVER_SQRT_PI)
    return F.elemwise_mul(_horner(F, h, x), F.exp(F.square(x) * -1.0))


def _gelu_nth(F, x, y, a, m):  # phi(x) (-1)^m (m He_(m-2)(x) - x He_(m-1)(x))
    he = lambda j: hermite_e.herme2poly([0.0] * j + [1.0])  # noqa: E731
    poly = P.polysub(he(m - 2) * float(m), P.polymul([0.0, 1.0], he(m - 1))) * (-1.0) ** m
    phi = F.exp(F.square(x) * -0.5) * INV_SQRT_2PI
    return F.elemwise_mul(_horner(F, poly, x), phi)


def _softsign_nth(F, x, y, a, m):  # (-1)^(m+1) m! sign(x)^(m+1) (1 + |x|)^-(m+1)
    r = F._internal._power_scalar(F.abs(x) + 1.0, scalar=-(m + 1.0)) * (
        (-1.0) ** (m + 1) * math.factorial(m))
    return F.elemwise_mul(F.sign(x), r) if m % 2 == 0 else r


def _ans(F, x, y, a):
    return y


def _value(F, x, y):
    return y


TANH_ODE, SIGMOID_ODE = [1.0, 0.0, -1.0], [0.0, 1.0, -1.0]  # f' = P(f)
_tanh_nth = _autonomous(TANH_ODE, TANH_ODE, _ans)
_sigmoid_nth = _autonomous(SIGMOID_ODE, SIGMOID_ODE, _ans)
_softrelu_nth = _autonomous([0.0, 1.0, -1.0], [0.0, 1.0], lambda F, x, y, a: _fast_sigmoid(F, x))
_sin_nth = _cycle(_value, lambda F, x, y: F.cos(x), lambda F, x, y: y * -1.0,
                  lambda F, x, y: F.cos(x) * -1.0)
_cos_nth = _cycle(_value, lambda F, x, y: F.sin(x) * -1.0, lambda F, x, y: y * -1.0,
                  lambda F, x, y: F.sin(x))

# ----- math functions -----
def_elementwise('sin', lambda F, x, y, a: F.cos(x), lambda F, x, y, a: y * -1.0, nth=_sin_nth)
def_elementwise('cos', lambda F, x, y, a: F.sin(x) * -1.0, lambda F, x, y, a: y * -1.0,
                nth=_cos_nth)
def_elementwise('tan', lambda F, x, y, a: F.square(y) + 1.0,
                lambda F, x, y, a: F.elemwise_mul(y * 2.0, F.square(y) + 1.0),
                nth=_autonomous([1.0, 0.0, 1.0], [1.0, 0.0, 1.0], _ans), ode=[1.0, 0.0, 1.0])
def_elementwise('exp', lambda F, x, y, a: y, lambda F, x, y, a: y,
                nth=lambda F, x, y, a, m: y, ode=[0.0, 1.0])
def_elementwise('expm1', lambda F, x, y, a: F.exp(x), lambda F, x, y, a: F.exp(x),
                nth=lambda F, x, y, a, m: F.exp(x))
def_elementwise('log', lambda F, x, y, a: F.reciprocal(x),
                lambda F, x, y, a: F.square(F.reciprocal(x)) * -1.0, nth=_log_nth(0.0))
def_elementwise('log1p', lambda F, x, y, a: F.reciprocal(x + 1.0),
                lambda F, x, y, a: F.square(F.reciprocal(x + 1.0)) * -1.0, nth=_log_nth(1.0))
def_elementwise('sqrt', lambda F, x, y, a: F.reciprocal(y) * 0.5,
                lambda F, x, y, a: F._internal._power_scalar(y, scalar=-3.0) * -0.25,
                nth=_power_nth(0.5))
def_elementwise('rsqrt', lambda F, x, y, a: F._internal._power_scalar(y, scalar=3.0) * -0.5,
                lambda F, x, y, a: F._internal._power_scalar(y, scalar=5.0) * 0.75,
                nth=_power_nth(-0.5))
def_elementwise('square', lambda F, x, y, a: x * 2.0, lambda F, x, y, a: F.ones_like(x) * 2.0,
                nth=_power_nth(2.0))
def_elementwise('reciprocal', lambda F, x, y, a: F.square(y) * -1.0,
                lambda F, x, y, a: F._internal._power_scalar(y, scalar=3.0) * 2.0,
                nth=_power_nth(-1.0))
def_elementwise('abs', lambda F, x, y, a: F.sign(x))
def_elementwise('tanh', _tanh_d1, ratio=_tanh_ratio, nth=_tanh_nth, ode=TANH_ODE)
def_elementwise('sigmoid', _sigmoid_d1, ratio=_sigmoid_ratio, nth=_sigmoid_nth,
                ode=SIGMOID_ODE)
def_elementwise('relu', _relu_d1)
def_elementwise('softsign', _softsign_d1, _softsign_d2, nth=_softsign_nth)
def_elementwise('erf', _erf_d1, ratio=_erf_ratio, nth=_erf_nth)
def_elementwise('arctan', lambda F, x, y, a: F.reciprocal(F.square(x) + 1.0),
                lambda F, x, y, a: F.elemwise_mul(x * -2.0,
                                                  F.square(F.reciprocal(F.square(x) + 1.0))),
                nth=_rational(1.0))
def_elementwise('sinh', lambda F, x, y, a: F.cosh(x), lambda F, x, y, a: y,
                nth=_cycle(_value, lambda F, x, y: F.cosh(x)))
def_elementwise('arcsinh', lambda F, x, y, a: F.rsqrt(F.square(x) + 1.0),
                lambda F, x, y, a: F.elemwise_mul(x * -1.0,
                                                  F.rsqrt(F.square(x) + 1.0) ** 3),
                nth=_rational(0.5))
def_elementwise('cosh', lambda F, x, y, a: F.sinh(x), lambda F, x, y, a: y,
                nth=_cycle(_value, lambda F, x, y: F.sinh(x)))

# ----- Activation(act_type=...) -----
def_elementwise('Activation:relu', _relu_d1)
def_elementwise('Activation:sigmoid', _sigmoid_d1, ratio=_sigmoid_ratio, nth=_sigmoid_nth,
                ode=SIGMOID_ODE)
def_elementwise('Activation:tanh', _tanh_d1, ratio=_tanh_ratio, nth=_tanh_nth, ode=TANH_ODE)
def_elementwise('Activation:softrelu', _softrelu_d1, _softrelu_d2, nth=_softrelu_nth)
def_elementwise('Activation:softsign', _softsign_d1, _softsign_d2, nth=_softsign_nth)

# ----- piecewise constant -----
def_zero('sign', 'round', 'rint', 'floor', 'ceil', 'trunc', 'fix', 'zeros_like', 'ones_like',
         'BlockGrad', 'stop_gradient', '_greater_scalar', '_greater_equal_scalar',
         '_lesser_scalar', '_lesser_equal_scalar', '_equal_scalar', '_not_equal_scalar',
         '_greater', '_greater_equal', '_lesser', '_lesser_equal', '_equal', '_not_equal',
         'broadcast_greater', 'broadcast_greater_equal', 'broadcast_lesser',
         'broadcast_lesser_equal', 'broadcast_equal', 'broadcast_not_equal')


# ----- LeakyReLU(act_type=...), evaluated through primitives (an entry's ``primal``) -----
def _negative_part(F, x):
    """expm1(min(x, 0)): the exponential branch without overflow for large x."""
    return F.expm1(F._internal._minimum_scalar(x, scalar=0.0))


def _slope(attrs):
    return float(attrs.get('slope', 0.25))


# The LeakyReLU family is written without `where`: in mxnet 1.9.1's imperative autograd,
# a recorded `where` whose value reaches only branches without gradient (a max-pooling
# mask, an unused primal output) made backward segfault (tests/test_layers.py).
def _positive_part(F, x):
    return F._internal._maximum_scalar(x, scalar=0.0)


def _leaky_primal(F, eqn, xs, memo):
    x, s = xs[0], _slope(eqn.attrs)
    return [_positive_part(F, x) + F._internal._minimum_scalar(x, scalar=0.0) * s]


def _leaky_d1(F, x, y, a):
    return _positive(F, x) * (1.0 - _slope(a)) + _slope(a)


def _exponential_unit(alpha, scale):
    """ELU-family y = scale * (x if x > 0 else alpha * (exp(x) - 1)): primal, f', f''."""
    def primal(F, eqn, xs, memo):
        x = xs[0]
        a = alpha(eqn.attrs)
        return [(_positive_part(F, x) + _negative_part(F, x) * a) * scale]

    def derivative(positive_branch):
        def d(F, x, y, attrs):  # at 0 the x <= 0 branch, as MXNet's own kernel
            p = _positive(F, x)
            e = F.exp(F._internal._minimum_scalar(x, scalar=0.0)) * (alpha(attrs) * scale)
            negative = F.elemwise_mul(1.0 - p, e)
            return negative + p * scale if positive_branch else negative
        return d
    return primal, derivative(True), derivative(False)


_elu_primal, _elu_d1, _elu_d2 = _exponential_unit(_slope, 1.0)
_selu_primal, _selu_d1, _selu_d2 = _exponential_unit(lambda attrs: SELU_ALPHA, SELU_LAMBDA)


def _gelu_primal(F, eqn, xs, memo):  # x * Phi(x), Phi the standard normal cdf
    x = xs[0]
    return [F.elemwise_mul(x, F.erf(x * (1.0 / SQRT_2)) * 0.5 + 0.5)]


def _gelu_d1(F, x, y, a):  # Phi(x) + x phi(x)
    phi = F.exp(F.square(x) * -0.5) * INV_SQRT_2PI
    return F.erf(x * (1.0 / SQRT_2)) * 0.5 + 0.5 + F.elemwise_mul(x, phi)


def _gelu_d2(F, x, y, a):  # phi(x) (2 - x^2)
    phi = F.exp(F.square(x) * -0.5) * INV_SQRT_2PI
    return F.elemwise_mul(phi, 2.0 - F.square(x))


def _from_second(d2):
    """f^(m) = f'' for every m >= 2 (the exponential branch of ELU and SELU)."""
    return lambda F, x, y, a, m: d2(F, x, y, a)


for _act, _primal, _d1, _d2, _nth in (
        ('leaky', _leaky_primal, _leaky_d1, None, None),
        ('elu', _elu_primal, _elu_d1, _elu_d2, _from_second(_elu_d2)),
        ('selu', _selu_primal, _selu_d1, _selu_d2, _from_second(_selu_d2)),
        ('gelu', _gelu_primal, _gelu_d1, _gelu_d2, _gelu_nth)):
    def_elementwise('LeakyReLU:' + _act, _d1, _d2, nth=_nth, primal=_primal)


def _prelu_gamma(F, eqn, gamma):
    """Gamma broadcast the way MXNet's prelu does: along axis 1 when it has C > 1 entries."""
    rank = len(eqn.in_shapes[0])
    if eqn.in_shapes[1] in ((1,), ()) or rank < 2:
        return F.reshape(gamma, shape=(1,) * max(rank, 1))
    return F.reshape(gamma, shape=(1, -1) + (1,) * (rank - 2))


def _prelu_slope(F, eqn, x, gamma):
    p = _positive(F, x)
    return F.broadcast_add(p, F.broadcast_mul(1.0 - p, _prelu_gamma(F, eqn, gamma)))


def _prelu_primal(F, eqn, xs, memo):
    x, gamma = xs
    return [F.elemwise_mul(x, _prelu_slope(F, eqn, x, gamma))]


define('LeakyReLU:prelu', primal=_prelu_primal, diff_args=(0,), curvature=no_curvature,
       taylor=no_higher_terms,
       jvp=lambda c, e, xs, ans, ts: [c.scale(ts[0], _prelu_slope(c.F, e, *xs))],
       vjp=lambda c, e, xs, ans, gs: [c.scale(gs[0], _prelu_slope(c.F, e, *xs)), None],
       not_differentiable='its gamma is a parameter', doc='prelu in its data input')


# ----- Cast: linear; the cotangent is cast back to the input's dtype -----
def _cast_vjp(c, eqn, xs, ans, gs):
    return [c.F.cast(gs[0], dtype=np.dtype(eqn.in_dtypes[0]).name)]


def_linear('Cast', _cast_vjp)
