# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Symbol -> light IR: trace a block, parse its JSON into `Eqn` records with shapes.

A derivative block never differentiates Python code: it traces the wrapped block to an
MXNet Symbol and reads the Symbol's JSON, which lists every operator with its
attributes.  Shapes come from MXNet's own shape inference, run twice with two batch
sizes so that every dimension that depends on the batch is recorded as ``None``: the
rules then emit only batch-polymorphic operators (reshape codes 0/-1/-3/-4, ``*_like``
operators), and one derived graph serves every batch size, as a hybridized Gluon block
must.
"""
import ast
import collections
import contextlib
import contextvars
import inspect
import json

import mxnet as mx
import numpy as np

from .errors import InputSpecError

__all__ = ['Eqn', 'Graph', 'TraceOptions', 'enclosing_options', 'computing_as', 'trace',
           'lower', 'parse_attr', 'apply_op', 'resolve_input_specs']

_PROBE_BATCHES = (2, 3)
INPUT_PREFIX = '_mxgl_in'
# A node carrying this attribute is never lowered (a lowering's own helper node).
KEEP_MARK = '__mxgl_keep__'


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
# The options of the trace in progress: a derivative block traced inside another one
# (nesting) is traced as its enclosing block is.  Read only by `enclosing_options`.
_ENCLOSING = contextvars.ContextVar('mxgradlayer_enclosing_trace', default=None)


def enclosing_options():
    """The `TraceOptions` of the derivative computation calling a block, or None."""
    return _ENCLOSING.get()


@contextlib.contextmanager
def computing_as(options):
    """Blocks called meanwhile (the traced block, or a derivative block's own inner
    blocks) are traced with ``options``."""
    token = _ENCLOSING.set(options)
    try:
        yield
    finally:
        _ENCLOSING.reset(token)


def parse_attr(value):
    """Parse one MXNet string attribute ('(1, 2)', 'True', 'None', '0.5', 'tanh')."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        low = value.lower()
        if low in ('true', 'false'):
            return low == 'true'
        return value


class Eqn:
    """One operator node of a traced graph, as the rules see it.

    Attributes: ``op`` (MXNet operator name), ``name`` (node name, which carries the
    Gluon layer prefix), ``attrs`` (parsed attributes), ``raw_attrs`` (the JSON
    strings, passed back verbatim to re-apply the operator), ``inputs`` (list of
    ``(node_id, output_index)``), ``in_shapes`` / ``out_shapes`` (tuples with ``None``
    for batch-dependent dimensions), ``dtype`` of the first output, ``in_dtypes``.
    """
    __slots__ = ('nid', 'op', 'name', 'attrs', 'raw_attrs', 'inputs', 'in_shapes',
                 'in_dtypes', 'out_shapes', 'num_outputs', 'dtype', 'batch_aligned',
                 'in_aligned')

    def __init__(self, nid, op, name, raw_attrs, inputs):
        self.nid, self.op, self.name = nid, op, name
        self.raw_attrs = dict(raw_attrs)
        self.attrs = {k: parse_attr(v) for k, v in self.raw_attrs.items()}
        self.inputs = inputs
        self.in_shapes, self.out_shapes, self.num_outputs, self.dtype = [], [], 1, None
        self.in_dtypes = []
        # per output: is axis 0 the batch axis (equal to the batch size at every probe)?
        self.batch_aligned, self.in_aligned = [], []

    def __repr__(self):
        return f'Eqn({self.op}, {self.name})'


