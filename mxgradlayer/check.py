# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""mxgradlayer.check: which operators of a network have rules, before any training."""
import numpy as np

from . import rules  # noqa: F401
from .graph import resolve_input_specs, trace
from .registry import RULES, rule_key
from .transform import depends_on

__all__ = ['check', 'CoverageReport']


class CoverageReport:
    """Result of `check`: ``nodes`` is a list of (node name, operator, status) with
    status 'covered', 'not covered' or 'constant' (does not depend on the input, needs
    no rule); ``ok`` is True when every node on a differentiated path is covered."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.missing = [(n, op) for n, op, status in nodes if status == 'not covered']
        self.ok = not self.missing

    def __repr__(self):
        lines = [f'{"node":40s} {"operator":28s} status']
        lines += [f'{n:40s} {op:28s} {s}' for n, op, s in self.nodes]
        verdict = ('every operator on a differentiated path is covered' if self.ok else
                   f'{len(self.missing)} operator(s) not covered: '
                   + ', '.join(sorted({op for _, op in self.missing})))
        return '\n'.join(lines + [verdict])


def check(net, *inputs, wrt=None):
    """Report which operators of ``net`` (called on ``inputs``) have derivative rules.

    Parameters
    ----------
    net : gluon.HybridBlock
    *inputs : NDArray
        Example inputs (only their shapes and dtypes are used).
    wrt : int or tuple of int, optional
        Input positions that would be differentiated (default: all floating inputs).
    """
    specs = resolve_input_specs(list(inputs))
    graph = trace(net, specs)
    if wrt is None:
        wrt = [i for i, (_, t) in enumerate(specs) if np.issubdtype(np.dtype(t), np.floating)]
    wrt = wrt if isinstance(wrt, (list, tuple)) else [wrt]
    hot = depends_on(graph, list(wrt))
    nodes = []
    for eqn in graph.nodes:
        if eqn.op == 'null':
            continue
        key = rule_key(eqn)
        status = ('constant' if eqn.nid not in hot else
                  'covered' if key in RULES else 'not covered')
        nodes.append((eqn.name, key, status))
    return CoverageReport(nodes)
