# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Normalisations and Dropout, lowered to primitives when a block is traced.

Rather than one hand-derived rule per normalisation (and another for each of its
derivatives), each is rewritten into the means, squares and reciprocal square roots it
is made of; the rules of those parts then give every derivative, to any order, and the
parameter gradients.  This also sidesteps MXNet's own kernels where they are wrong or
missing: inference-form BatchNorm's first-order backward uses batch statistics, and
InstanceNorm has no float64 kernel (see the project notes).

* ``BatchNorm``: outside training (or with ``use_global_stats``) an affine map per
  channel with the running statistics; in training it normalises by the batch's
  statistics, which couples the samples.  A block that owns its graph (called on
  NDArrays, imperative or hybridized itself) lowers it for the current mode and
  rebuilds when the mode changes (`blocks.base.DerivativeBlock.forward`).  Traced into a graph it
  does not own (a hybridized parent's), where the mode is only known when that graph
  runs, it computes both and a training indicator selects, which total-derivative blocks
  accept and per-sample blocks refuse.  The running statistics move as with Gluon's own
  layer: once per backward pass through the block in training (see `_batch_norm`).
* ``LayerNorm``, ``InstanceNorm``, ``GroupNorm``: statistics within each sample.
* ``Dropout``: the mask is drawn once, as ``Dropout(ones_like(x))`` (1 outside
  training), and multiplies the value and every derivative alike.
"""
import numpy as np

from ..errors import SampleCouplingError, UnsupportedOperatorError
from ..ir import KEEP_MARK
from ..registry import def_lowering


def _per_channel(F, p, rank, axis):
    """A (C,) parameter shaped to broadcast along ``axis`` of a rank-``rank`` tensor."""
    shape = [1] * rank
    shape[axis % rank] = -1
    return F.reshape(p, shape=tuple(shape))


def _standardise(F, x, axes, eps):
    """(x - mean) / sqrt(var + eps) over ``axes``, statistics of x itself."""
    centred = F.broadcast_sub(x, F.mean(x, axis=axes, keepdims=True))
    var = F.mean(F.square(centred), axis=axes, keepdims=True)
    return F.broadcast_mul(centred, F.rsqrt(var + eps))


def _affine(F, x, gamma, beta, rank, axis):
    if gamma is not None:
        x = F.broadcast_mul(x, _per_channel(F, gamma, rank, axis))
    return F.broadcast_add(x, _per_channel(F, beta, rank, axis))


def _single_output(eqn):
    if eqn.attrs.get('output_mean_var', False):
        raise UnsupportedOperatorError(eqn.op, eqn.name, 'lowering',
                                       'output_mean_var=True is not covered')


def _training_indicator(F, dtype):
    """1 while autograd is training and 0 otherwise, decided when the graph runs (also
    inside a hybridized parent built in the other mode): Dropout with p = 1/2 turns a 1
    into 0 or 2 in training and leaves it 1 otherwise."""
    one = F.ones(shape=(1,), dtype=np.dtype(dtype or 'float32').name)
    dropped = F.Dropout(one, p=0.5, attr={KEEP_MARK: '1'})
    return F._internal._not_equal_scalar(dropped, scalar=1.0)


def _batch_norm(F, eqn, xs, options):
    _single_output(eqn)
    x, gamma, beta, mean, var_ = xs
    a = eqn.attrs
    rank = len(eqn.in_shapes[0])
    axis = a.get('axis', 1) % rank
    eps = float(a.get('eps', 1e-3))
    if a.get('fix_gamma', True):
        gamma = None
    if a.get('use_global_stats', False) or options.training is False:
        # running statistics: an affine map per channel
        scale = F.rsqrt(var_ + eps)
        scale = scale if gamma is None else F.broadcast_mul(gamma, scale)
        shift = F.elemwise_sub(beta, F.elemwise_mul(mean, scale))
        return [F.broadcast_add(F.broadcast_mul(x, _per_channel(F, scale, rank, axis)),
                                _per_channel(F, shift, rank, axis))]
    if options.training is None and options.per_sample:
        raise SampleCouplingError(
            eqn.op, eqn.name, 'inside a hybridized parent the mode is chosen when its graph '
            'runs, and in training BatchNorm normalises by the batch: call the per-sample '
            'block outside the hybridized parent, or set use_global_stats=True')
    axes = tuple(i for i in range(rank) if i != axis)
    batch_mean = F.mean(x, axis=axes, keepdims=True)
    batch_var = F.mean(F.square(F.broadcast_sub(x, batch_mean)), axis=axes, keepdims=True)
    # MXNet moves the running statistics in BatchNorm's backward.  Its kernel runs here
    # on a detached copy of x, and a zero made of its output joins the variance, which
    # every value and derivative reads: any backward through them moves the statistics
    # once, as Gluon's own layer does (and not at all outside training).
    attrs = {k: v for k, v in eqn.raw_attrs.items() if not k.startswith('__')}
    attrs.update(output_mean_var='True', attr={KEEP_MARK: '1'})
    kernel = F.BatchNorm(F.BlockGrad(x), xs[1], beta, mean, var_, **attrs)
    # (its value is read too, one element of it: the kernel insists on writing it)
    # (slice_axis, not slice: MXNet's oneDNN slice of a blocked layout divides by zero)
    corner = kernel[0]
    for a_ in range(rank):
        corner = F.slice_axis(corner, axis=a_, begin=0, end=1)
    zero = F.broadcast_add(_per_channel(F, kernel[1], rank, axis), corner) * 0.0
    batch_var = F.broadcast_add(batch_var, zero)
    if options.training:  # batch statistics (they couple the samples)
        centre, spread = batch_mean, batch_var
    else:
        # Traced into a graph that mxgradlayer does not rebuild when the mode changes (a
        # hybridized parent's): a training indicator read when the graph runs selects
        # the statistics.  Both are computed, with their derivatives: in a gradient
        # penalty on a ResNet-18 this doubles the step, so it is only done here.
        on = F.reshape(_training_indicator(F, eqn.dtype), shape=(1,) * rank)
        off = 1.0 - on
        centre = F.broadcast_add(F.broadcast_mul(batch_mean, on),
                                 F.broadcast_mul(_per_channel(F, mean, rank, axis), off))
        spread = F.broadcast_add(F.broadcast_mul(batch_var, on),
                                 F.broadcast_mul(_per_channel(F, var_, rank, axis), off))
    y = F.broadcast_mul(F.broadcast_sub(x, centre), F.rsqrt(spread + eps))
    return [_affine(F, y, gamma, beta, rank, axis)]


def _layer_norm(F, eqn, xs, options):
    _single_output(eqn)
    x, gamma, beta = xs
    rank = len(eqn.in_shapes[0])
    axis = eqn.attrs.get('axis', -1) % rank
    eps = float(eqn.attrs.get('eps', 1e-5))
    return [_affine(F, _standardise(F, x, axis, eps), gamma, beta, rank, axis)]


def _instance_norm(F, eqn, xs, options):
    x, gamma, beta = xs
    rank = len(eqn.in_shapes[0])
    eps = float(eqn.attrs.get('eps', 1e-3))
    return [_affine(F, _standardise(F, x, tuple(range(2, rank)), eps), gamma, beta, rank, 1)]


def _group_norm(F, eqn, xs, options):
    """MXNet 1.9.1's GroupNorm: statistics per group, gamma and beta per group too."""
    _single_output(eqn)
    x, gamma, beta = xs
    groups = int(eqn.attrs.get('num_groups', 1))
    eps = float(eqn.attrs.get('eps', 1e-5))
    grouped = F.reshape(x, shape=(0, groups, -1))
    y = _affine(F, _standardise(F, grouped, 2, eps), gamma, beta, 3, 1)
    return [F.reshape_like(y, x)]


def _dropout(F, eqn, xs, options):
    attrs = {k: v for k, v in eqn.raw_attrs.items() if not k.startswith('__')}
    mask = F.BlockGrad(F.Dropout(F.ones_like(xs[0]), **attrs))
    return [F.elemwise_mul(xs[0], mask)]


def_lowering('BatchNorm', _batch_norm, mode_dependent=True,
             doc='affine with running statistics; batch statistics in training')
def_lowering('LayerNorm', _layer_norm, doc='standardised over one axis per sample')
def_lowering('InstanceNorm', _instance_norm, doc='standardised over space per channel')
def_lowering('GroupNorm', _group_norm, doc='standardised per group of channels')
def_lowering('Dropout', _dropout, doc='one mask for value and derivatives')
