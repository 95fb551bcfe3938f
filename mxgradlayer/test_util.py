# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""check_grads: test derivative blocks against central finite differences in float64.

Like ``jax.test_util.check_grads``: along one random direction, the forward-mode
product must match a central difference of the function, and the reverse-mode product
must match it through the inner product <w, J v>.  Because derivative blocks are blocks,
``order=2`` repeats the check on the JVP and VJP blocks themselves (their own
derivatives are formed by the same rules), and so on.  Failure messages name the
composition that failed ("JVP of VJP of net").
"""
import numpy as np
import mxnet as mx

from mxnet import autograd, nd

__all__ = ['check_grads', 'check_param_grads', 'check_taylor', 'fd_directional', 'fd_jacobian',
           'fd_laplacian', 'relative_error', 'TOLERANCE']

TOLERANCE = {'float64': 1e-6, 'float32': 2e-2}


def _array_like(values, like):
    """``values`` (numpy) as an MXNet array of the front end of ``like`` (legacy or
    NumPy interface) and its dtype."""
    make = mx.np.array if isinstance(like, mx.np.ndarray) else nd.array
    return make(values, dtype=like.dtype)


def _scalar(x):
    return float(x.asnumpy().sum())


def relative_error(got, ref):
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    scale = max(np.max(np.abs(ref)) if ref.size else 0.0, 1e-3)
    return float(np.max(np.abs(got - ref)) / scale) if ref.size else 0.0


def _outputs(block, args):
    out = block(*args)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _with(args, pos, value):
    args = list(args)
    args[pos] = value
    return args


def fd_directional(block, args, wrt, v, eps=1e-6):
    """Central difference of every output of ``block`` along ``v`` in input ``wrt``."""
    x = args[wrt]
    plus = _outputs(block, _with(args, wrt, x + eps * v))
    minus = _outputs(block, _with(args, wrt, x - eps * v))
    return [(p - m) / (2 * eps) for p, m in zip(plus, minus)]


def _unit_directions(x):
    """The n = prod(x.shape[1:]) unit directions e_k of every sample of x."""
    in_shape = x.shape[1:]
    n = int(np.prod(in_shape)) if in_shape else 1
    for k in range(n):
        e = np.zeros((n,))
        e[k] = 1.0
        yield k, _array_like(np.broadcast_to(e.reshape((1,) + in_shape), x.shape), x)


def fd_jacobian(block, args, wrt, eps=1e-6):
    """Per-sample Jacobian (B, *out, *in) of a single-output block by central differences."""
    in_shape = args[wrt].shape[1:]
    cols = [fd_directional(block, args, wrt, v, eps)[0].asnumpy()
            for _, v in _unit_directions(args[wrt])]
    jac = np.stack(cols, axis=-1)
    return jac.reshape(jac.shape[:-1] + in_shape)


def fd_laplacian(jacobian_block, args, wrt, eps=1e-6):
    """Per-sample Laplacian from central differences of an exact Jacobian block."""
    in_shape = args[wrt].shape[1:]
    n = int(np.prod(in_shape)) if in_shape else 1
    total = 0.0
    for k, v in _unit_directions(args[wrt]):
        d = fd_directional(jacobian_block, args, wrt, v, eps)[0].asnumpy()
        d = d.reshape(d.shape[:len(d.shape) - len(in_shape)] + (n,))
        total = total + d[..., k]
    return total


def _random_like(x, rng):
    return _array_like(rng.standard_normal(x.shape), x)


def check_grads(block, args, wrt=0, order=2, modes=('fwd', 'rev'), rtol=None, eps=1e-6,
                hybridize=False, seed=0, reference=None, _label=None):
    """Check JVP and VJP of ``block`` at ``args`` against central differences.

    Parameters
    ----------
    block : gluon.HybridBlock
        A single-output block (the network, or a derivative block).
    args : list of NDArray
        Its inputs; the one at ``wrt`` must be floating point (float64 for tight checks).
    order : int
        1 checks first derivatives; 2 also checks the derivatives of the JVP and VJP
        blocks, which exercises every rule's own rules; and so on.
    modes : tuple of 'fwd' and 'rev'
    hybridize : bool
        Hybridize every derivative block before use.
    reference : gluon.HybridBlock, optional
        A float64-exact implementation of ``block`` to take finite differences of, for
        blocks whose own MXNet kernel is less accurate (MXNet's LeakyReLU variants
        compute in float32).  Derivative blocks evaluate such operators through exact
        primitives, so from order 2 on the derivative blocks themselves are the reference.

    Raises AssertionError naming the composition that failed.
    """
    from .blocks import JVP, VJP
    label = _label or getattr(block, 'name', type(block).__name__)
    rng = np.random.default_rng(seed)
    x = args[wrt]
    rtol = rtol if rtol is not None else TOLERANCE[np.dtype(x.dtype).name]
    v = _random_like(x, rng)
    fd = fd_directional(reference or block, args, wrt, v, eps)
    if len(fd) != 1:
        raise ValueError('check_grads takes a block with one output')
    fd = fd[0]
    w = _random_like(fd, rng)
    if 'fwd' in modes:
        jvp = JVP(block, wrt)
        if hybridize:
            jvp.hybridize()
        got = jvp(*args, v)
        err = relative_error(got.asnumpy(), fd.asnumpy())
        if not err <= rtol:
            raise AssertionError(f'JVP of {label}: relative error {err:.3g} > {rtol:g}')
        if order > 1:
            check_grads(jvp, list(args) + [v], wrt, order - 1, modes, rtol, eps, hybridize,
                        seed + 1, _label=f'JVP of {label}')
    if 'rev' in modes:
        vjp = VJP(block, wrt)
        if hybridize:
            vjp.hybridize()
        got = vjp(*args, w)
        lhs = _scalar(got * v)
        rhs = _scalar(w * fd)
        scale = max(float(np.abs((w * fd).asnumpy()).sum()), 1e-3)
        err = abs(lhs - rhs) / scale
        if not err <= rtol:
            raise AssertionError(f'VJP of {label}: <VJP(w), v> = {lhs:.10g} but '
                                 f'<w, J v> = {rhs:.10g} (relative error {err:.3g})')
        if order > 1:
            check_grads(vjp, list(args) + [w], wrt, order - 1, modes, rtol, eps, hybridize,
                        seed + 2, _label=f'VJP of {label}')


def check_param_grads(block, args, params=None, rtol=1e-5, eps=1e-6, seed=0, loss=None,
                      train_mode=True):
    """Parameter gradients of ``loss(block(*args))`` (default: a random weighted sum)
    from MXNet's first-order backward through the block, against central differences
    along a random direction in parameter space.  The differences are taken in the same
    mode (``train_mode``) as the gradient: BatchNorm uses batch statistics in training."""
    rng = np.random.default_rng(seed)
    params = params if params is not None else [
        p for p in block.collect_params().values() if p.grad_req != 'null']
    outs = _outputs(block, args)
    weights = [_random_like(o, rng) for o in outs]
    if loss is None:
        def loss(outputs):
            total = None
            for o, c in zip(outputs, weights):
                term = (o * c).sum()
                total = term if total is None else total + term
            return total
    for p in params:
        for g in p.list_grad():  # (Parameter.zero_grad fails on NumPy-mode arrays)
            g[:] = 0
    with autograd.record(train_mode=train_mode):
        value = loss(_outputs(block, args))
    try:
        value.backward()
    except mx.base.MXNetError as err:
        # the loss does not depend on any parameter (say, the Hessian of a piecewise-linear
        # network): every parameter gradient is zero, and the finite difference must be too
        # (imperative and hybridized MXNet say so in two different ways)
        if not any(m in str(err) for m in ('no inputs in computation graph that require',
                                           'not in a computational graph')):
            raise
    dirs = [_random_like(p.data(), rng) for p in params]
    analytic = sum(_scalar(p.grad() * d) for p, d in zip(params, dirs))
    originals = [p.data().copy() for p in params]

    def shifted(sign):
        for p, o, d in zip(params, originals, dirs):
            p.set_data(o + sign * eps * d)
        with autograd.record(train_mode=train_mode):
            return _scalar(loss(_outputs(block, args)))
    try:
        numeric = (shifted(1.0) - shifted(-1.0)) / (2 * eps)
    finally:
        for p, o in zip(params, originals):
            p.set_data(o)
    scale = max(abs(numeric), 1e-3)
    err = abs(analytic - numeric) / scale
    if not err <= rtol:
        raise AssertionError(f'parameter gradient of {getattr(block, "name", block)}: '
                             f'{analytic:.10g} vs finite difference {numeric:.10g} '
                             f'(relative error {err:.3g})')
    return err




def check_taylor(block, args, wrt=0, order=4, rtol=1e-6, eps=1e-5, hybridize=False, seed=0,
                 reference=None):
    """Check `Taylor` of a single-output ``block`` to ``order`` along a random direction v:
    coefficient 0 against the block, coefficient 1 against a central difference of the
    block, and each coefficient k >= 2 against a central difference of coefficient k - 1
    (d/ds D^(k-1)_v f(x + s v) = D^k_v f), so every order is checked by the one below it.
    ``reference``: a float64-exact twin of ``block`` for orders 0 and 1 (as in
    `check_grads`).  Returns the largest relative error; raises AssertionError naming
    the order."""
    from .blocks import Taylor
    rng = np.random.default_rng(seed)
    x = args[wrt]
    v = _random_like(x, rng)
    blk = Taylor(block, order=order, wrt=wrt)
    if hybridize:
        blk.hybridize()

    def series(value):
        return blk(*_with(args, wrt, value), v).asnumpy()
    got, plus, minus = series(x), series(x + eps * v), series(x - eps * v)
    worst = relative_error(got[0], _outputs(reference or block, args)[0].asnumpy())
    fd1 = fd_directional(reference or block, args, wrt, v, eps)[0].asnumpy()
    checks = [(1, got[1], fd1)] + [(k, got[k], (plus[k - 1] - minus[k - 1]) / (2 * eps))
                                   for k in range(2, order + 1)]
    for k, value, ref in checks:
        err = relative_error(value, ref)
        if not err <= rtol:
            raise AssertionError(f'Taylor coefficient {k} of {getattr(block, "name", block)}: '
                                 f'relative error {err:.3g} > {rtol:g}')
        worst = max(worst, err)
    return worst
