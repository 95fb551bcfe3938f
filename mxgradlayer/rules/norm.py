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


class _Channels:
    """Per-channel statistics and per-channel maps of an array (N, C, *space), written as
    matrix products rather than MXNet's reductions and broadcasts.

    Lowered to ``mean(x, axis=(0, 2, 3))`` and ``broadcast_mul(x, scale)``, a BatchNorm in
    training spent most of a gradient-penalty step in MXNet's reduction kernels: the
    forward ``sum`` over axes (0, 2, 3) of a (64, 16, 32, 32) float32 array takes 4.9 ms,
    and the backward of ``broadcast_mul`` by a (1, 16, 1, 1) scale (a reduction to the
    scale's shape) 23 ms, against 0.1 ms for an elementwise product of the same arrays
    (two cores).  Here a channel's mean over space is the product of the (N*C, S) rows
    with a constant column, and a channel's value spread over space the product of an
    (N*C, 1) column with a constant row: the same linear maps, whose derivatives and
    transposes are again matrix products, on GEMM kernels.  Only (N, C) arrays are
    reduced or broadcast along the batch axis.
    """

    def __init__(self, F, shape, dtype):
        self.F, self.shape = F, tuple(shape)
        self.channels = shape[1]
        self.spatial = int(np.prod(shape[2:]))
        self.dtype = np.dtype(dtype or 'float32').name

    def rows(self, x):
        """(N, C, *space) -> (N*C, S): the view every other method takes and returns.
        A BatchNorm reshapes once into it and once out of it (`unrows`): each reshape
        costs a copy in MXNet's backward, and once more in a derivative's."""
        return self.F.reshape(x, shape=(-1, self.spatial))

    def unrows(self, t):
        return self.F.reshape(t, shape=(-1,) + self.shape[1:])

    def sample_means(self, t):
        """(N*C, S) -> (N, C): each sample's and channel's mean over space."""
        F, S = self.F, self.spatial
        column = F.full(shape=(1, S), val=1.0 / S, dtype=self.dtype)
        means = F.FullyConnected(t, column, num_hidden=1, no_bias=True)
        return F.reshape(means, shape=(-1, self.channels))

    def mean(self, t):
        """(N*C, S) -> (1, C): the mean over batch and space."""
        return self.F.mean(self.sample_means(t), axis=0, keepdims=True)

    def spread(self, v, rows):
        """(1, C) -> (N*C, S): each channel's value everywhere in it; ``rows``, any
        (N, C) array, gives the batch size."""
        F, S = self.F, self.spatial
        column = F.reshape(F.broadcast_like(v, rows), shape=(-1, 1))
        return F.FullyConnected(column, F.ones(shape=(S, 1), dtype=self.dtype),
                                num_hidden=S, no_bias=True)


def _running_stats_mover(F, eqn, xs, batch_mean, batch_var):
    """A zero of shape (1, C) through which a backward pass moves the running statistics.

    MXNet moves them in BatchNorm's backward.  Its kernel runs here on a stand-in for
    the batch: the two samples mean - std and mean + std per channel (detached), whose
    mean and (biased) variance are the batch's, so the kernel moves the statistics as it
    would on the whole batch, at a negligible cost (on the batch itself, its forward and
    backward were a tenth of a ResNet-20 gradient-penalty step).  This zero, made of the
    kernel's output, joins the batch variance, which every value and derivative reads:
    any backward pass through them moves the statistics once, as Gluon's own layer does
    (and not at all outside training).  One element of the kernel's normalised output is
    read too (the kernel insists on writing it); by slice_axis, not slice: MXNet's oneDNN
    slice of a blocked layout divides by zero.  ``batch_mean``, ``batch_var``: (1, C)
    after reshaping, the batch's statistics along the BatchNorm's axis."""
    attrs = {k: v for k, v in eqn.raw_attrs.items() if not k.startswith('__')}
    attrs.update(output_mean_var='True', axis='1', attr={KEEP_MARK: '1'})
    centre = F.BlockGrad(F.reshape(batch_mean, shape=(1, -1)))
    std = F.sqrt(F.BlockGrad(F.reshape(batch_var, shape=(1, -1))))
    pair = F.reshape(F.concat(centre - std, centre + std, dim=0), shape=(2, -1, 1, 1))
    kernel = F.BatchNorm(pair, *xs[1:], **attrs)
    corner = kernel[0]
    for a in range(4):
        corner = F.slice_axis(corner, axis=a, begin=0, end=1)
    return F.broadcast_add(F.reshape(kernel[1], shape=(1, -1)),
                           F.reshape(corner, shape=(1, 1))) * 0.0


def _batch_norm(F, eqn, xs, options):
    _single_output(eqn)
    a = eqn.attrs
    shape = eqn.in_shapes[0]
    axis = a.get('axis', 1) % len(shape)
    running = a.get('use_global_stats', False) or options.training is False
    if not running and options.training is None and options.per_sample:
        raise SampleCouplingError(
            eqn.op, eqn.name, 'inside a hybridized parent the mode is chosen when its graph '
            'runs, and in training BatchNorm normalises by the batch: call the per-sample '
            'block outside the hybridized parent, or set use_global_stats=True')
    # Per-sample blocks fold K directions into the batch axis; there the broadcasting
    # form scales them all by one (1, C, 1, 1) array, where the matrix-product form would
    # repeat a full (N, C, *space) one K times (and they see running statistics only).
    if axis == 1 and len(shape) > 2 and None not in shape[1:] and not options.per_sample:
        return [_batch_norm_by_channels(F, eqn, xs, running, options)]
    return [_batch_norm_by_broadcasts(F, eqn, xs, running, options, axis)]


