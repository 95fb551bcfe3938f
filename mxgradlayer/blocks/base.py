# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The Gluon shell every derivative block shares.

A derivative block keeps the wrapped network as a child (so ``collect_params()`` returns
the very same Parameter objects) and a `tracing.TracedNetwork` of it, which traces it to
a graph on the first call for an input signature and binds the graph's variables to the
Parameters.  ``hybrid_forward`` then hands that graph to the subclass's ``_compute``,
which runs the interpreters (`transform.forward`, `transform.reverse`) with ``F``: what
comes out is a graph of ordinary MXNet operators that MXNet trains with its first-order
backward, ``hybridize()`` compiles and ``export()`` saves.  Higher orders nest: a
derivative block is itself a block that can be traced.

In MXNet's NumPy interface (``npx.set_np()``) the block takes and returns NumPy arrays
(or Symbols) and computes on legacy views of them (`legacy_view`, `numpy_view`; why:
`mxgradlayer.rules.numpy`).
"""
import collections
import warnings

import numpy as np
import mxnet as mx
from mxnet.gluon import HybridBlock

from .. import rules  # noqa: F401  (registers every rule)
from ..errors import InputSpecError
from ..tracing import TracedNetwork, computing_as, numpy_mode, resolve_input_specs
from ..transform import unrecorded

__all__ = ['DerivativeBlock', 'PerSampleBlock', 'check_choice', 'prod', 'is_numpy',
           'legacy_view', 'numpy_view', 'call_block']


def check_choice(what, value, allowed):
    if value not in allowed:
        raise ValueError(f'{what} must be one of {", ".join(map(repr, allowed))}; '
                         f'got {value!r}')


def prod(shape):
    return int(np.prod(shape)) if len(shape) else 1


def _is_float(dtype):
    return np.issubdtype(np.dtype(dtype), np.floating)


# The differentiated input as the per-sample blocks need it: its position, its shape
# without the batch axis, that shape's size, and its dtype.
WrtInput = collections.namedtuple('WrtInput', 'position shape size dtype')


class DerivativeBlock(HybridBlock):
    """Argument checks, the traced network, the training mode; subclasses write
    ``_compute(F, graph, inputs, vectors, params)``."""

    _num_vectors = 0      # trailing direction arguments (v or w) after the net's inputs
    _single_wrt = False   # differentiates by one input only
    _per_sample = False   # a per-sample block (see PerSampleBlock)

    def __init__(self, net, wrt=0, **kwargs):
        if self._single_wrt and isinstance(wrt, (tuple, list)):
            raise InputSpecError(f'{type(self).__name__} takes one input position as wrt')
        super().__init__(**kwargs)
        if _is_hybrid_sequence(net):
            net = _HybridSequence(net)
        if not isinstance(net, HybridBlock):
            raise TypeError(f'{type(self).__name__} wraps a gluon.HybridBlock (or SymbolBlock, '
                            f'or an nn.Sequential of HybridBlocks); got {type(net).__name__}. '
                            f'Derive your block from HybridBlock and write '
                            f'hybrid_forward(F, ...), with F.np / F.npx in NumPy mode.')
        wrt_tuple = wrt if isinstance(wrt, (tuple, list)) else (wrt,)
        if not wrt_tuple or not all(isinstance(w, (int, np.integer)) for w in wrt_tuple):
            raise InputSpecError(f'wrt must be an int or a tuple of ints; got {wrt!r}')
        if len(set(wrt_tuple)) != len(wrt_tuple):
            raise InputSpecError(f'wrt has repeated positions: {wrt!r}')
        self._wrt = tuple(int(w) for w in wrt_tuple)
        self._wrt_is_tuple = isinstance(wrt, (tuple, list))
        self._couple = False
        self.net = net
        self._traced_network = None

    def _differentiated(self):
        """The block whose derivative this block computes (the net, or a derivative of it)."""
        return self.net

    @property
    def _network(self):
        if self._traced_network is None:  # (HVP's inner block exists only after __init__)
            self._traced_network = TracedNetwork(self._differentiated())
        return self._traced_network

    def forward(self, x, *args):
        if not isinstance(x, mx.nd.NDArray):  # traced into someone else's graph
            return super().forward(x, *args)
        # Called on arrays, the block owns the graph it builds (imperative, or its own
        # cached graph when hybridized) and builds it for the current mode; a hybridized
        # block whose graph depends on the mode (BatchNorm) rebuilds when it changes.
        mode = getattr(self, '_built_mode', None)
        if mode is not None and self._active and mode != mx.autograd.is_training():
            self._clear_cached_op()
            self._built_mode = None
        self._owns_graph = True
        try:
            return super().forward(x, *args)
        finally:
            self._owns_graph = False

    def _build_cache(self, *args):
        # A derivative does not read every parameter (the last bias, for a start): Gluon's
        # "Parameter ... is not used by any computation" warning would only be noise here.
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Parameter .* is not used by any')
            super()._build_cache(*args)

    def __repr__(self):
        wrt = self._wrt if self._wrt_is_tuple else self._wrt[0]
        net = repr(self.net).replace('\n', '\n  ')
        return f'{type(self).__name__}(wrt={wrt}, net={net})'

    def clear_cache(self):
        """Forget the traced graphs (after changing the wrapped network's structure)."""
        self._network.clear()

    # ----- arguments -----
    def _split_args(self, args):
        n = len(args) - self._num_vectors
        if n < 1:
            raise InputSpecError(
                f'{type(self).__name__} expects the inputs of the wrapped network'
                + (f' followed by {self._num_vectors} direction array(s)' if self._num_vectors
                   else '') + f'; got {len(args)} argument(s)')
        inputs, vectors = list(args[:n]), list(args[n:])
        for w in self._wrt:
            if not -n <= w < n:
                raise InputSpecError(
                    f'wrt={w} is out of range: the network was called with {n} input(s) '
                    f'(positions 0..{n - 1})')
        return inputs, vectors

    def _positions(self, n):
        return [w % n for w in self._wrt]

    def _specs(self, inputs):
        specs = resolve_input_specs(inputs)
        if specs is None:
            raise InputSpecError(
                f'{type(self).__name__} was called on Symbols of unknown shape. Call it on '
                f'NDArrays (hybridized or not), inside a hybridized parent block, or on '
                f'mx.sym.var(..., shape=..., dtype=...) variables.')
        for p in self._positions(len(inputs)):
            shape, dtype = specs[p]
            if not _is_float(dtype):
                raise InputSpecError(
                    f'input {p} has dtype {np.dtype(dtype).name}; only floating-point inputs '
                    f'can be differentiated (wrt={p})')
            if len(shape) < 1:
                raise InputSpecError(f'input {p} has no batch axis (shape {shape})')
        return specs

    def _check_vector(self, vec, like_shape, what):
        """A direction must have the shape of the input (v) or output (w) it pairs with."""
        if not isinstance(vec, mx.nd.NDArray) or like_shape is None:
            return
        ok = len(vec.shape) == len(like_shape) and all(
            d is None or d == e for d, e in zip(like_shape, vec.shape))
        if not ok:
            want = ', '.join('batch' if d is None else str(d) for d in like_shape)
            raise InputSpecError(
                f'{type(self).__name__}: {what} must have the shape ({want}) of the '
                f'{"input" if what == "v" else "output"} it pairs with; got {tuple(vec.shape)}')

    def _check_direction(self, v, inputs, p):
        self._check_vector(v, inputs[p].shape if isinstance(inputs[p], mx.nd.NDArray)
                           else None, 'v')

    def _static(self, shape, what):
        if any(d is None for d in shape[1:]):
            raise InputSpecError(f'{type(self).__name__} needs a {what} whose non-batch '
                                 f'dimensions do not depend on the batch size; got {shape}')
        return tuple(shape[1:])

    def _wrt_input(self, graph, inputs):
        p = self._positions(len(inputs))[0]
        shape = self._static(graph.specs[p][0], 'input')
        return WrtInput(p, shape, prod(shape), np.dtype(graph.specs[p][1]).name)

    def _output_shapes(self, graph):
        return [self._static(graph.shape_of(h), 'output') for h in graph.heads]

    def _pack(self, grads):
        return tuple(grads) if self._wrt_is_tuple else grads[0]

    # ----- the computation -----
    def hybrid_forward(self, F, *args, **constants):
        # NumPy interface: the graphs hold legacy views of the same arrays (see
        # rules.numpy), and the results go back as NumPy arrays or Symbols, as Gluon
        # requires of every block in NumPy mode (so a block that calls another one
        # takes a legacy view of what it returns)
        args = [legacy_view(a) for a in args]
        constants = {k: legacy_view(v) for k, v in constants.items()}
        out = self._derivative(F, args, constants)
        return numpy_view(out) if numpy_mode() else out

    def _derivative(self, F, args, constants):
        inputs, vectors = self._split_args(args)
        specs = self._specs(inputs)
        # axis 0 is the batch axis of every input as long as the differentiated one
        batch = specs[self._positions(len(inputs))[0]][0][0]
        batched = tuple(len(s) > 0 and s[0] == batch for s, _ in specs)
        options = self._network.options(self._per_sample and not self._couple,
                                        getattr(self, '_owns_graph', False))
        graph = self._network.graph(specs, batched, options)
        if graph.mode_dependent:
            self._built_mode = options.training
        params = {p.name: p for p in self.collect_params().values()}
        values = self._network.variables(F, graph, params, getattr(inputs[0], 'context', None))
        with computing_as(options):  # the blocks _compute calls are built as this one
            # constants: the block's own gluon.Constant arrays (DifferentialOperator's)
            out = self._compute(unrecorded(F), graph, inputs, vectors, values, **constants)
        if F is mx.nd and mx.autograd.is_recording() and values:
            out = _touching(out, values.values())
        return out

    def _compute(self, F, graph, inputs, vectors, params):
        raise NotImplementedError


def _is_hybrid_sequence(net):
    return (type(net) is mx.gluon.nn.Sequential and len(net._children) > 0 and
            all(isinstance(c, HybridBlock) for c in net._children.values()))


class _HybridSequence(HybridBlock):
    """An ``nn.Sequential`` of HybridBlocks (as Dive into Deep Learning builds its
    networks) seen as a HybridBlock: its very children, and so its Parameters, called in
    order, which is what ``Sequential.forward`` does."""

    def __init__(self, sequential):
        super().__init__(prefix=sequential.prefix)
        for name, child in sequential._children.items():
            self.register_child(child, name)

    def hybrid_forward(self, F, x):
        for block in self._children.values():
            x = block(x)
        return x


class PerSampleBlock(DerivativeBlock):
    """A block whose result for sample b is a derivative by sample b alone.  Its derived
    graphs fold several directions into the batch axis."""

    _per_sample = True
    _single_wrt = True

    def __init__(self, net, wrt=0, couple_samples=False, **kwargs):
        super().__init__(net, wrt, **kwargs)
        self._couple = bool(couple_samples)


def is_numpy(x):
    """Whether ``x`` is an array or Symbol of MXNet's NumPy interface."""
    return isinstance(x, (mx.np.ndarray, mx.sym.np._Symbol))


def legacy_view(x):
    """A NumPy-interface array or Symbol (or a list or tuple of them) as a legacy one:
    the same data and history."""
    if isinstance(x, (list, tuple)):
        return type(x)(legacy_view(v) for v in x)
    return x.as_nd_ndarray() if is_numpy(x) else x


def numpy_view(out):
    """Legacy arrays or Symbols (nested in lists or tuples) as NumPy-interface ones."""
    if isinstance(out, (list, tuple)):
        return type(out)(numpy_view(o) for o in out)
    return out.as_np_ndarray() if isinstance(out, (mx.nd.NDArray, mx.sym.Symbol)) else out


def call_block(block, *arrays):
    """``block(*arrays)`` for a derivative block's own computation, which holds legacy
    arrays: in NumPy mode the block (perhaps the user's, written with F.np) gets NumPy
    views and its result comes back as a legacy view."""
    if numpy_mode():
        return legacy_view(block(*numpy_view(list(arrays))))
    return block(*arrays)


def _touching(out, params):
    """``out`` made to depend, with derivative zero, on every parameter of the graph.

    A derivative need not read every parameter (the last layer's bias), and a parameter
    that backward never reaches is stale to `gluon.Trainer`.  A hybridized block's graph
    reaches them all with zeros through its seed ``ones_like(net(x))``; imperatively that
    seed is not recorded (see `transform.unrecorded`), so the same zeros come from here.
    """
    first = out[0] if isinstance(out, (list, tuple)) else out
    total = mx.nd.add_n(*[mx.nd.sum(p) for p in params]) * 0.0
    first = mx.nd.broadcast_add(first, mx.nd.reshape(total, shape=(1,) * first.ndim))
    if isinstance(out, (list, tuple)):
        return type(out)([first] + list(out[1:]))
    return first
