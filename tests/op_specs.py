"""One row per registered operator: how to build it, on what inputs, in what domain.

``tests/test_rules.py`` runs the generic checker over every row; ``test_coverage`` in
``tests/test_closure.py`` fails when a registered operator has no row here.
"""
from collections import namedtuple
from math import erf as _erf, sqrt

import numpy as np

erf = np.vectorize(_erf)

Spec = namedtuple('Spec', 'op fn shapes low high wrt mx_ref away ref')


def spec(op, fn, shapes=((3, 4),), low=-2.0, high=2.0, wrt=None, mx_ref=True, away=False,
         ref=None):
    """``ref``: a float64-exact closed form to take finite differences of, where MXNet's
    own kernel is only float32-accurate."""
    return Spec(op, fn, tuple(shapes), low, high,
                tuple(range(len(shapes))) if wrt is None else tuple(wrt), mx_ref, away, ref)


SELU_ALPHA = float(np.float32(1.6732632423543772848170429916717))
SELU_LAMBDA = float(np.float32(1.0507009873554804934193349852946))


def _np_closed_form(f):
    """A reference evaluated in float64 numpy (not through any MXNet kernel)."""
    def fn(F, *xs):
        return F.array(f(*[x.asnumpy() for x in xs]), dtype='float64')
    return fn


def _instance_norm(x, g, b, eps=1e-3):
    centred = x - x.mean(axis=2, keepdims=True)
    return centred / np.sqrt((centred ** 2).mean(axis=2, keepdims=True) + eps) \
        * g[None, :, None] + b[None, :, None]


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


POS = dict(low=0.5, high=2.0)
BCAST = ((3, 4), (1, 4))
BCAST2 = ((3, 1), (3, 4))

