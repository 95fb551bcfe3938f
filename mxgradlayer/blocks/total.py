# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Total-derivative blocks: products with the Jacobian or Hessian of the whole batch.

`InputGradient` and `VJP` pull cotangents back (reverse mode), `JVP` pushes one tangent
per differentiated input forward, `HVP` composes the two.  Samples may interact (a
BatchNorm in training mode): these are exact derivatives of the batch's function.
"""
import warnings

from ..errors import InputSpecError
from ..transform import forward, reverse
from .base import DerivativeBlock, check_choice

__all__ = ['InputGradient', 'VJP', 'JVP', 'HVP']


class InputGradient(DerivativeBlock):
    r"""Gradient of the summed network output with respect to an input, as a layer.

    .. math:: \mathrm{InputGradient}(x) = \frac{\partial}{\partial x}
              \sum_{i} \mathrm{net}(x)_i

    Samples of a batch are independent in most networks, so this is the per-sample
    input gradient (like Mathematica's NetPortGradient, which also sums the outputs).
    Computed in reverse mode: one backward sweep, whatever the input dimension.

    Parameters
    ----------
    net : gluon.HybridBlock
        The network to differentiate; any number of inputs and outputs (every element
        of every output is summed).  Its Parameters are shared, not copied.
    wrt : int or tuple of int, default 0
        Position(s) of the input(s) to differentiate by.
    return_output : bool, default False
        Also return ``net(*inputs)``, from the same evaluation of the network.

    Inputs:
        - **inputs**: the inputs of ``net``, each of shape (batch, ...).

    Outputs:
        - **grad**: the gradient with the shape of ``inputs[wrt]``, or a tuple of them
          when ``wrt`` is a tuple.  With ``return_output=True``: ``(net(*inputs), grad)``.

    Examples
    --------
    >>> import mxnet as mx, mxgradlayer as mg
    >>> net = mx.gluon.nn.HybridLambda(lambda F, x: F.square(x))
    >>> du_dx = mg.InputGradient(net)
    >>> du_dx(mx.nd.array([[1.0, 2.0]]))
    <BLANKLINE>
    [[2. 4.]]
    <NDArray 1x2 @cpu(0)>

    In a loss, as any layer: the gradient penalty of WGAN-GP.

    >>> critic = mx.gluon.nn.Dense(1, in_units=3)
    >>> critic.initialize()
    >>> penalty = mg.InputGradient(critic)
    >>> x = mx.nd.ones((4, 3))
    >>> with mx.autograd.record():
    ...     loss = ((penalty(x).norm(axis=1) - 1) ** 2).mean()
    >>> loss.backward()
    >>> critic.weight.grad().shape
    (1, 3)
    """

    def __init__(self, net, wrt=0, return_output=False, **kwargs):
        super().__init__(net, wrt, **kwargs)
        self._return_output = bool(return_output)

    def _compute(self, F, graph, inputs, vectors, params):
        pos = self._positions(len(inputs))
        outs, grads = reverse(F, graph, inputs, params, pos,
                              lambda outs: [F.ones_like(o) for o in outs], unit_seeds=True)
        grad = self._pack([F.zeros_like(inputs[p]) if g is None else g
                           for p, g in zip(pos, grads)])
        if not self._return_output:
            return grad
        return (outs[0] if len(outs) == 1 else tuple(outs)), grad


class VJP(DerivativeBlock):
    r"""Vector-Jacobian product (reverse mode) of a network by one or several inputs.

    .. math:: \mathrm{VJP}(x, w) = w^\top \frac{\partial\, \mathrm{net}(x)}{\partial x}

    Parameters
    ----------
    net : gluon.HybridBlock
        The network to differentiate (a SymbolBlock loaded from ``export()`` files too).
        It must have a single output.  Its Parameters are shared, not copied.
    wrt : int or tuple of int, default 0
        Position(s) of the input(s) to differentiate by.

    Inputs:
        - **inputs**: the inputs of ``net``, each of shape (batch, ...).
        - **w**: array of the shape of ``net``'s output.

    Outputs:
        - **out**: w^T J with the shape of ``inputs[wrt]`` (a tuple when ``wrt`` is a tuple).

    Examples
    --------
    >>> import mxnet as mx, mxgradlayer as mg
    >>> net = mx.gluon.nn.HybridLambda(lambda F, x: F.sum(F.square(x), axis=1, keepdims=True))
    >>> mg.VJP(net)(mx.nd.array([[1.0, 2.0]]), mx.nd.array([[0.5]]))
    <BLANKLINE>
    [[1. 2.]]
    <NDArray 1x2 @cpu(0)>
    """
    _num_vectors = 1

    def _compute(self, F, graph, inputs, vectors, params):
        if len(graph.heads) != 1:
            raise InputSpecError(f'VJP needs a network with one output; this one has '
                                 f'{len(graph.heads)}. Use InputGradient, or wrap the '
                                 f'network to return one output.')
        w = vectors[0]
        self._check_vector(w, graph.shape_of(graph.heads[0]), 'w')
        pos = self._positions(len(inputs))
        _, grads = reverse(F, graph, inputs, params, pos, lambda outs: [w])
        return self._pack([F.zeros_like(inputs[p]) if g is None else g
                           for p, g in zip(pos, grads)])


class JVP(DerivativeBlock):
    r"""Jacobian-vector product (forward mode) of a network by one or several inputs.

    .. math:: \mathrm{JVP}(x, v) = \frac{\partial\, \mathrm{net}(x)}{\partial x} v

    Parameters
    ----------
    net : gluon.HybridBlock
        The network to differentiate.  Its Parameters are shared, not copied.
    wrt : int or tuple of int, default 0
        Position(s) of the input(s) to differentiate by; one direction ``v`` each.

    Inputs:
        - **inputs**: the inputs of ``net``, each of shape (batch, ...).
        - **v**: one direction per position in ``wrt``, shaped like that input.

    Outputs:
        - **out**: J v with the shape of ``net``'s output (a tuple for several outputs).

    Examples
    --------
    >>> import mxnet as mx, mxgradlayer as mg
    >>> net = mx.gluon.nn.HybridLambda(lambda F, x: F.sin(x))
    >>> mg.JVP(net)(mx.nd.array([[0.0, 0.0]]), mx.nd.array([[1.0, 2.0]]))
    <BLANKLINE>
    [[1. 2.]]
    <NDArray 1x2 @cpu(0)>
    """

    def __init__(self, net, wrt=0, **kwargs):
        super().__init__(net, wrt, **kwargs)
        self._num_vectors = len(self._wrt)

    def _compute(self, F, graph, inputs, vectors, params):
        pos = self._positions(len(inputs))
        for p, v in zip(pos, vectors):
            self._check_direction(v, inputs, p)
        outs, tans, _ = forward(F, graph, inputs, params, dict(zip(pos, vectors)))
        res = [F.zeros_like(o) if t is None else t for o, t in zip(outs, tans)]
        return res[0] if len(res) == 1 else tuple(res)


class HVP(DerivativeBlock):
    r"""Hessian-vector product of the summed network output with respect to one input.

    .. math:: \mathrm{HVP}(x, v) = \nabla_x^2 \Big(\sum_i \mathrm{net}(x)_i\Big)\, v

    Exact, in two sweeps' time, without forming the Hessian (Pearlmutter, 1994).

    Parameters
    ----------
    net : gluon.HybridBlock
        The network.  Its Parameters are shared, not copied.
    wrt : int, default 0
        Position of the input to differentiate by.
    mode : {'fwd_rev', 'rev_rev'}, default 'fwd_rev'
        How the modes compose: ``'fwd_rev'``, forward over reverse, pushes the tangent
        ``v`` through the reverse-mode gradient in one sweep; ``'rev_rev'``, reverse over
        reverse, runs a second reverse sweep over the gradient graph, as
        ``create_graph=True`` does in other frameworks.  Both are exact; forward over
        reverse is the default because it was the faster in this library's benchmarks
        (README, Performance).  (``method=`` is the former name of this argument.)

    Inputs:
        - **inputs**: the inputs of ``net``, each of shape (batch, ...).
        - **v**: direction, shaped like ``inputs[wrt]``.

    Outputs:
        - **hvp**: H v with the shape of ``inputs[wrt]``.

    Examples
    --------
    >>> import mxnet as mx, mxgradlayer as mg
    >>> net = mx.gluon.nn.HybridLambda(lambda F, x: F.sum(x ** 3, axis=1))
    >>> mg.HVP(net)(mx.nd.array([[1.0, 2.0]]), mx.nd.array([[1.0, 1.0]]))  # 6 x v
    <BLANKLINE>
    [[ 6. 12.]]
    <NDArray 1x2 @cpu(0)>

    References
    ----------
    B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation
    6(1), 147-160 (1994).
    """
    _num_vectors = 1
    _single_wrt = True

    def __init__(self, net, wrt=0, mode='fwd_rev', method=None, **kwargs):
        if method is not None:
            warnings.warn("HVP(method=...) is now HVP(mode=...)", DeprecationWarning,
                          stacklevel=2)
            mode = method
        check_choice('mode', mode, ('fwd_rev', 'rev_rev'))
        super().__init__(net, wrt, **kwargs)
        self._mode = mode
        self.grad = InputGradient(net, wrt)

    def _differentiated(self):
        return self.grad

    def _compute(self, F, graph, inputs, vectors, params):
        p = self._positions(len(inputs))[0]
        v = vectors[0]
        self._check_direction(v, inputs, p)
        if self._mode == 'fwd_rev':
            _, tans, _ = forward(F, graph, inputs, params, {p: v})
            hv = tans[0]
        else:
            _, grads = reverse(F, graph, inputs, params, [p], lambda outs: [v])
            hv = grads[0]
        return F.zeros_like(inputs[p]) if hv is None else hv