class Graph:
    """A traced block: variables (inputs and parameters), equations and heads."""

    def __init__(self, symbol, num_inputs, input_specs, batched=None, strict_types=True):
        self.symbol = symbol
        self.strict_types, self.type_error = strict_types, None
        self.batched = list(batched) if batched is not None else [True] * num_inputs
        spec = json.loads(symbol.tojson())
        self.nodes = []
        self.var_names = {}          # nid -> variable name
        for nid, node in enumerate(spec['nodes']):
            inputs = [(i[0], i[1]) for i in node['inputs']]
            eqn = Eqn(nid, node['op'], node['name'], node.get('attrs', node.get('param', {})),
                      inputs)
            self.nodes.append(eqn)
            if eqn.op == 'null':
                self.var_names[nid] = eqn.name
        self.heads = [(h[0], h[1]) for h in spec['heads']]
        self.input_nids = []
        for i in range(num_inputs):
            name = f'{INPUT_PREFIX}{i}'
            nids = [n for n, v in self.var_names.items() if v == name]
            self.input_nids.append(nids[0] if nids else None)
        self._infer(input_specs)

    def _infer(self, input_specs):
        """Fill in shapes (None where they follow the batch size) and dtypes."""
        internals = self.symbol.get_internals()
        names = internals.list_outputs()
        used = set(self.symbol.list_arguments()) | set(self.symbol.list_auxiliary_states())
        dtypes = {f'{INPUT_PREFIX}{i}': s[1] for i, s in enumerate(input_specs)
                  if f'{INPUT_PREFIX}{i}' in used}
        results = []
        for batch in _PROBE_BATCHES:
            shapes = {f'{INPUT_PREFIX}{i}': ((batch,) + tuple(s[0][1:]) if self.batched[i]
                                             else tuple(s[0]))
                      for i, s in enumerate(input_specs) if f'{INPUT_PREFIX}{i}' in used}
            try:
                results.append(internals.infer_shape_partial(**shapes)[1])
            except mx.base.MXNetError:
                results = []
                break
        self.batch_polymorphic = bool(results)
        if not results:  # a net that needs one batch size: keep the shapes as given
            shapes = {f'{INPUT_PREFIX}{i}': tuple(s[0]) for i, s in enumerate(input_specs)
                      if f'{INPUT_PREFIX}{i}' in used}
            try:
                results = [internals.infer_shape_partial(**shapes)[1]]
            except mx.base.MXNetError as err:
                raise InputSpecError(
                    'the wrapped network cannot run on inputs of shapes '
                    f'{[tuple(s[0]) for s in input_specs]}: {_first_line(err)}') from None
        merged = [_merge_shapes(group) for group in zip(*results)]
        probes = _PROBE_BATCHES if self.batch_polymorphic else ()
        aligned = [bool(probes) and all(len(s) > 0 and s[0] == b for s, b in zip(group, probes))
                   for group in zip(*results)]
        try:
            types = internals.infer_type_partial(**dtypes)[1]
        except mx.base.MXNetError as err:
            if not self.strict_types:  # a kernel to be lowered may lack this dtype
                self.type_error = err
                types = [None] * len(names)
            else:
                raise InputSpecError(
                    f'the input dtypes {[str(np.dtype(s[1])) for s in input_specs]} do not '
                    f'match the network: {_first_line(err)}. Cast the inputs (x.astype(...)) '
                    f'or the network (net.cast(...)) so they agree.') from None
        by_name = dict(zip(names, zip(merged, types, aligned)))
        owners = {}  # node name -> its outputs, in order (BatchNorm's are output/mean/var)
        for k, name in enumerate(names):
            owners.setdefault(internals[k].name, []).append(by_name[name])
        for eqn in self.nodes:
            if eqn.op == 'null':
                shape, dtype, al = by_name.get(eqn.name, ((), None, False))
                eqn.out_shapes, eqn.dtype, eqn.batch_aligned = [shape], dtype, [al]
                continue
            outs = owners.get(eqn.name, [])
            eqn.num_outputs = max(1, len(outs))
            eqn.out_shapes = [o[0] for o in outs] or [()]
            eqn.batch_aligned = [o[2] for o in outs] or [False]
            eqn.dtype = outs[0][1] if outs else None
        for eqn in self.nodes:
            eqn.in_shapes = [self.nodes[i].out_shapes[k] for i, k in eqn.inputs]
            eqn.in_aligned = [self.nodes[i].batch_aligned[k] for i, k in eqn.inputs]
            eqn.in_dtypes = [self.nodes[i].dtype for i, _ in eqn.inputs]

    def shape_of(self, entry):
        nid, k = entry
        return self.nodes[nid].out_shapes[k]


def _first_line(err):
    text = str(err).strip().splitlines()
    return next((t for t in text if 'Error' in t or 'Check failed' in t), text[0] if text else '')