SPECS = [
    # ----- elementwise unary -----
    spec('sin', lambda F, x: F.sin(x)),
    spec('cos', lambda F, x: F.cos(x)),
    spec('tan', lambda F, x: F.tan(x), low=-1.0, high=1.0),
    spec('exp', lambda F, x: F.exp(x)),
    spec('expm1', lambda F, x: F.expm1(x)),
    spec('log', lambda F, x: F.log(x), **POS),
    spec('log1p', lambda F, x: F.log1p(x), **POS),
    spec('sqrt', lambda F, x: F.sqrt(x), **POS),
    spec('rsqrt', lambda F, x: F.rsqrt(x), **POS),
    spec('square', lambda F, x: F.square(x)),
    spec('reciprocal', lambda F, x: F.reciprocal(x), **POS),
    spec('abs', lambda F, x: F.abs(x), away=True),
    spec('tanh', lambda F, x: F.tanh(x)),
    spec('sigmoid', lambda F, x: F.sigmoid(x)),
    spec('relu', lambda F, x: F.relu(x), away=True),
    spec('softsign', lambda F, x: F.softsign(x), away=True),
    # MXNet's own erf gradient is off by 3e-8 relative (float32 constant): FD only
    spec('erf', lambda F, x: F.erf(x), mx_ref=False),
    spec('arctan', lambda F, x: F.arctan(x)),
    spec('sinh', lambda F, x: F.sinh(x)),
    spec('arcsinh', lambda F, x: F.arcsinh(x)),
    spec('cosh', lambda F, x: F.cosh(x)),
    spec('Activation:relu', lambda F, x: F.Activation(x, act_type='relu'), away=True),
    spec('Activation:sigmoid', lambda F, x: F.Activation(x, act_type='sigmoid')),
    spec('Activation:tanh', lambda F, x: F.Activation(x, act_type='tanh')),
    spec('Activation:softrelu', lambda F, x: F.Activation(x, act_type='softrelu')),
    spec('Activation:softsign', lambda F, x: F.Activation(x, act_type='softsign'), away=True),
    # MXNet's own LeakyReLU kernels are float32-accurate (and SELU's backward is wrong):
    # these are checked against finite differences of the primitives they lower to
    spec('LeakyReLU:leaky', lambda F, x: F.LeakyReLU(x, act_type='leaky', slope=0.1),
         away=True, mx_ref=False, ref=_np_closed_form(lambda x: np.where(x > 0, x, 0.1 * x))),
    spec('LeakyReLU:elu', lambda F, x: F.LeakyReLU(x, act_type='elu', slope=0.7),
         away=True, mx_ref=False,
         ref=_np_closed_form(lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)))),
    spec('LeakyReLU:selu', lambda F, x: F.LeakyReLU(x, act_type='selu'), away=True,
         mx_ref=False, ref=_np_closed_form(
             lambda x: SELU_LAMBDA * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)))),
    spec('LeakyReLU:gelu', lambda F, x: F.LeakyReLU(x, act_type='gelu'), mx_ref=False,
         ref=_np_closed_form(lambda x: 0.5 * x * (1 + erf(x / sqrt(2))))),
    spec('LeakyReLU:prelu', lambda F, x, g: F.LeakyReLU(x, g, act_type='prelu'),
         shapes=((3, 4), (4,)), wrt=(0,), away=True, mx_ref=False,
         ref=_np_closed_form(lambda x, g: np.where(x > 0, x, g[None, :] * x))),
    # ----- binary -----
    spec('elemwise_add', lambda F, a, b: F.elemwise_add(a, b), ((3, 4), (3, 4))),
    spec('elemwise_sub', lambda F, a, b: F.elemwise_sub(a, b), ((3, 4), (3, 4))),
    spec('elemwise_mul', lambda F, a, b: F.elemwise_mul(a, b), ((3, 4), (3, 4))),
    spec('elemwise_div', lambda F, a, b: F.elemwise_div(a, b), ((3, 4), (3, 4)), **POS),
    spec('broadcast_add', lambda F, a, b: F.broadcast_add(a, b), BCAST),
    spec('broadcast_sub', lambda F, a, b: F.broadcast_sub(a, b), BCAST2),
    spec('broadcast_mul', lambda F, a, b: F.broadcast_mul(a, b), BCAST),
    spec('broadcast_div', lambda F, a, b: F.broadcast_div(a, b), BCAST2, **POS),
    spec('broadcast_plus', lambda F, a, b: F.broadcast_plus(a, b), ((2, 3, 4), (3, 1))),
    spec('broadcast_minus', lambda F, a, b: F.broadcast_minus(a, b), BCAST),
    spec('broadcast_maximum', lambda F, a, b: F.broadcast_maximum(a, b), BCAST),
    spec('broadcast_minimum', lambda F, a, b: F.broadcast_minimum(a, b), BCAST2),
    spec('broadcast_power', lambda F, a, b: F.broadcast_power(a, b), BCAST, **POS),
    spec('_plus', lambda F, a, b: F._internal._plus(a, b), ((3, 4), (3, 4))),
    spec('_minus', lambda F, a, b: F._internal._minus(a, b), ((3, 4), (3, 4))),
    spec('_mul', lambda F, a, b: F._internal._mul(a, b), ((3, 4), (3, 4))),
    spec('_div', lambda F, a, b: F._internal._div(a, b), ((3, 4), (3, 4)), **POS),
    spec('_maximum', lambda F, a, b: F._internal._maximum(a, b), ((3, 4), (3, 4))),
    spec('_minimum', lambda F, a, b: F._internal._minimum(a, b), ((3, 4), (3, 4))),
    spec('_power', lambda F, a, b: F._internal._power(a, b), ((3, 4), (3, 4)), **POS),
    # ----- scalar -----
    spec('_plus_scalar', lambda F, x: x + 1.5),
    spec('_minus_scalar', lambda F, x: x - 1.5),
    spec('_rminus_scalar', lambda F, x: 1.5 - x),
    spec('_mul_scalar', lambda F, x: x * 1.5),
    spec('_div_scalar', lambda F, x: x / 1.5),
    spec('_rdiv_scalar', lambda F, x: 1.5 / x, **POS),
    spec('_power_scalar', lambda F, x: x ** 3),
    spec('_rpower_scalar', lambda F, x: 1.5 ** x),
    spec('_maximum_scalar', lambda F, x: F.maximum(x, 0.25), away=True),
    spec('_minimum_scalar', lambda F, x: F.minimum(x, 0.25), away=True),
    spec('negative', lambda F, x: F.negative(x)),
    spec('_copy', lambda F, x: F._internal._copy(x)),
    spec('identity', lambda F, x: F.identity(x)),
    spec('clip', lambda F, x: F.clip(x, -1.0, 1.0), away=True),
    spec('where', lambda F, x, y: F.where(x > 0, x * y, y), ((3, 4), (3, 4)), away=True),
    spec('add_n', lambda F, a, b: F.add_n(a, b, a), ((3, 4), (3, 4))),
    # ----- reductions -----
    spec('sum', lambda F, x: F.sum(x, axis=1)),
    spec('sum_axis', lambda F, x: F.sum_axis(x, axis=(1, 2), keepdims=True), ((2, 3, 4),)),
    spec('mean', lambda F, x: F.mean(x, axis=-1, keepdims=True)),
    spec('softmax', lambda F, x: F.softmax(x)),
    spec('log_softmax', lambda F, x: F.log_softmax(x, axis=1), ((3, 4, 2),)),
    # ----- shape -----
    spec('Reshape', lambda F, x: F.reshape(x, shape=(0, 2, -1)), ((3, 4),)),
    spec('reshape', lambda F, x: F.reshape(x, shape=(-1, 2)), ((3, 4),)),
    spec('Flatten', lambda F, x: F.Flatten(x), ((3, 2, 2),)),
    spec('flatten', lambda F, x: F.flatten(x), ((3, 2, 2),)),
    spec('expand_dims', lambda F, x: F.expand_dims(x, axis=1)),
    spec('squeeze', lambda F, x: F.squeeze(x, axis=1), ((3, 1, 4),)),
    spec('transpose', lambda F, x: F.transpose(x, axes=(0, 2, 1)), ((3, 2, 4),)),
    spec('slice', lambda F, x: F.slice(x, begin=(None, 1), end=(None, 3)), ((3, 5),)),
    spec('crop', lambda F, x: F.crop(x, begin=(None, 1, 0), end=(None, 3, 2)), ((3, 4, 3),)),
    spec('slice_axis', lambda F, x: F.slice_axis(x, axis=1, begin=1, end=-1), ((3, 5),)),
    spec('Concat', lambda F, a, b: F.concat(a, b, dim=1), ((3, 2), (3, 3))),
    spec('stack', lambda F, a, b: F.stack(a, b, axis=1), ((3, 4), (3, 4))),
    spec('split', lambda F, x: F.split(x, num_outputs=2, axis=1)[1], ((3, 4),)),
    spec('SliceChannel', lambda F, x: F.SliceChannel(x, num_outputs=2, axis=1,
                                                     squeeze_axis=True)[0], ((3, 2, 3),)),
    spec('broadcast_like', lambda F, x, y: F.broadcast_like(x, y), ((3, 1), (3, 4)), wrt=(0,)),
    spec('broadcast_axis', lambda F, x: F.broadcast_axis(x, axis=1, size=3), ((3, 1),)),
    spec('broadcast_to', lambda F, x: F.broadcast_to(x, shape=(0, 4)), ((3, 1),)),
    spec('reshape_like', lambda F, x, y: F.reshape_like(x, y), ((3, 4), (3, 2, 2)), wrt=(0,)),
    # ----- linear algebra -----
    spec('FullyConnected', lambda F, x, w, b: F.FullyConnected(x, w, b, num_hidden=3),
         ((4, 5), (3, 5), (3,))),
    spec('dot', lambda F, a, b: F.dot(a, b), ((3, 4), (4, 2))),
    spec('batch_dot', lambda F, a, b: F.batch_dot(a, b, transpose_b=True), ((3, 2, 4), (3, 5, 4))),
    spec('max', lambda F, x: F.max(x, axis=1)),
    spec('min', lambda F, x: F.min(x, axis=(1, 2), keepdims=True), ((2, 3, 4),)),
    spec('norm', lambda F, x: F.norm(x, axis=1), **POS),
    # ----- sliding windows: the weight is a parameter, only the data is differentiated -----
    spec('Convolution', lambda F, x, w, b: F.Convolution(
        x, w, b, kernel=(3, 2), stride=(2, 1), pad=(1, 1), dilate=(1, 2), num_filter=4),
        ((2, 3, 6, 5), (4, 3, 3, 2), (4,)), wrt=(0,)),
    spec('Deconvolution', lambda F, x, w, b: F.Deconvolution(
        x, w, b, kernel=(3, 3), stride=(2, 2), pad=(1, 0), adj=(1, 0), num_filter=5, no_bias=False),
        ((2, 3, 3, 4), (3, 5, 3, 3), (5,)), wrt=(0,)),
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type='max'),
         ((2, 3, 4, 6),)),
    spec('im2col', lambda F, x: F.im2col(x, kernel=(2, 3), stride=(1, 2), pad=(1, 1)),
         ((2, 2, 4, 5),)),
    spec('col2im', lambda F, x: F.col2im(x, output_size=(4, 5), kernel=(2, 3), stride=(1, 2),
                                         pad=(1, 1)), ((2, 12, 15),)),
    spec('UpSampling', lambda F, x: F.UpSampling(x, scale=2, sample_type='nearest'),
         ((2, 3, 2, 3),)),
    # lowered when traced: 'full' windows by explicit padding, resampling by dot
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(3, 3), stride=(2, 2), pool_type='max',
                                           pooling_convention='full'), ((2, 3, 6, 5),)),
    spec('_contrib_AdaptiveAvgPooling2D', lambda F, x: F.contrib.AdaptiveAvgPooling2D(
        x, output_size=(2, 3)), ((2, 3, 5, 7),)),
    # MXNet computes the interpolation weights in float32 (also for float64 data), and
    # so do the lowered rules: its backward agrees to 5e-8 only, finite differences fully
    spec('_contrib_BilinearResize2D', lambda F, x: F.contrib.BilinearResize2D(
        x, height=5, width=3), ((2, 2, 3, 4),), mx_ref=False),
    # MXNet's SoftmaxActivation kernel is float32 only
    spec('SoftmaxActivation', lambda F, x: F.SoftmaxActivation(x), mx_ref=False,
         ref=_np_closed_form(lambda x: _softmax(x, -1))),
    spec('SwapAxis', lambda F, x: F.SwapAxis(x, dim1=1, dim2=2), ((2, 3, 4),)),
    # Cast has derivative 1 (as in every AD system; its rounding is not differentiated),
    # so the reference is the unrounded 2 x; the cotangent must come back in float64
    spec('Cast', lambda F, x: F.cast(F.cast(x, dtype='float32'), dtype='float64') + x,
         mx_ref=False, ref=_np_closed_form(lambda x: 2 * x)),
    # ----- padding, tiling, indexing (indices are constants or piecewise constant) -----
    spec('Pad', lambda F, x: F.pad(x, mode='constant', pad_width=(0, 0, 0, 0, 1, 2, 0, 1),
                                   constant_value=0.5), ((2, 3, 3, 4),)),
    spec('tile', lambda F, x: F.tile(x, reps=(1, 2, 3)), ((2, 3, 2),)),
    spec('repeat', lambda F, x: F.repeat(x, repeats=2, axis=1)),
    spec('take', lambda F, x: F.take(x, F.arange(start=3, stop=0, step=-1), axis=1)),
    spec('pick', lambda F, x: F.pick(x, F.floor(F.abs(F.sum(x, axis=1))), axis=1),
         ((3, 4),)),
    spec('Embedding', lambda F, w: F.Embedding(F.reshape(F.arange(start=0, stop=6),
                                                         shape=(3, 2)), w, input_dim=6,
                                               output_dim=3), ((6, 3),)),
    # ----- normalisation (lowered to primitives; outside training: running statistics) -----
    spec('BatchNorm', lambda F, x, g, b, m, v: F.BatchNorm(x, g, b, m, v, fix_gamma=False),
         ((3, 4, 2), (4,), (4,), (4,), (4,)), wrt=(0,), mx_ref=False, **POS),
    # MXNet's LayerNorm backward agrees with the exact gradient to 5e-10 only
    spec('LayerNorm', lambda F, x, g, b: F.LayerNorm(x, g, b), ((3, 4), (4,), (4,)), wrt=(0,),
         mx_ref=False),
    # MXNet's InstanceNorm has no float64 kernel
    spec('InstanceNorm', lambda F, x, g, b: F.InstanceNorm(x, g, b), ((2, 3, 4), (3,), (3,)),
         wrt=(0,), mx_ref=False, ref=_np_closed_form(_instance_norm)),
    spec('GroupNorm', lambda F, x, g, b: F.GroupNorm(x, g, b, num_groups=2),
         ((3, 4, 3), (2,), (2,)), wrt=(0,)),
    # outside training the identity (training: tests/test_layers.py)
    spec('Dropout', lambda F, x: F.Dropout(x, p=0.5), mx_ref=False),
]

