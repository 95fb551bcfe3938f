# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Unary elementwise operators: one row per operator, f'(x) and f''(x).

Each row is ``def_elementwise(op, d1, d2)`` with ``d1(F, x, ans, attrs)`` = f'(x) and
``d2`` = f''(x) (for the forward Laplacian), or ``def_elementwise(op, d1, ratio=...)``
with f''/f' where that is cheap (tanh, sigmoid, erf); no ``d2`` means f'' = 0 (relu).
``ans`` = f(x) is reused where it is cheaper.
At points of non-differentiability the one-sided value of MXNet's own first-order
gradient is used (relu'(0) = 0, abs'(0) = sign(0) = 0).
Activation and LeakyReLU dispatch on ``act_type`` (keys ``'Activation:tanh'``...).
"""
import math

import numpy as np

from ..registry import def_elementwise, def_linear, def_zero, define, no_curvature

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


# ----- math functions -----
def_elementwise('sin', lambda F, x, y, a: F.cos(x), lambda F, x, y, a: y * -1.0)
def_elementwise('cos', lambda F, x, y, a: F.sin(x) * -1.0, lambda F, x, y, a: y * -1.0)
def_elementwise('tan', lambda F, x, y, a: F.square(y) + 1.0,
                lambda F, x, y, a: F.elemwise_mul(y * 2.0, F.square(y) + 1.0))
def_elementwise('exp', lambda F, x, y, a: y, lambda F, x, y, a: y)
def_elementwise('expm1', lambda F, x, y, a: F.exp(x), lambda F, x, y, a: F.exp(x))
def_elementwise('log', lambda F, x, y, a: F.reciprocal(x),
                lambda F, x, y, a: F.square(F.reciprocal(x)) * -1.0)
def_elementwise('log1p', lambda F, x, y, a: F.reciprocal(x + 1.0),
                lambda F, x, y, a: F.square(F.reciprocal(x + 1.0)) * -1.0)
def_elementwise('sqrt', lambda F, x, y, a: F.reciprocal(y) * 0.5,
                lambda F, x, y, a: F._internal._power_scalar(y, scalar=-3.0) * -0.25)
def_elementwise('rsqrt', lambda F, x, y, a: F._internal._power_scalar(y, scalar=3.0) * -0.5,
                lambda F, x, y, a: F._internal._power_scalar(y, scalar=5.0) * 0.75)
def_elementwise('square', lambda F, x, y, a: x * 2.0, lambda F, x, y, a: F.ones_like(x) * 2.0)
def_elementwise('reciprocal', lambda F, x, y, a: F.square(y) * -1.0,
                lambda F, x, y, a: F._internal._power_scalar(y, scalar=3.0) * 2.0)
def_elementwise('abs', lambda F, x, y, a: F.sign(x))
def_elementwise('tanh', _tanh_d1, ratio=_tanh_ratio)
def_elementwise('sigmoid', _sigmoid_d1, ratio=_sigmoid_ratio)
def_elementwise('relu', _relu_d1)
def_elementwise('softsign', _softsign_d1, _softsign_d2)
def_elementwise('erf', _erf_d1, ratio=_erf_ratio)
def_elementwise('arctan', lambda F, x, y, a: F.reciprocal(F.square(x) + 1.0),
                lambda F, x, y, a: F.elemwise_mul(x * -2.0,
                                                  F.square(F.reciprocal(F.square(x) + 1.0))))
def_elementwise('sinh', lambda F, x, y, a: F.cosh(x), lambda F, x, y, a: y)
def_elementwise('arcsinh', lambda F, x, y, a: F.rsqrt(F.square(x) + 1.0),
                lambda F, x, y, a: F.elemwise_mul(x * -1.0,
                                                  F.rsqrt(F.square(x) + 1.0) ** 3))
def_elementwise('cosh', lambda F, x, y, a: F.sinh(x), lambda F, x, y, a: y)

# ----- Activation(act_type=...) -----
def_elementwise('Activation:relu', _relu_d1)
def_elementwise('Activation:sigmoid', _sigmoid_d1, ratio=_sigmoid_ratio)
def_elementwise('Activation:tanh', _tanh_d1, ratio=_tanh_ratio)
def_elementwise('Activation:softrelu', _softrelu_d1, _softrelu_d2)
def_elementwise('Activation:softsign', _softsign_d1, _softsign_d2)

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


for _act, _primal, _d1, _d2 in (('leaky', _leaky_primal, _leaky_d1, None),
                                ('elu', _elu_primal, _elu_d1, _elu_d2),
                                ('selu', _selu_primal, _selu_d1, _selu_d2),
                                ('gelu', _gelu_primal, _gelu_d1, _gelu_d2)):
    def_elementwise('LeakyReLU:' + _act, _d1, _d2, primal=_primal)


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
       jvp=lambda c, e, xs, ans, ts: [c.scale(ts[0], _prelu_slope(c.F, e, *xs))],
       vjp=lambda c, e, xs, ans, gs: [c.scale(gs[0], _prelu_slope(c.F, e, *xs)), None],
       not_differentiable='its gamma is a parameter', doc='prelu in its data input')


# ----- Cast: linear; the cotangent is cast back to the input's dtype -----
def _cast_vjp(c, eqn, xs, ans, gs):
    return [c.F.cast(gs[0], dtype=np.dtype(eqn.in_dtypes[0]).name)]


def_linear('Cast', _cast_vjp)
