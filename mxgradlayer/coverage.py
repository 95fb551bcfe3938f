# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""`check`: which operators and layers of a network can be differentiated, before any
training (the function is ``mxgradlayer.check``; this module is its home)."""
import mxnet as mx
import numpy as np

from . import rules  # noqa: F401
from .errors import MXGradLayerError
from .registry import entry, op_key
from .tracing import TraceOptions, resolve_input_specs, trace
from .transform import depends_on, forward, reverse

__all__ = ['check', 'CoverageReport']

_MODES = ('reverse', 'forward', 'forward-Laplacian')


class CoverageReport:
    """Result of `check`.

    Attributes
    ----------
    nodes : list of (node name, operator, status)
        ``status`` is 'covered' (a rule), 'lowered' (rewritten into covered operators),
        'not covered', or 'constant' (does not depend on a differentiated input, needs
        no rule).
    layers : list of (layer name, block class, status, operators)
        The nodes grouped by the innermost Gluon block that created them; a layer is
        'not covered' when any of its nodes is, and 'refused in <sweeps>' when a sweep
        stopped at one of its nodes.
    modes : dict mode -> None or error message
        The outcome of building the reverse (InputGradient, VJP, HVP), forward (JVP,
        Jacobian) and forward-Laplacian sweeps symbolically: attribute combinations a
        rule refuses (a 3-D convolution in reverse, pooling with ceil_mode) and
        operators that mix samples show up here.
    ok : bool
        Every node on a differentiated path is covered and every sweep builds.
    """

    def __init__(self, nodes, layers, modes):
        self.nodes, self.layers, self.modes = nodes, layers, modes
        self.missing = [(n, op) for n, op, status in nodes if status == 'not covered']
        self.ok = not self.missing and all(v is None for v in modes.values())

    def __repr__(self):
        lines = ['by layer:', f'  {"layer":34s} {"block":18s} {"status":14s} operators']
        lines += [f'  {n:34s} {cls:18s} {s:14s} {", ".join(ops)}'
                  for n, cls, s, ops in self.layers]
        lines += ['by node:', f'  {"node":44s} {"operator":24s} status']
        lines += [f'  {n:44s} {op:24s} {s}' for n, op, s in self.nodes]
        lines.append('sweeps:')
        lines += [f'  {m:18s} ' + ('builds' if e is None else f'refused: {e}')
                  for m, e in self.modes.items()]
        if self.ok:
            lines.append('every operator on a differentiated path is covered')
        elif self.missing:
            lines.append(f'{len(self.missing)} operator(s) not covered: '
                         + ', '.join(sorted({op for _, op in self.missing})))
        else:
            lines.append('every operator has rules, but some sweeps are refused (above)')
        return '\n'.join(lines)


def _layer_prefixes(net):
    """(prefix, name, class) of every block under ``net``, innermost first when sorted."""
    found = []

    def walk(block):
        found.append((block.prefix, block.name, type(block).__name__))
        for child in block._children.values():
            walk(child)
    walk(net)
    return sorted(found, key=lambda f: -len(f[0]))


def _layer_of(name, prefixes):
    for prefix, block_name, cls in prefixes:
        if prefix and name.startswith(prefix):
            return block_name, cls
    return '(top level)', ''


def _try_sweeps(net, specs, wrt):
    """Build each sweep on Symbols; None when it builds, else the error."""
    graph = trace(net, specs)
    # as Jacobian and Laplacian trace it, when called on arrays outside training
    per_sample_graph = trace(net, specs, options=TraceOptions(per_sample=True, training=False))
    inputs = [mx.sym.var(f'_check_in{i}', shape=s, dtype=np.dtype(t).name)
              for i, (s, t) in enumerate(specs)]
    params = {e.name: mx.sym.var(e.name) for e in graph.nodes
              if e.op == 'null' and e.nid not in graph.input_nids}
    tangents = {p: inputs[p] for p in wrt}
    outcome = {}
    for mode in _MODES:
        try:
            if mode == 'reverse':
                reverse(mx.sym, graph, inputs, params, list(wrt),
                        lambda outs: [mx.sym.ones_like(o) for o in outs])
            else:
                forward(mx.sym, per_sample_graph, inputs, params, tangents, K=1,
                        laplacian=mode == 'forward-Laplacian', per_sample=True)
            outcome[mode] = None
        except MXGradLayerError as err:
            outcome[mode] = err
    return outcome


def check(net, *inputs, wrt=None):
    """Report which operators and layers of ``net`` (called on ``inputs``) have derivative
    rules, and whether each kind of sweep can be built.

    Parameters
    ----------
    net : gluon.HybridBlock
    *inputs : NDArray
        Example inputs (only their shapes and dtypes are used).
    wrt : int or tuple of int, optional
        Input positions that would be differentiated (default: all floating inputs).

    Returns
    -------
    CoverageReport
        Printing it gives a table by layer, one by node and the sweeps' outcome.
    """
    specs = resolve_input_specs(list(inputs))
    graph = trace(net, specs, lowering=False)
    if wrt is None:
        wrt = [i for i, (_, t) in enumerate(specs) if np.issubdtype(np.dtype(t), np.floating)]
    wrt = list(wrt) if isinstance(wrt, (list, tuple)) else [wrt]
    live = depends_on(graph, wrt)
    prefixes = _layer_prefixes(net)
    nodes, by_layer = [], {}
    for eqn in graph.nodes:
        if eqn.op == 'null':
            continue
        key, opdef = op_key(eqn), entry(eqn)
        status = ('constant' if eqn.nid not in live else 'not covered' if opdef is None else
                  'covered' if opdef.rules or opdef.zero else 'lowered')
        nodes.append((eqn.name, key, status))
        layer = by_layer.setdefault(_layer_of(eqn.name, prefixes), [[], set()])
        layer[0].append(key)
        layer[1].add(status)
    try:
        errors = _try_sweeps(net, specs, wrt)
    except MXGradLayerError as err:  # a lowering refused (e.g. output_mean_var)
        errors = {m: err for m in _MODES}
    refused = {}  # layer -> sweeps refused at one of its nodes
    for mode, err in errors.items():
        node = getattr(err, 'node', None)
        if node:
            refused.setdefault(_layer_of(node, prefixes), []).append(mode)
    layers = []
    for (name, cls), (ops, statuses) in by_layer.items():
        status = ('not covered' if 'not covered' in statuses else
                  'constant' if statuses == {'constant'} else 'covered')
        if status == 'covered' and (name, cls) in refused:
            status = 'refused in ' + '/'.join(refused[(name, cls)])
        layers.append((name, cls, status, sorted(set(ops))))
    modes = {m: None if e is None else str(e).split('. ')[0] for m, e in errors.items()}
    return CoverageReport(nodes, layers, modes)