# Variants of attributes exercised beyond the main row (same rule, other code paths).
VARIANTS = [
    spec('FullyConnected', lambda F, x, w: F.FullyConnected(x, w, num_hidden=3, no_bias=True,
                                                            flatten=False),
         ((2, 3, 5), (3, 5))),
    spec('FullyConnected', lambda F, x, w: F.FullyConnected(x, w, num_hidden=3, no_bias=True),
         ((2, 3, 2), (3, 6)), wrt=(0,)),
    spec('dot', lambda F, a, b: F.dot(a, b, transpose_a=True, transpose_b=True), ((4, 3), (2, 4))),
    spec('Concat', lambda F, a, b: F.concat(a, b, a, dim=0), ((3, 4), (3, 4))),
    spec('dot', lambda F, a, b: F.dot(a, b, transpose_b=True), ((3, 4), (2, 4))),
    spec('batch_dot', lambda F, a, b: F.batch_dot(a, b, transpose_a=True), ((3, 4, 2), (3, 4, 5))),
    spec('sum', lambda F, x: F.sum(x)),
    spec('sum', lambda F, x: F.sum(x, axis=0, exclude=True, keepdims=True), ((2, 3, 4),)),
    spec('mean', lambda F, x: F.mean(x)),
    spec('softmax', lambda F, x: F.softmax(x, axis=1), ((3, 4, 2),)),
    spec('log_softmax', lambda F, x: F.log_softmax(x)),
    spec('slice', lambda F, x: F.slice(x, begin=(1, None), end=(3, None)), ((4, 3),)),
    spec('broadcast_mul', lambda F, a, b: F.broadcast_mul(a, b), ((4,), (3, 4))),
    spec('_power_scalar', lambda F, x: x ** 0.5, low=0.5, high=2.0),
    spec('_power_scalar', lambda F, x: x ** 2),
    spec('transpose', lambda F, x: F.transpose(x), ((3, 2, 4),)),
    spec('max', lambda F, x: F.max(x, axis=0, exclude=True)),
    spec('norm', lambda F, x: F.norm(x, ord=1, axis=(1, 2), keepdims=True), ((2, 3, 4),),
         away=True),
    spec('norm', lambda F, x: F.norm(x)),
    spec('Convolution', lambda F, x, w: F.Convolution(x, w, kernel=(3,), num_filter=4,
                                                      num_group=2, no_bias=True, pad=(2,)),
         ((2, 4, 7), (4, 2, 3)), wrt=(0,)),
    spec('Deconvolution', lambda F, x, w: F.Deconvolution(
        x, w, kernel=(3,), stride=(3,), pad=(1,), num_filter=4, num_group=2, no_bias=True),
        ((2, 4, 3), (4, 2, 3)), wrt=(0,)),
    spec('Convolution', lambda F, x, w: F.Convolution(
        x, w, kernel=(2, 3, 2), stride=(2, 1, 1), pad=(1, 0, 1), dilate=(1, 1, 2),
        num_filter=4, num_group=2, no_bias=True), ((2, 4, 3, 3, 2), (4, 2, 2, 3, 2)), wrt=(0,)),
    spec('Convolution', lambda F, x, w: F.Convolution(
        x, w, kernel=(3, 2), stride=(2, 3), dilate=(2, 2), pad=(3, 0), num_filter=3,
        no_bias=True), ((2, 2, 7, 8), (3, 2, 3, 2)), wrt=(0,)),
    spec('reverse', lambda F, x: F.flip(x, axis=1), ((3, 4, 2),)),
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(3, 3), stride=(1, 2), pad=(1, 1),
                                           pool_type='max'), ((2, 3, 4, 5),), low=-3.0, high=-1.0),
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(3, 2), stride=(2, 1), pad=(1, 1),
                                           pool_type='avg', count_include_pad=False),
         ((2, 3, 5, 4),)),
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(2, 2), pad=(1, 0), pool_type='avg'),
         ((2, 3, 4, 4),)),
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(3,), stride=(2,), pool_type='sum'),
         ((2, 3, 7),)),
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type='max'),
         ((2, 3, 3, 4),)),
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type='avg'),
         ((2, 3, 3, 4),)),
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(2,), stride=(2,), pool_type='max'),
         ((2, 3, 6),)),
    spec('BatchNorm', lambda F, x, g, b, m, v: F.BatchNorm(x, g, b, m, v, axis=-1, eps=0.1),
         ((3, 2, 4), (4,), (4,), (4,), (4,)), wrt=(0,), mx_ref=False, **POS),
    spec('LayerNorm', lambda F, x, g, b: F.LayerNorm(x, g, b, axis=1, eps=0.01),
         ((2, 3, 4), (3,), (3,)), wrt=(0,), mx_ref=False),
    spec('Pad', lambda F, x: F.pad(x, mode='reflect', pad_width=(0, 0, 0, 0, 2, 1, 0, 2)),
         ((2, 3, 4, 3),)),
    spec('Pad', lambda F, x: F.pad(x, mode='edge', pad_width=(0, 0, 0, 0, 1, 0, 2, 3)),
         ((2, 2, 3, 2),)),
    spec('tile', lambda F, x: F.tile(x, reps=(3,)), ((3, 2),)),
    spec('repeat', lambda F, x: F.repeat(x, repeats=3, axis=-1), ((2, 3, 2),)),
    spec('take', lambda F, x: F.take(x, F.reshape(F.arange(start=-1, stop=5), shape=(2, 3)),
                                     axis=2, mode='wrap'), ((2, 3, 4, 2),)),
    spec('pick', lambda F, x: F.pick(x, F.floor(F.abs(F.sum(x, axis=2))) - 1, axis=2,
                                     keepdims=True, mode='wrap'), ((2, 3, 4),)),
    spec('pick', lambda F, x: F.pick(x, F.ones_like(F.sum(x, axis=1)), axis=1), ((2, 3, 4),)),
    spec('UpSampling', lambda F, x: F.UpSampling(x, scale=3, sample_type='nearest'),
         ((2, 2, 1, 3),)),
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(3, 2), stride=(2, 2), pad=(1, 1),
                                           pool_type='avg', pooling_convention='full'),
         ((2, 3, 6, 5),)),
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(2, 3), stride=(3, 2), pad=(1, 1),
                                           pool_type='avg', count_include_pad=False,
                                           pooling_convention='full'), ((2, 3, 6, 6),)),
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1),
                                           pool_type='max', pooling_convention='full'),
         ((2, 3, 6, 5),), low=-3.0, high=-1.0),
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(3,), stride=(2,), pool_type='sum',
                                           pooling_convention='full'), ((2, 3, 6),)),
    spec('Pooling', lambda F, x: F.Pooling(x, kernel=(2,), stride=(2,), pool_type='max',
                                           pooling_convention='full'), ((2, 3, 5),)),
    spec('_contrib_AdaptiveAvgPooling2D', lambda F, x: F.contrib.AdaptiveAvgPooling2D(
        x, output_size=1), ((2, 3, 4, 4),)),
    spec('_contrib_AdaptiveAvgPooling2D', lambda F, x: F.contrib.AdaptiveAvgPooling2D(
        x, output_size=(4, 2)), ((2, 3, 6, 4),)),
    spec('_contrib_BilinearResize2D', lambda F, x: F.contrib.BilinearResize2D(
        x, height=7, width=3, align_corners=False), ((2, 2, 3, 4),), mx_ref=False),
    spec('_contrib_BilinearResize2D', lambda F, x, y: F.contrib.BilinearResize2D(
        x, y, mode='like'), ((2, 2, 3, 4), (2, 2, 5, 6)), wrt=(0,), mx_ref=False),
    spec('SoftmaxActivation', lambda F, x: F.SoftmaxActivation(x, mode='channel'),
         ((2, 3, 2, 2),), mx_ref=False, ref=_np_closed_form(lambda x: _softmax(x, 1))),
    spec('SoftmaxActivation', lambda F, x: F.SoftmaxActivation(x), ((2, 3, 2),), mx_ref=False,
         ref=_np_closed_form(lambda x: _softmax(x, -1))),
    spec('SwapAxis', lambda F, x: F.swapaxes(x, dim1=0, dim2=2), ((2, 3, 4),)),
]



