# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Functional helpers for interactive use: take a net and NDArrays, return NDArrays.

Each builds the corresponding block once per (net, options) and calls it, so repeated
calls reuse the traced graph.  For training, put the blocks themselves in your network.
"""
from .blocks import HVP, InputGradient, JVP, VJP, Hessian, Laplacian

__all__ = ['grad', 'jvp', 'vjp', 'hvp', 'hessian', 'laplacian']


class _Cache:
    """Derivative blocks built for one net.  Kept on the net itself, so they live exactly as
    long as it does (a block holds its net: a weak-keyed global cache would keep every net
    alive); an object, not a dict, so Gluon does not take it for a container of children."""

    def __init__(self):
        self.blocks = {}


def _block(cls, net, **options):
    cache = net.__dict__.get('_mxgradlayer_cache')
    if cache is None:
        cache = _Cache()
        object.__setattr__(net, '_mxgradlayer_cache', cache)
    per_net = cache.blocks
    key = (cls, tuple(sorted(options.items())))
    if key not in per_net:
        per_net[key] = cls(net, **options)
    return per_net[key]


def grad(net, *inputs, wrt=0):
    """Gradient of ``net(*inputs).sum()`` by ``inputs[wrt]``, shaped like that input.

    Reverse mode (one backward sweep); see `InputGradient`.
    """
    return _block(InputGradient, net, wrt=wrt)(*inputs)


def jvp(net, *inputs_and_v, wrt=0):
    """``(net(*inputs), J v)``-style product: returns J v, shaped like ``net``'s output.

    Call as ``jvp(net, x, v)``; forward mode, see `JVP`.
    """
    return _block(JVP, net, wrt=wrt)(*inputs_and_v)


def vjp(net, *inputs_and_w, wrt=0):
    """w^T J, shaped like ``inputs[wrt]``.  Call as ``vjp(net, x, w)``; see `VJP`."""
    return _block(VJP, net, wrt=wrt)(*inputs_and_w)


def hvp(net, *inputs_and_v, wrt=0, mode='fwd_rev'):
    """H v for H the Hessian of ``net(*inputs).sum()`` by ``inputs[wrt]``.

    Forward-over-reverse by default (``mode='rev_rev'`` for reverse-over-reverse);
    see `HVP`.  Call as ``hvp(net, x, v)``.
    """
    return _block(HVP, net, wrt=wrt, mode=mode)(*inputs_and_v)


def hessian(net, *inputs, wrt=0):
    """Per-sample Hessian, shape (batch, *output_shape, *input_shape, *input_shape).

    The forward-mode Jacobian of the Jacobian, as ``jax.hessian`` is ``jacfwd(jacrev)``
    in spirit; see `Hessian`.
    """
    return _block(Hessian, net, wrt=wrt)(*inputs)


def laplacian(net, *inputs, wrt=0, method='forward'):
    """Per-sample Laplacian, shape (batch, *output_shape); forward Laplacian by default."""
    return _block(Laplacian, net, wrt=wrt, method=method)(*inputs)
