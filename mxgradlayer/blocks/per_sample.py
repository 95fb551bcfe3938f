# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Per-sample blocks: the derivative of sample b's output by sample b's input.

`Jacobian`, `Hessian`, `Laplacian` and `Divergence` need every direction of the input,
and push all of them through the network in one batched sweep: the n unit directions of
a (B, *s) input are folded into the batch axis as one (n*B, *s) tangent, so every
operator that acts sample by sample serves all directions in one call.  An operator that
mixes the samples of a batch is refused (`SampleCouplingError`), unless
``couple_samples=True`` asks for derivatives along shifts of the whole batch.
"""
import mxnet as mx

from ..errors import InputSpecError
from ..tracing import numpy_mode
from ..transform import forward, reverse, zeros_folded
from .base import PerSampleBlock, call_block, check_choice, legacy_view, numpy_view, prod
from .total import InputGradient

__all__ = ['Jacobian', 'Hessian', 'Laplacian', 'Divergence']


def _eye_directions(F, x, wrt):
    """All n unit directions of x (B, *s), folded: (n*B, *s)."""
    eye = F.reshape(F.eye(wrt.size, dtype=wrt.dtype), shape=(wrt.size, 1) + wrt.shape)
    like = F.expand_dims(x, axis=0)
    return F.reshape(F.broadcast_like(eye, like, lhs_axes=(1,), rhs_axes=(1,)), shape=(-3, -2))


def _unit_direction(F, x, wrt, k):
    """Direction e_k of x (B, *s), for every sample."""
    row = F.slice_axis(F.eye(wrt.size, dtype=wrt.dtype), axis=0, begin=k, end=k + 1)
    row = F.reshape(row, shape=(1,) + wrt.shape)
    return F.broadcast_like(row, x, lhs_axes=(0,), rhs_axes=(0,))


def _all_directions(block, F, graph, inputs, params, wrt, laplacian=False):
    """Push all n unit directions of the input ``wrt`` forward: (outs, folded tangents,
    Laplacians).

    One batched sweep (K = n folded into the batch axis) when the traced function acts
    sample by sample on a plain batch.  When it is itself a per-sample block, its graph
    already folds directions into the batch axis and folding again would mix them, so
    the n directions are pushed in n sweeps of one direction each and stacked; the same
    when the user lets samples interact (``couple_samples``), where a batch statistic
    must see one direction at a time.
    """
    p, n, x = wrt.position, wrt.size, inputs[wrt.position]
    if not (block._couple or isinstance(block._differentiated(), PerSampleBlock)):
        return forward(F, graph, inputs, params, {p: _eye_directions(F, x, wrt)}, K=n,
                       laplacian=laplacian, per_sample=True)
    # the inner block checked its own network; its folding operators are not couplings
    sweeps = [forward(F, graph, inputs, params, {p: _unit_direction(F, x, wrt, k)},
                      laplacian=laplacian, per_sample=False) for k in range(n)]
    outs = sweeps[0][0]
    tans, laps = [], []
    for j, o in enumerate(outs):
        parts = [sw[1][j] if sw[1][j] is not None else F.zeros_like(o) for sw in sweeps]
        tans.append(F.concat(*parts, dim=0) if n > 1 else parts[0])
        if laplacian:
            lap = None
            for sw in sweeps:
                if sw[2][j] is not None:
                    lap = sw[2][j] if lap is None else F.elemwise_add(lap, sw[2][j])
            laps.append(lap)
    return outs, tans, (laps if laplacian else None)


def _unfold_to_end(F, t, n, lead_shape, tail_shape):
    """(n*B, *lead) -> (B, *lead, *tail) with the n directions moved last."""
    u = F.reshape(t, shape=(-4, n, -1, -2))
    rank = 2 + len(lead_shape)
    u = F.transpose(u, axes=tuple(range(1, rank)) + (0,))
    return F.reshape(u, shape=(-1,) + tuple(lead_shape) + tuple(tail_shape))


def _one_or_tuple(res):
    return res[0] if len(res) == 1 else tuple(res)


class Jacobian(PerSampleBlock):
    r"""Per-sample Jacobian of a network with respect to one input.

    .. math:: J_{b, i, j} = \frac{\partial\, \mathrm{net}(x)_{b, i}}{\partial x_{b, j}}

    Shapes exclude the batch axis: a network from (B, n) to (B, m) gives (B, m, n).  All
    directions are propagated in one batched sweep, forward mode when the input has no
    more elements than the output and reverse mode otherwise (``mode='auto'``).

    Parameters
    ----------
    net : gluon.HybridBlock
        The network; sample b of its outputs must depend only on sample b of its inputs
        (a network that mixes samples is refused with `SampleCouplingError`).
    wrt : int, default 0
        Position of the input to differentiate by.
    mode : {'auto', 'forward', 'reverse'}, default 'auto'
        Forward mode pushes the n input directions, reverse mode pulls the m output
        directions back; ``'auto'`` takes the fewer.
    couple_samples : bool, default False
        For a network whose samples interact (BatchNorm in training mode): take every
        derivative with respect to moving all samples of the batch together along each
        input direction, instead of refusing the network.  Sample b then gets
        sum_j d net(x)_b / d x_j, which equals the per-sample derivative exactly when
        samples do not interact.  Costs one forward sweep per input direction instead of
        one batched sweep; forward mode only.

    Inputs:
        - **inputs**: the inputs of ``net``, each of shape (batch, ...).

    Outputs:
        - **jac**: shape (batch, \*output_shape, \*input_shape); a tuple for several outputs.

    Examples
    --------
    >>> import mxnet as mx, mxgradlayer as mg
    >>> net = mx.gluon.nn.HybridLambda(lambda F, x: F.concat(x * 2, F.square(x), dim=1))
    >>> mg.Jacobian(net)(mx.nd.array([[3.0]]))
    <BLANKLINE>
    [[[2.]
      [6.]]]
    <NDArray 1x2x1 @cpu(0)>

    References
    ----------
    A. Griewank and A. Walther, "Evaluating Derivatives: Principles and Techniques of
    Algorithmic Differentiation", 2nd ed., SIAM (2008), chapters 3 and 7.
    """

    def __init__(self, net, wrt=0, mode='auto', couple_samples=False, **kwargs):
        check_choice('mode', mode, ('auto', 'forward', 'reverse'))
        if couple_samples and mode == 'reverse':
            raise ValueError("couple_samples=True takes derivatives along shifts of the "
                             "whole batch, a forward-mode quantity: use mode='forward' "
                             "or 'auto'")
        super().__init__(net, wrt, couple_samples, **kwargs)
        self._mode = mode

    def _compute(self, F, graph, inputs, vectors, params):
        wrt = self._wrt_input(graph, inputs)
        out_shapes = self._output_shapes(graph)
        m = sum(prod(s) for s in out_shapes)
        mode = self._mode
        if mode == 'auto':
            mode = ('forward' if (wrt.size <= m or len(graph.heads) > 1 or self._couple
                                  or isinstance(self._differentiated(), PerSampleBlock))
                    else 'reverse')
        if mode == 'reverse' and len(graph.heads) > 1:
            raise InputSpecError("Jacobian(mode='reverse') needs a network with one output")
        n, x = wrt.size, inputs[wrt.position]
        if mode == 'forward':
            outs, tans, _ = _all_directions(self, F, graph, inputs, params, wrt)
            return _one_or_tuple([
                _unfold_to_end(F, zeros_folded(F, o, n) if t is None else t, n, s, wrt.shape)
                for o, t, s in zip(outs, tans, out_shapes)])
        (s,) = out_shapes
        # The seeds take their batch size from the input, not from the output: they must
        # not depend on the output (with mxnet 1.9.1 a backward pass through a seed built
        # from the output by broadcast_like segfaulted in the property-based tests).
        seeds = _eye_directions(F, x, wrt._replace(shape=s, size=m))
        _, grads = reverse(F, graph, inputs, params, [wrt.position], lambda outs: [seeds],
                           K=m, per_sample=True)
        g = zeros_folded(F, x, m) if grads[0] is None else grads[0]
        u = F.reshape(g, shape=(-4, m, -1, -2))
        u = F.transpose(u, axes=(1, 0) + tuple(range(2, 2 + len(wrt.shape))))
        return F.reshape(u, shape=(-1,) + tuple(s) + tuple(wrt.shape))


class _OutputComponent(mx.gluon.HybridBlock):
    """Element ``j`` of the flattened outputs of ``net``, shape (batch, 1)."""

    def __init__(self, net, j, **kwargs):
        super().__init__(**kwargs)
        self.net, self._j = net, j

    def hybrid_forward(self, F, *args):
        out = self.net(*args)
        outs = out if isinstance(out, (list, tuple)) else [out]
        flat = [F.reshape(legacy_view(o), shape=(0, -1)) for o in outs]
        flat = flat[0] if len(flat) == 1 else F.concat(*flat, dim=1)
        component = F.slice_axis(flat, axis=1, begin=self._j, end=self._j + 1)
        return numpy_view(component) if numpy_mode() else component


class Hessian(PerSampleBlock):
    r"""Per-sample Hessian of every output element with respect to one input.

    .. math:: H_{b, i, j, k} = \frac{\partial^2\, \mathrm{net}(x)_{b, i}}
              {\partial x_{b, j}\, \partial x_{b, k}}

    Forward over reverse: the forward-mode Jacobian (all n directions in one batched
    sweep) of the reverse-mode gradient of each output element.

    Parameters
    ----------
    net : gluon.HybridBlock
        The network; its samples must not interact (see ``couple_samples``).
    wrt : int, default 0
        Position of the input to differentiate by.
    couple_samples : bool, default False
        For a network whose samples interact (BatchNorm in training mode): second
        derivatives along shifts of the whole batch, as in `Jacobian`, instead of
        refusing the network.

    Inputs:
        - **inputs**: the inputs of ``net``, each of shape (batch, ...).

    Outputs:
        - **hess**: shape (batch, \*output_shape, \*input_shape, \*input_shape); a tuple
          for several outputs.

    Examples
    --------
    >>> import mxnet as mx, mxgradlayer as mg
    >>> net = mx.gluon.nn.HybridLambda(  # x0 x1
    ...     lambda F, x: F.slice_axis(x, axis=1, begin=0, end=1)
    ...     * F.slice_axis(x, axis=1, begin=1, end=2))
    >>> mg.Hessian(net)(mx.nd.array([[2.0, 3.0]]))
    <BLANKLINE>
    [[[[0. 1.]
       [1. 0.]]]]
    <NDArray 1x1x2x2 @cpu(0)>

    References
    ----------
    A. Griewank and A. Walther, "Evaluating Derivatives", 2nd ed., SIAM (2008),
    chapter 5 (second-order adjoints).
    """

    def __init__(self, net, wrt=0, couple_samples=False, **kwargs):
        super().__init__(net, wrt, couple_samples, **kwargs)
        self._jacobians = {}

    def _component_jacobian(self, j):
        if j not in self._jacobians:  # built on first use, when the output size is known
            component, w = _OutputComponent(self.net, j), self._wrt[0]
            if self._couple:  # along batch shifts the reverse-mode gradient is no help
                inner = Jacobian(component, w, mode='forward', couple_samples=True)
            else:
                inner = InputGradient(component, w)
            blk = Jacobian(inner, w, mode='forward', couple_samples=self._couple)
            self.register_child(blk, f'hessian_component{j}')
            self._jacobians[j] = blk
        return self._jacobians[j]

    def _compute(self, F, graph, inputs, vectors, params):
        wrt = self._wrt_input(graph, inputs)
        square = wrt.shape + wrt.shape
        rows, start = [], 0
        for shape in self._output_shapes(graph):
            m = prod(shape)
            parts = [call_block(self._component_jacobian(start + j), *inputs)
                     for j in range(m)]
            parts = [F.expand_dims(F.reshape(p, shape=(-1,) + square), axis=1) for p in parts]
            start += m
            h = parts[0] if m == 1 else F.concat(*parts, dim=1)
            rows.append(F.reshape(h, shape=(-1,) + shape + square))
        return _one_or_tuple(rows)


class Laplacian(PerSampleBlock):
    r"""Per-sample Laplacian (trace of the Hessian) of every output element.

    .. math:: \Delta\, \mathrm{net}(x)_{b, i} = \sum_j
              \frac{\partial^2\, \mathrm{net}(x)_{b, i}}{\partial x_{b, j}^2}

    Parameters
    ----------
    net : gluon.HybridBlock
        The network; its samples must not interact (see ``couple_samples``).
    wrt : int, default 0
        Position of the input to differentiate by.
    method : {'forward', 'hessian_trace'}, default 'forward'
        ``'forward'``: the forward Laplacian (Li et al.), one forward sweep that carries
        value, the n input directions and the Laplacian together; its cost grows like
        (n + 2) forward passes.  ``'hessian_trace'``: the trace of the `Hessian`.
    couple_samples : bool, default False
        For a network whose samples interact (BatchNorm in training mode): the
        Laplacian along shifts of the whole batch, as in `Jacobian`, instead of
        refusing the network.

    Inputs:
        - **inputs**: the inputs of ``net``, each of shape (batch, ...).

    Outputs:
        - **lap**: shape (batch, \*output_shape).

    Examples
    --------
    >>> import mxnet as mx, mxgradlayer as mg
    >>> net = mx.gluon.nn.HybridLambda(lambda F, x: F.sum(F.square(x), axis=1))
    >>> mg.Laplacian(net)(mx.nd.array([[1.0, 2.0, 3.0]]))  # 2 per dimension
    <BLANKLINE>
    [6.]
    <NDArray 1 @cpu(0)>

    In a physics-informed loss, -u'' = f on (0, 1):

    >>> u = mx.gluon.nn.HybridSequential()
    >>> u.add(mx.gluon.nn.Dense(16, activation='tanh'), mx.gluon.nn.Dense(1))
    >>> u.initialize()
    >>> x = mx.nd.random.uniform(shape=(8, 1))
    >>> with mx.autograd.record():
    ...     residual = -mg.Laplacian(u)(x) - mx.nd.ones((8, 1))
    ...     loss = (residual ** 2).mean()
    >>> loss.backward()

    References
    ----------
    R. Li et al., "A computational framework for neural network-based variational Monte
    Carlo with Forward Laplacian", Nature Machine Intelligence 6, 209-219 (2024).
    """

    def __init__(self, net, wrt=0, method='forward', couple_samples=False, **kwargs):
        check_choice('method', method, ('forward', 'hessian_trace'))
        super().__init__(net, wrt, couple_samples, **kwargs)
        self._method = method
        if method == 'hessian_trace':
            self.hessian = Hessian(net, wrt, couple_samples=couple_samples)

    def _compute(self, F, graph, inputs, vectors, params):
        wrt = self._wrt_input(graph, inputs)
        n = wrt.size
        if self._method == 'forward':
            outs, _, laps = _all_directions(self, F, graph, inputs, params, wrt,
                                            laplacian=True)
            return _one_or_tuple([F.zeros_like(o) if l is None else l
                                  for o, l in zip(outs, laps)])
        hess = call_block(self.hessian, *inputs)
        hess = hess if isinstance(hess, (list, tuple)) else [hess]
        eye = F.reshape(F.eye(n, dtype=wrt.dtype), shape=(1, 1, n, n))
        res = []
        for h, out_shape in zip(hess, self._output_shapes(graph)):
            flat = F.reshape(h, shape=(-1, prod(out_shape), n, n))
            res.append(F.reshape(F.sum(F.broadcast_mul(flat, eye), axis=(2, 3)),
                                 shape=(-1,) + out_shape))
        return _one_or_tuple(res)


class Divergence(PerSampleBlock):
    r"""Per-sample divergence (trace of the Jacobian) of a vector field.

    .. math:: \nabla \cdot f(x)_b = \sum_j \frac{\partial f(x)_{b, j}}{\partial x_{b, j}}

    Parameters
    ----------
    net : gluon.HybridBlock
        A field from (batch, \*s) to (batch, \*s); its samples must not interact.
    wrt : int, default 0
        Position of the input to differentiate by.
    couple_samples : bool, default False
        For a network whose samples interact (BatchNorm in training mode): the
        divergence along shifts of the whole batch, as in `Jacobian`, instead of
        refusing the network.

    Inputs:
        - **inputs**: the inputs of ``net``, each of shape (batch, ...).

    Outputs:
        - **div**: shape (batch,).

    Examples
    --------
    >>> import mxnet as mx, mxgradlayer as mg
    >>> field = mx.gluon.nn.HybridLambda(lambda F, x: x * 3)
    >>> mg.Divergence(field)(mx.nd.array([[1.0, 2.0], [3.0, 4.0]]))
    <BLANKLINE>
    [6. 6.]
    <NDArray 2 @cpu(0)>
    """

    def _compute(self, F, graph, inputs, vectors, params):
        wrt = self._wrt_input(graph, inputs)
        if len(graph.heads) != 1:
            raise InputSpecError('Divergence needs a network with one output')
        (out_shape,) = self._output_shapes(graph)
        if prod(out_shape) != wrt.size:
            raise InputSpecError(f'Divergence needs an output with as many elements per '
                                 f'sample as the input: input {wrt.shape}, output {out_shape}')
        n = wrt.size
        outs, tans, _ = _all_directions(self, F, graph, inputs, params, wrt)
        if tans[0] is None:
            return F.sum(F.reshape(F.zeros_like(outs[0]), shape=(0, -1)), axis=1)
        u = F.reshape(tans[0], shape=(n, -1, n))
        eye = F.reshape(F.eye(n, dtype=wrt.dtype), shape=(n, 1, n))
        return F.sum(F.broadcast_mul(u, eye), axis=(0, 2))