# ----- MXNet's NumPy interface (npx.set_np()): each operator it emits, built through
# mx.np / mx.npx; tests/test_numpy_mode.py runs them in NumPy mode.  The row's op is the
# operator the traced graph holds (it is lowered to the legacy rows above). -----
def _np_where(F, x, y):
    return F.np.where(x > 0, x, y)


NUMPY_SPECS = [
    spec('_npi_add', lambda F, x, y: x + y, BCAST),
    spec('_npi_subtract', lambda F, x, y: x - y, BCAST2),
    spec('_npi_multiply', lambda F, x, y: x * y, BCAST),
    spec('_npi_true_divide', lambda F, x, y: x / y, BCAST, away=True),
    spec('_npi_power', lambda F, x, y: x ** y, BCAST, **POS),
    spec('_npi_add_scalar', lambda F, x: x + 1.5),
    spec('_npi_subtract_scalar', lambda F, x: x - 1.5),
    spec('_npi_rsubtract_scalar', lambda F, x: 1.5 - x),
    spec('_npi_multiply_scalar', lambda F, x: x * -2.5),
    spec('_npi_true_divide_scalar', lambda F, x: x / 4.0),
    spec('_npi_rtrue_divide_scalar', lambda F, x: 2.0 / x, away=True),
    spec('_npi_power_scalar', lambda F, x: x ** 3),
    spec('_npi_rpower_scalar', lambda F, x: 2.0 ** x),
    spec('_npi_negative', lambda F, x: F.np.negative(x)),
    spec('_npi_exp', lambda F, x: F.np.exp(x)),
    spec('_npi_expm1', lambda F, x: F.np.expm1(x)),
    spec('_npi_log', lambda F, x: F.np.log(x), **POS),
    spec('_npi_log1p', lambda F, x: F.np.log1p(x), **POS),
    spec('_npi_sqrt', lambda F, x: F.np.sqrt(x), **POS),
    spec('_npi_square', lambda F, x: F.np.square(x)),
    spec('_npi_reciprocal', lambda F, x: F.np.reciprocal(x), away=True),
    spec('_npi_absolute', lambda F, x: F.np.abs(x), away=True),
    spec('_npi_sin', lambda F, x: F.np.sin(x)),
    spec('_npi_cos', lambda F, x: F.np.cos(x)),
    spec('_npi_tan', lambda F, x: F.np.tan(x), low=-1.0, high=1.0),
    spec('_npi_arctan', lambda F, x: F.np.arctan(x)),
    spec('_npi_sinh', lambda F, x: F.np.sinh(x)),
    spec('_npi_cosh', lambda F, x: F.np.cosh(x)),
    spec('_npi_arcsinh', lambda F, x: F.np.arcsinh(x)),
    spec('_npi_tanh', lambda F, x: F.np.tanh(x)),
    spec('_npx_sigmoid', lambda F, x: F.npx.sigmoid(x)),
    spec('_npx_relu', lambda F, x: F.npx.relu(x), away=True),
    spec('_npi_hypot', lambda F, x, y: F.np.hypot(x, y), ((3, 4), (3, 4)), away=True),
    spec('_np_copy', lambda F, x: F.np.copy(x)),
    spec('_np_sum', lambda F, x: F.np.sum(x, axis=1, keepdims=True)),
    spec('_npi_mean', lambda F, x: F.np.mean(x, axis=1)),
    spec('_np_max', lambda F, x: F.np.max(x, axis=1)),
    spec('_np_min', lambda F, x: F.np.min(x, axis=-1, keepdims=True)),
    spec('_npi_var', lambda F, x: F.np.var(x, axis=1)),
    spec('_npi_std', lambda F, x: F.np.std(x, axis=1, ddof=1), ),
    spec('_npi_average', lambda F, x: F.np.average(x, axis=1)),
    spec('_np_reshape', lambda F, x: F.np.reshape(x, (-1, 2, 2))),
    spec('_np_reshape', lambda F, x: F.np.reshape(x, (-1, 2)) * x.reshape(-1)[:2]),
    spec('_npx_reshape', lambda F, x: F.npx.reshape(x, (-2, -5, -6, 2, 3)), ((3, 2, 2, 6),)),
    spec('_np_transpose', lambda F, x: F.np.transpose(x, (0, 2, 1)), ((3, 2, 4),)),
    spec('_np_squeeze', lambda F, x: F.np.squeeze(x, axis=1), ((3, 1, 4),)),
    spec('_npi_concatenate', lambda F, x, y: F.np.concatenate([x, y], axis=1),
         ((3, 4), (3, 2))),
    spec('_npi_stack', lambda F, x, y: F.np.stack([x, y], axis=1), ((3, 4), (3, 4))),
    spec('_split_v2', lambda F, x: F.np.split(x, [1, 3], axis=1)[1] * F.np.split(x, 2, axis=1)[0]),
    spec('_npi_broadcast_to', lambda F, x: F.np.broadcast_to(x, (3, 2, 4)), ((3, 1, 4),)),
    spec('_npi_flip', lambda F, x: F.np.flip(x, 1)),
    spec('_npi_where', _np_where, ((3, 4), (3, 4)), away=True),
    spec('_npi_where_rscalar', lambda F, x: F.np.where(x > 0, x, 0.5), away=True),
    spec('_npi_where_lscalar', lambda F, x: F.np.where(x > 0, -1.5, x * x), away=True),
    spec('_npi_matmul', lambda F, x, y: F.np.matmul(x, y), ((3, 4), (4, 2))),
    spec('_np_dot', lambda F, x, y: F.np.dot(x, y), ((3, 4), (4, 2))),
    spec('_npi_full_like', lambda F, x: x * F.np.ones_like(x) + F.np.zeros_like(x)),
    # einsum: products of the operands, contractions, outer products, sums, transposes
    spec('_npi_einsum', lambda F, x: F.np.einsum('ij,ij->i', x, x)),
    spec('_npi_einsum', lambda F, x, y: F.np.einsum('ij,jk', x, y), ((3, 4), (4, 2))),
    spec('_npi_einsum', lambda F, x, y: F.np.einsum('bij,bjk->bki', x, y),
         ((3, 2, 4), (3, 4, 2))),
    spec('_npi_einsum', lambda F, x, w, y: F.np.einsum('bi,ij,bj->b', x, w, y),
         ((3, 4), (4, 4), (3, 4))),
    spec('_npi_einsum', lambda F, q, k: F.np.einsum('bqd,bkd->bqk', q, k),
         ((2, 3, 4), (2, 5, 4))),
    spec('_npi_einsum', lambda F, x, y: F.np.einsum('bi,bj->bij', x, y), ((3, 2), (3, 4))),
    spec('_npi_einsum', lambda F, x: F.np.sin(F.np.einsum('bij->jb', x)), ((3, 2, 4),)),
    # (a full contraction has shape () in NumPy mode and (1,) in the derived graphs, which
    # use legacy operators: README, known issues)
    spec('_npi_einsum', lambda F, x, y: F.np.reshape(F.np.einsum('ij,ij->', x, y), (1,)),
         ((3, 4), (3, 4))),
    # the npx layers are legacy kernels under other names: their rows check them in
    # NumPy mode (the op is the legacy name the traced graph holds)
    spec('softmax', lambda F, x: F.npx.softmax(x, axis=-1)),
    spec('log_softmax', lambda F, x: F.npx.log_softmax(x, axis=-1)),
    spec('LayerNorm', lambda F, x, g, b: F.npx.layer_norm(x, g, b, axis=-1),
         ((3, 4), (4,), (4,))),
    spec('LeakyReLU:leaky', lambda F, x: F.npx.leaky_relu(x, slope=0.1), away=True,
         ref=lambda F, x: F.np.where(x > 0, x, 0.1 * x)),  # (MXNet's kernel: float32)
    spec('Activation:softrelu', lambda F, x: F.npx.activation(x, act_type='softrelu')),
]
for _name in ('sign', 'rint', 'floor', 'ceil', 'trunc', 'fix'):  # derivative zero
    NUMPY_SPECS.append(spec('_npi_' + _name, lambda F, x, f=_name: x * getattr(F.np, f)(x),
                            away=True))
for _op, _cmp in (('greater', lambda x, y: x > y), ('greater_equal', lambda x, y: x >= y),
                  ('less', lambda x, y: x < y), ('less_equal', lambda x, y: x <= y),
                  ('equal', lambda x, y: x == y), ('not_equal', lambda x, y: x != y)):
    NUMPY_SPECS.append(spec('_npi_' + _op, lambda F, x, y, c=_cmp: F.np.where(c(x, y), x, y),
                            ((3, 4), (3, 4)), away=True))
    NUMPY_SPECS.append(spec(f'_npi_{_op}_scalar',
                            lambda F, x, c=_cmp: F.np.where(c(x, 0.25), x, x * x), away=True))
