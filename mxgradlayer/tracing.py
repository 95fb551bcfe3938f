# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The tracer: a Gluon block -> an `ir.Graph`, lowered, cached per input signature.

`trace` calls the block on Symbol variables and rewrites the operators that have a
lowering (`lower`) as its `TraceOptions` say; `TracedNetwork` is what a derivative block
holds: the graphs of its network by input signature and options, and the binding of the
graph's variables to the block's Parameters.  `resolve_input_specs` finds the shapes of
Symbol inputs (inside a hybridized parent, from Gluon's frame).
"""
import collections
import contextlib
import contextvars
import inspect

import mxnet as mx
import numpy as np

from .errors import InputSpecError
from .ir import Graph, INPUT_PREFIX, KEEP_MARK, apply_op, first_line
from .registry import entry

__all__ = ['TraceOptions', 'TracedNetwork', 'computing_as', 'trace', 'lower',
           'resolve_input_specs', 'numpy_mode']


class TraceOptions(collections.namedtuple('TraceOptions', 'per_sample training')):
    """How a block is traced, passed explicitly to `trace` and to every lowering.

    ``per_sample``: the graph serves a per-sample block (Jacobian, Laplacian, ...), where
    an operator that mixes samples is refused.  ``training``: the autograd mode the graph
    is built for (True or False: BatchNorm then lowers to batch or running statistics
    alone), or None for a graph that selects the statistics when it runs, because it is
    traced into a graph mxgradlayer does not rebuild (a hybridized parent's).
    """
    __slots__ = ()


TraceOptions.__new__.__defaults__ = (False, None)
# The options of the trace in progress.  A derivative block traced inside another one
# (nesting: HVP's inner InputGradient, a Jacobian of a Jacobian) is reached only through
# Gluon's call of the enclosing trace, which has no channel for them; like JAX's trace
# stack, this dynamic context carries them there.  Set by `computing_as`, read by
# `TracedNetwork.options` alone; lowerings and rules receive options explicitly.
_ENCLOSING = contextvars.ContextVar('mxgradlayer_enclosing_trace', default=None)


@contextlib.contextmanager
def computing_as(options):
    """Blocks called meanwhile (the traced block, or a derivative block's own inner
    blocks) are traced with ``options``."""
    token = _ENCLOSING.set(options)
    try:
        yield
    finally:
        _ENCLOSING.reset(token)


def trace(block, input_specs, batched=None, lowering=True, options=TraceOptions()):
    """Trace ``block`` on Symbol inputs with the given (shape, dtype) specs.

    ``batched[i]`` says whether axis 0 of input i is the batch axis (it is probed with
    other batch sizes); other inputs keep their shapes, e.g. a (1, k) input shared by
    every sample.  ``lowering=False`` keeps the operators as the block wrote them (for
    reports); otherwise those with a lowering are rewritten (`lower`) as ``options``
    (a `TraceOptions`) say.
    """
    _refresh_parameter_symbols(block)
    variables = [mx.sym.var(f'{INPUT_PREFIX}{i}', shape=tuple(s[0]), dtype=s[1])
                 for i, s in enumerate(input_specs)]
    if numpy_mode():  # a NumPy-interface network accepts NumPy Symbols only
        variables = [v.as_np_ndarray() for v in variables]
    try:
        with computing_as(options):
            out = block(*variables)
    except TypeError as err:
        raise InputSpecError(
            f'the wrapped network does not accept {len(variables)} input(s): {err}') from None
    except mx.base.MXNetError as err:
        raise InputSpecError(
            'the wrapped network cannot run on inputs of shapes '
            f'{[tuple(s[0]) for s in input_specs]}: {first_line(err)}') from None
    if isinstance(out, (list, tuple)):
        out = mx.sym.Group([o.as_nd_ndarray() for o in out])
    graph = Graph(out, len(input_specs), input_specs, batched, strict_types=False)
    lowered = lower(graph, input_specs, batched, options) if lowering else graph
    if lowered is graph and graph.type_error is not None:
        return Graph(out, len(input_specs), input_specs, batched)  # raises InputSpecError
    return lowered


def numpy_mode():
    """Whether MXNet's NumPy interface is on (``npx.set_np()``): networks then call
    ``mx.np`` operators and take and return ``mx.np`` arrays."""
    return mx.util.is_np_array()


def _refresh_parameter_symbols(block):
    """Forget a Parameter's cached Symbol when its dtype no longer matches the Parameter.

    Gluon creates a Parameter's Symbol once (``Parameter.var``, mxnet 1.9.1) with the dtype
    of that moment; ``net.cast('float64')`` after a first call (deferred initialisation)
    converts the data but keeps that Symbol, whose float32 then contradicts the float64
    inputs in the trace's type inference.  Likewise a Symbol made in the other front end
    (NumPy or legacy) than the one the trace runs in.
    """
    for param in block.collect_params().values():
        var = param._var
        if var is None:
            continue
        want = str(mx.ndarray.ndarray._DTYPE_NP_TO_MX[np.dtype(param.dtype).type])
        if var.attr('__dtype__') not in (None, want) or (
                isinstance(var, mx.sym.np._Symbol) != numpy_mode()):
            param._var = None


def lower(graph, input_specs, batched=None, options=TraceOptions()):
    """Rewrite the operators that have a lowering (an entry's ``lowering``) into primitives.

    The Symbol is rebuilt node by node; a lowered node's primitives are named after it
    (``<node>_<op><n>``), so errors and `check` still name the Gluon layer.  Returns the
    graph itself when nothing is lowered.  ``graph.mode_dependent`` records whether the
    graph was built for one training mode (``options.training`` set and a BatchNorm
    lowered), so that a hybridized block rebuilds it when the mode changes.
    """
    todo = [e for e in graph.nodes if _lowering(e) is not None]
    if not todo:
        return graph
    built = {}
    for eqn in graph.nodes:
        if eqn.op == 'null':
            # inputs keep the shapes they were traced with; parameters get the ones
            # inferred (a Gluon parameter's Symbol may predate its deferred shape, and
            # a lowering's broadcasts cannot infer it backwards)
            attrs = {k: v for k, v in eqn.raw_attrs.items() if k == '__dtype__'}
            if eqn.nid in graph.input_nids:
                attrs['__shape__'] = eqn.raw_attrs['__shape__']
            elif eqn.out_shapes[0] and None not in eqn.out_shapes[0]:
                attrs['__shape__'] = str(tuple(eqn.out_shapes[0]))
            built[eqn.nid] = [mx.sym.var(eqn.name, attr=attrs)]
            continue
        xs = [built[i][k] for i, k in eqn.inputs]
        fn = _lowering(eqn)
        if fn is None:
            built[eqn.nid] = apply_op(mx.sym, eqn.op, xs, eqn.raw_attrs, name=eqn.name)
        else:
            with mx.name.Prefix(eqn.name + '_'):
                out = fn(mx.sym, eqn, xs, options)
            # a lowering returns None for a node it leaves as it is
            built[eqn.nid] = (apply_op(mx.sym, eqn.op, xs, eqn.raw_attrs, name=eqn.name)
                              if out is None else list(out))
    heads = [built[n][k] for n, k in graph.heads]
    out = heads[0] if len(heads) == 1 else mx.sym.Group(heads)
    mode_dependent = options.training is not None and any(
        entry(e).mode_dependent for e in todo)
    return Graph(out, len(input_specs), input_specs, batched, mode_dependent=mode_dependent)


def _lowering(eqn):
    opdef = entry(eqn)
    if opdef is None or KEEP_MARK in eqn.raw_attrs:
        return None
    return opdef.lowering


def resolve_input_specs(inputs):
    """(shape, dtype) of each input, whether NDArrays or Symbols.

    Symbols get their shapes from MXNet's inference when their variables carry shapes
    (our own nesting does that).  Inside a hybridized parent, Gluon builds the graph on
    plain variables; the NDArrays it was called with still sit in the frame of
    ``HybridBlock._get_graph`` (mxnet is pinned to 1.9.1), and we read their shapes there.
    Returns None when no shape can be found.
    """
    if all(isinstance(x, mx.nd.NDArray) for x in inputs):
        return [(tuple(x.shape), x.dtype) for x in inputs]
    group = mx.sym.Group(list(inputs))
    known = _infer_group(group, {}, {})
    if known is not None:
        return known
    frame = inspect.currentframe()
    try:
        while frame is not None:
            if frame.f_code.co_name == '_get_graph' and 'flatten_args' in frame.f_locals:
                loc = frame.f_locals
                arrays = [a for a in loc['flatten_args'] if a is not None]
                syms = loc.get('symbol_inputs', [])
                if len(arrays) == len(syms):
                    shapes = {s.name: a.shape for s, a in zip(syms, arrays)}
                    types = {s.name: a.dtype for s, a in zip(syms, arrays)}
                    known = _infer_group(group, shapes, types)
                    if known is not None:
                        return known
            frame = frame.f_back
    finally:
        del frame
    return None


def _infer_group(group, shapes, types):
    args = set(group.list_arguments())
    shapes = {k: v for k, v in shapes.items() if k in args}
    types = {k: v for k, v in types.items() if k in args}
    try:
        out_shapes = group.infer_shape_partial(**shapes)[1]
        out_types = group.infer_type_partial(**types)[1]
    except mx.base.MXNetError:
        return None
    # unknown: () and 0 in legacy shape semantics, None and -1 in NumPy mode's
    if any(not s or 0 in s or -1 in s for s in out_shapes) or any(t is None for t in out_types):
        return None
    return [(tuple(s), t) for s, t in zip(out_shapes, out_types)]


class TracedNetwork:
    """A block as traced graphs: one per input signature and `TraceOptions`, and the
    values of their variables.  A derivative block holds one for the block it
    differentiates (its network, or for HVP the inner gradient block)."""

    def __init__(self, block):
        self.block = block
        self._graphs = {}

    @staticmethod
    def options(per_sample, owns_graph):
        """Nested in another derivative block's trace: traced as that one is.  Otherwise
        for the current autograd mode when the caller owns its graph (called on
        NDArrays), and for a mode chosen when the graph runs when it is traced into a
        graph it does not own (a hybridized parent's)."""
        enclosing = _ENCLOSING.get()
        if enclosing is not None:
            return enclosing._replace(per_sample=enclosing.per_sample or per_sample)
        training = mx.autograd.is_training() if owns_graph else None
        return TraceOptions(per_sample=per_sample, training=training)

    def graph(self, specs, batched, options):
        """The graph for inputs of these (shape, dtype) ``specs``; ``batched[i]``: axis 0
        of input i is the batch axis."""
        key = tuple((tuple(s[1:]), np.dtype(t).name) for s, t in specs) + (batched, options)
        graph = self._graphs.get(key)
        if graph is None or (not graph.batch_polymorphic and graph.batch != specs[0][0][:1]):
            graph = trace(self.block, specs, batched, options=options)
            self._graphs[key] = graph
        return graph

    def clear(self):
        self._graphs.clear()

    def variables(self, F, graph, params, ctx):
        """name -> value of each Parameter the graph reads: a Symbol for ``mx.sym``, the
        data on ``ctx`` for ``mx.nd``.  ``params``: name -> Parameter."""
        values = {}
        for eqn in graph.nodes:
            if eqn.op != 'null' or eqn.name not in params:
                continue
            param = params[eqn.name]
            if param._deferred_init:
                # the trace knows every parameter's shape, also of those the derivative
                # never reads (Gluon's own inference could not find those)
                param.shape = tuple(eqn.out_shapes[0])
                param._finish_deferred_init()
            if F is mx.sym:
                # Gluon creates a parameter's Symbol once, possibly before its shape was
                # known (deferred init); a nested trace needs the shape in the Symbol
                var = param.var()
                if param.shape and all(param.shape) and var.attr('__shape__') != str(
                        tuple(param.shape)):
                    var = mx.sym.var(param.name, shape=param.shape, dtype=param.dtype)
                values[eqn.name] = var.as_nd_ndarray()
            else:
                # in NumPy mode, Gluon hands out NumPy views; the graphs hold legacy ones
                values[eqn.name] = param.data(ctx).as_nd_ndarray()
        return values