def _merge_shapes(shapes):
    first = shapes[0]
    if any(len(s) != len(first) for s in shapes):
        return tuple(None for _ in first)
    return tuple(a if all(s[i] == a for s in shapes) else None for i, a in enumerate(first))


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
    try:
        with computing_as(options):
            out = block(*variables)
    except TypeError as err:
        raise InputSpecError(
            f'the wrapped network does not accept {len(variables)} input(s): {err}') from None
    except mx.base.MXNetError as err:
        raise InputSpecError(
            'the wrapped network cannot run on inputs of shapes '
            f'{[tuple(s[0]) for s in input_specs]}: {_first_line(err)}') from None
    if isinstance(out, (list, tuple)):
        out = mx.sym.Group(list(out))
    graph = Graph(out, len(input_specs), input_specs, batched, strict_types=False)
    lowered = lower(graph, input_specs, batched, options) if lowering else graph
    if lowered is graph and graph.type_error is not None:
        return Graph(out, len(input_specs), input_specs, batched)  # raises InputSpecError
    return lowered


def _refresh_parameter_symbols(block):
    """Forget a Parameter's cached Symbol when its dtype no longer matches the Parameter.

    Gluon creates a Parameter's Symbol once (``Parameter.var``, mxnet 1.9.1) with the dtype
    of that moment; ``net.cast('float64')`` after a first call (deferred initialisation)
    converts the data but keeps that Symbol, whose float32 then contradicts the float64
    inputs in the trace's type inference.
    """
    for param in block.collect_params().values():
        var = param._var
        if var is None:
            continue
        want = str(mx.ndarray.ndarray._DTYPE_NP_TO_MX[np.dtype(param.dtype).type])
        if var.attr('__dtype__') not in (None, want):
            param._var = None


def lower(graph, input_specs, batched=None, options=TraceOptions()):
    """Rewrite the operators that have a lowering (`registry.LOWERINGS`) into primitives.

    The Symbol is rebuilt node by node; a lowered node's primitives are named after it
    (``<node>_<op><n>``), so errors and `check` still name the Gluon layer.  Returns the
    graph itself when nothing is lowered.  ``graph.mode_dependent`` records whether the
    graph was built for one training mode (``options.training`` set and a BatchNorm
    lowered), so that a hybridized block rebuilds it when the mode changes.
    """
    from .registry import LOWERINGS
    graph.mode_dependent = False
    todo = [e for e in graph.nodes if e.op in LOWERINGS and KEEP_MARK not in e.raw_attrs]
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
        fn = None if KEEP_MARK in eqn.raw_attrs else LOWERINGS.get(eqn.op)
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
    lowered = Graph(out, len(input_specs), input_specs, batched)
    lowered.mode_dependent = options.training is not None and any(
        LOWERINGS[e.op].mode_dependent for e in todo)
    return lowered


def _op_function(F, op):
    for space in (F, F._internal, getattr(F, 'contrib', None)):
        fn = getattr(space, op, None) if space is not None else None
        if fn is not None:
            return fn
    if op.startswith('_contrib_'):
        return getattr(F.contrib, op[len('_contrib_'):])
    raise AttributeError(f'MXNet has no operator {op!r}')


def apply_op(F, op, inputs, attrs=None, name=None):
    """Apply MXNet operator ``op`` with ``F`` (mx.nd or mx.sym); always return a list."""
    marks = {k: v for k, v in (attrs or {}).items() if k.startswith(KEEP_MARK)}
    attrs = {k: v for k, v in (attrs or {}).items() if not k.startswith('__')}
    if F is mx.nd:  # (a piecewise-constant operator is then not recorded; see unrecorded)
        from .registry import unrecorded
        F = unrecorded(F)
    if F is mx.sym:
        if name is not None:
            attrs['name'] = name
        if marks:  # survives into derived graphs, so nested traces keep the node as is
            attrs['attr'] = marks
    out = _op_function(F, op)(*inputs, **attrs)
    if isinstance(out, (list, tuple)):
        return list(out)
    if F is mx.sym and len(out.list_outputs()) > 1:
        return [out[i] for i in range(len(out.list_outputs()))]
    return [out]


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
    if any(len(s) == 0 or 0 in s for s in out_shapes) or any(t is None for t in out_types):
        return None
    return [(tuple(s), t) for s, t in zip(out_shapes, out_types)]
