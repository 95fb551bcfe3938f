# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The intermediate representation: a Symbol's JSON as `Eqn` records with static shapes.

A derivative block never differentiates Python code: it traces the wrapped block to an
MXNet Symbol (`tracing`) and reads the Symbol's JSON, which lists every operator with its
attributes.  Shapes come from MXNet's own shape inference, run with two batch sizes so
that every dimension that depends on the batch is recorded as ``None``: the rules then
emit only batch-polymorphic operators (reshape codes 0/-1/-3/-4, ``*_like`` operators),
and one derived graph serves every batch size, as a hybridized Gluon block must.

This module imports nothing else of mxgradlayer's but its errors.
"""
import ast
import ctypes
import json

import mxnet as mx
import numpy as np

from .errors import InputSpecError

__all__ = ['Eqn', 'Graph', 'parse_attr', 'apply_op', 'first_line', 'INPUT_PREFIX',
           'KEEP_MARK', 'NUMPY_PREFIXES']

_PROBE_BATCHES = (2, 3)
# the traced block's inputs are Symbol variables named _mxgl_in0, _mxgl_in1, ...
INPUT_PREFIX = '_mxgl_in'
# A node carrying this attribute is never lowered (a lowering's own helper node).
KEEP_MARK = '__mxgl_keep__'


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
    """A traced block: variables (inputs and parameters), equations and heads.

    Attributes: ``nodes`` (`Eqn` list in topological order), ``heads`` (the outputs, as
    ``(node_id, output_index)``), ``input_nids`` (node of each input, None if unread),
    ``specs`` (the inputs' (shape, dtype)), ``batch_polymorphic`` (one graph serves every
    batch size), ``mode_dependent`` (built for one training mode).
    """

    def __init__(self, symbol, num_inputs, input_specs, batched=None, strict_types=True,
                 mode_dependent=False):
        self.symbol = symbol
        self.specs = list(input_specs)
        # the batch size it was traced at, which matters when not batch_polymorphic
        self.batch = tuple(input_specs[0][0][:1]) if input_specs else ()
        # built for one training mode (a BatchNorm lowered for it): see tracing.lower
        self.mode_dependent = mode_dependent
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
                    f'{[tuple(s[0]) for s in input_specs]}: {first_line(err)}') from None
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
                    f'match the network: {first_line(err)}. Cast the inputs (x.astype(...)) '
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


def first_line(err):
    """The line of an MXNetError that says what failed."""
    text = str(err).strip().splitlines()
    return next((t for t in text if 'Error' in t or 'Check failed' in t), text[0] if text else '')


def _merge_shapes(shapes):
    first = shapes[0]
    if any(len(s) != len(first) for s in shapes):
        return tuple(None for _ in first)
    return tuple(a if all(s[i] == a for s in shapes) else None for i, a in enumerate(first))


# Operators of MXNet's NumPy interface (``npx.set_np()``): see `_numpy_function`.
NUMPY_PREFIXES = ('_np_', '_npi_', '_npx_')
_NUMPY_FUNCTIONS = {}


def _numpy_function(symbolic, op):
    """MXNet's function of a NumPy-interface operator, applied to legacy arrays or Symbols.

    mxgradlayer's graphs hold legacy arrays (each NumPy operator it covers is lowered to
    legacy ones when traced, `mxgradlayer.rules.numpy`); the NumPy operators left in a
    graph (those it does not differentiate, which may still run off the differentiated
    path) accept NumPy arrays alone, so their inputs and outputs are viewed as such.  The
    views (``as_np_ndarray``, ``as_nd_ndarray``) share data and autograd history and add
    no node to a Symbol.
    """
    key = (symbolic, op)
    if key not in _NUMPY_FUNCTIONS:
        from mxnet.base import OpHandle, _LIB, c_str, check_call
        handle = OpHandle()
        check_call(_LIB.NNGetOpHandle(c_str(op), ctypes.byref(handle)))
        make = (mx.symbol.register._make_symbol_function if symbolic
                else mx.ndarray.register._make_ndarray_function)
        fn = make(handle, op, op)

        def bridged(*inputs, **attrs):
            out = fn(*[x.as_np_ndarray() for x in inputs], **attrs)
            if isinstance(out, (list, tuple)):
                return [o.as_nd_ndarray() for o in out]
            return out.as_nd_ndarray()
        _NUMPY_FUNCTIONS[key] = bridged
    return _NUMPY_FUNCTIONS[key]


def _op_function(F, op):
    if op.startswith(NUMPY_PREFIXES):
        return _numpy_function(F is mx.sym, op)
    for space in (F, F._internal, getattr(F, 'contrib', None)):
        fn = getattr(space, op, None) if space is not None else None
        if fn is not None:
            return fn
    if op.startswith('_contrib_'):
        return getattr(F.contrib, op[len('_contrib_'):])
    raise AttributeError(f'MXNet has no operator {op!r}')


def apply_op(F, op, inputs, attrs=None, name=None):
    """Apply MXNet operator ``op`` with ``F`` (mx.nd, mx.sym, or the interpreter's view of
    mx.nd, `transform.unrecorded`); always return a list."""
    marks = {k: v for k, v in (attrs or {}).items() if k.startswith(KEEP_MARK)}
    attrs = {k: v for k, v in (attrs or {}).items() if not k.startswith('__')}
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