def _batch_norm_by_channels(F, eqn, xs, running, options):
    """BatchNorm along axis 1 of (N, C, *space), its per-channel parts by `_Channels`."""
    x, gamma, beta, mean, var_ = xs
    eps = float(eqn.attrs.get('eps', 1e-3))
    ch = _Channels(F, eqn.in_shapes[0], eqn.dtype)

    def row(p):
        return F.reshape(p, shape=(1, -1))

    def scaled(spread):
        scale = F.rsqrt(spread + eps)
        return scale if eqn.attrs.get('fix_gamma', True) else F.elemwise_mul(row(gamma), scale)

    if running:  # an affine map per channel
        rows = F.BlockGrad(F.reshape(F.slice_axis(F.reshape(x, shape=(0, 0, -1)), axis=2,
                                                  begin=0, end=1), shape=(0, 0)))
        scale = scaled(row(var_))
        shift = F.elemwise_sub(row(beta), F.elemwise_mul(row(mean), scale))
        return ch.unrows(F.elemwise_add(F.elemwise_mul(ch.rows(x), ch.spread(scale, rows)),
                                        ch.spread(shift, rows)))
    x = ch.rows(x)
    rows = ch.sample_means(x)
    batch_mean = F.mean(rows, axis=0, keepdims=True)
    # x + spread(-mean), not x - spread(mean): a derivative then negates a (1, C) array
    # instead of a full-size cotangent
    centred = F.elemwise_add(x, ch.spread(batch_mean * -1.0, rows))
    batch_var = ch.mean(F.square(centred))
    batch_var = F.elemwise_add(batch_var,
                               _running_stats_mover(F, eqn, xs, batch_mean, batch_var))
    if options.training:  # batch statistics (they couple the samples)
        scale = scaled(batch_var)
        shift = row(beta)
    else:
        # Traced into a graph that mxgradlayer does not rebuild when the mode changes (a
        # hybridized parent's): a training indicator read when the graph runs selects
        # the statistics.  Only (1, C) arrays differ between the two: with the running
        # ones, (x - m) s + b = (x - batch mean) s + (batch mean - m) s + b.
        on = F.reshape(_training_indicator(F, eqn.dtype), shape=(1, 1))
        off = 1.0 - on
        scale = scaled(F.elemwise_add(F.broadcast_mul(batch_var, on),
                                      F.broadcast_mul(row(var_), off)))
        offset = F.broadcast_mul(F.elemwise_sub(batch_mean, row(mean)), off)
        shift = F.elemwise_add(row(beta), F.elemwise_mul(offset, scale))
    return ch.unrows(F.elemwise_add(F.elemwise_mul(centred, ch.spread(scale, rows)),
                                    ch.spread(shift, rows)))


def _batch_norm_by_broadcasts(F, eqn, xs, running, options, axis):
    """BatchNorm along any axis (and of (N, C) arrays), by broadcasting operators."""
    x, gamma, beta, mean, var_ = xs
    rank = len(eqn.in_shapes[0])
    eps = float(eqn.attrs.get('eps', 1e-3))
    if eqn.attrs.get('fix_gamma', True):
        gamma = None
    if running:  # an affine map per channel
        scale = F.rsqrt(var_ + eps)
        scale = scale if gamma is None else F.broadcast_mul(gamma, scale)
        shift = F.elemwise_sub(beta, F.elemwise_mul(mean, scale))
        return F.broadcast_add(F.broadcast_mul(x, _per_channel(F, scale, rank, axis)),
                               _per_channel(F, shift, rank, axis))
    axes = tuple(i for i in range(rank) if i != axis)
    batch_mean = F.mean(x, axis=axes, keepdims=True)
    batch_var = F.mean(F.square(F.broadcast_sub(x, batch_mean)), axis=axes, keepdims=True)
    mover = _running_stats_mover(F, eqn, xs, batch_mean, batch_var)
    mover = _per_channel(F, F.reshape(mover, shape=(-1,)), rank, axis)
    batch_var = F.broadcast_add(batch_var, mover)
    if options.training:
        centre, spread = batch_mean, batch_var
    else:  # selected when the graph runs, as in `_batch_norm_by_channels`
        on = F.reshape(_training_indicator(F, eqn.dtype), shape=(1,) * rank)
        off = 1.0 - on
        centre = F.broadcast_add(F.broadcast_mul(batch_mean, on),
                                 F.broadcast_mul(_per_channel(F, mean, rank, axis), off))
        spread = F.broadcast_add(F.broadcast_mul(batch_var, on),
                                 F.broadcast_mul(_per_channel(F, var_, rank, axis), off))
    y = F.broadcast_mul(F.broadcast_sub(x, centre), F.rsqrt(spread + eps))
    return _affine(F, y, gamma, beta, rank, axis)


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
