# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The interpreters: walk a traced `Graph` with ``F`` and emit derivative operators.

`forward` pushes K batched tangents (and optionally Laplacians) through the graph in one
sweep; `reverse` pulls cotangents back.  Both evaluate the primal once, skip every node
that does not depend on a differentiated input (its derivative is zero), and never call
MXNet's own higher-order autograd: the result is an ordinary graph that MXNet trains with
its first-order backward, hybridizes and exports.
"""
from .errors import SampleCouplingError, UnsupportedOperatorError
from .graph import apply_op
from .registry import PRIMALS, ZERO_DERIVATIVE_OPS, RuleContext, add, lookup, rule_key

__all__ = ['forward', 'reverse', 'evaluate_primal', 'depends_on']


def depends_on(graph, input_positions):
    """Node ids whose value depends differentiably on the given graph inputs (a
    piecewise-constant operator such as ``floor`` or ``ones_like`` cuts the dependence)."""
    hot = {graph.input_nids[p] for p in input_positions if graph.input_nids[p] is not None}
    for eqn in graph.nodes:
        if (eqn.op != 'null' and rule_key(eqn) not in ZERO_DERIVATIVE_OPS
                and any(i in hot for i, _ in eqn.inputs)):
            hot.add(eqn.nid)
    return hot


def _variable_value(graph, eqn, inputs, params):
    pos = graph.input_nids.index(eqn.nid) if eqn.nid in graph.input_nids else None
    if pos is not None:
        return inputs[pos]
    if eqn.name not in params:
        raise UnsupportedOperatorError(
            'variable', eqn.name, 'evaluation',
            'the network reads a variable that is neither one of its inputs nor a '
            'Parameter of the block')
    return params[eqn.name]


def _primal(F, eqn, xs, memo):
    override = PRIMALS.get(rule_key(eqn))
    if override is not None:
        return override(F, eqn, xs, memo)
    return apply_op(F, eqn.op, xs, eqn.raw_attrs)


def evaluate_primal(F, graph, inputs, params, memo=None):
    """Primal values of every node: dict nid -> list of outputs.  (A Symbol's JSON holds
    only the ancestors of its outputs, so no node is evaluated in vain.)  ``memo``: the
    sweep's RuleContext memo, where a primal override leaves what its rules reuse."""
    vals, memo = {}, {} if memo is None else memo
    for eqn in graph.nodes:
        if eqn.op == 'null':
            vals[eqn.nid] = [_variable_value(graph, eqn, inputs, params)]
        else:
            vals[eqn.nid] = _primal(F, eqn, [vals[i][k] for i, k in eqn.inputs], memo)
    return vals


def _check_rule(rule, eqn, hot_inputs, mode):
    if rule.diff_args is not None:
        bad = [i for i in hot_inputs if i not in rule.diff_args]
        if bad:
            raise UnsupportedOperatorError(
                rule_key(eqn), eqn.name, mode,
                f'input {bad[0]} depends on the differentiated input, and the rule '
                f'differentiates only inputs {list(rule.diff_args)}')


def _check_sample_local(c, graph, eqn, hot_inputs):
    """With K > 1 folded directions, every node on the path must act sample by sample:
    axis 0 of its differentiated inputs and of its outputs is the batch axis (at every
    probed batch size), and no other axis depends on the batch size."""
    if not c.per_sample:
        return
    if not graph.batch_polymorphic:
        raise SampleCouplingError(eqn.op, eqn.name, 'the network only runs at one batch size')
    if not all(eqn.in_aligned[i] for i in hot_inputs):
        raise SampleCouplingError(eqn.op, eqn.name, 'an input without batch axis depends on '
                                  'the differentiated input')
    if not all(eqn.batch_aligned):
        raise SampleCouplingError(eqn.op, eqn.name, 'its output has no batch axis at axis 0')
    shapes = [eqn.in_shapes[i] for i in hot_inputs] + list(eqn.out_shapes)
    if any(None in s[1:] for s in shapes):
        raise SampleCouplingError(eqn.op, eqn.name, 'the batch size appears beyond axis 0')


def forward(F, graph, inputs, params, tangents, K=1, laplacian=False, per_sample=None):
    """Forward sweep.

    ``tangents`` maps input positions to folded tangents (K*B, *s).  Returns
    ``(outputs, output_tangents, output_laplacians)``; the last is None unless
    ``laplacian``, when the sweep also carries sum_k D^2 f[t_k, t_k] (the forward
    Laplacian of Li et al., 2023).  Zero derivatives come back as None.
    ``per_sample`` (default: K > 1) refuses operators that mix the samples of a batch.
    """
    c = RuleContext(F, K, per_sample)
    c1 = RuleContext(F, 1, per_sample=False, memo=c._memo)
    mode = 'forward-Laplacian' if laplacian else 'JVP'
    vals, tans, laps = {}, {}, {}
    for eqn in graph.nodes:
        nid = eqn.nid
        if eqn.op == 'null':
            vals[nid] = [_variable_value(graph, eqn, inputs, params)]
            pos = graph.input_nids.index(nid) if nid in graph.input_nids else None
            tans[nid] = [tangents.get(pos)]
            laps[nid] = [None]
            continue
        xs = [vals[i][k] for i, k in eqn.inputs]
        ans = _primal(F, eqn, xs, c._memo)
        vals[nid] = ans
        ts = [tans[i][k] for i, k in eqn.inputs]
        ls = [laps[i][k] for i, k in eqn.inputs]
        hot = [j for j, t in enumerate(ts) if t is not None]
        if not hot:
            tans[nid], laps[nid] = [None] * len(ans), [None] * len(ans)
            continue
        rule = lookup(eqn, mode)
        _check_rule(rule, eqn, hot, mode)
        _check_sample_local(c, graph, eqn, hot)
        tans[nid] = _pad(rule.jvp(c, eqn, xs, ans, ts), len(ans), eqn)
        laps[nid] = [None] * len(ans)
        if laplacian and rule.laplacian is not None:
            laps[nid] = _pad(rule.laplacian(c, eqn, xs, ans, ts, ls), len(ans), eqn)
        elif laplacian:
            lin = rule.jvp(c1, eqn, xs, ans, ls) if any(l is not None for l in ls) else None
            curv = rule.curvature(c, eqn, xs, ans, ts) if rule.curvature else None
            lin = _pad(lin, len(ans), eqn) if lin is not None else [None] * len(ans)
            curv = _pad(curv, len(ans), eqn) if curv is not None else [None] * len(ans)
            laps[nid] = [add(F, a, b) for a, b in zip(lin, curv)]
    outs = [vals[n][k] for n, k in graph.heads]
    out_t = [tans[n][k] for n, k in graph.heads]
    out_l = [laps[n][k] for n, k in graph.heads] if laplacian else None
    return outs, out_t, out_l


def _pad(result, n, eqn):
    result = list(result)
    if len(result) != n:
        raise AssertionError(f'rule for {eqn.op} returned {len(result)} values for {n} outputs')
    return result


def reverse(F, graph, inputs, params, wrt, cotangents, K=1, per_sample=None):
    """Reverse sweep: ``cotangents(outputs)`` returns one folded cotangent per head.

    Returns ``(outputs, grads)`` with one gradient per position in ``wrt``; a gradient
    that is structurally zero comes back as None.
    """
    c = RuleContext(F, K, per_sample)
    hot = depends_on(graph, wrt)
    vals = evaluate_primal(F, graph, inputs, params, c._memo)
    grads = {}
    outs = [vals[n][k] for n, k in graph.heads]
    for (n, k), g in zip(graph.heads, cotangents(outs)):
        if n in hot and g is not None:
            grads[(n, k)] = add(F, grads.get((n, k)), g)
    for eqn in reversed(graph.nodes):
        if eqn.op == 'null' or eqn.nid not in hot:
            continue
        gs = [grads.pop((eqn.nid, k), None) for k in range(len(vals[eqn.nid]))]
        if all(g is None for g in gs):
            continue
        hot_in = [j for j, (i, _) in enumerate(eqn.inputs) if i in hot]
        rule = lookup(eqn, 'VJP')
        _check_rule(rule, eqn, hot_in, 'VJP')
        _check_sample_local(c, graph, eqn, hot_in)
        xs = [vals[i][k] for i, k in eqn.inputs]
        c.hot = set(hot_in)
        in_gs = rule.vjp(c, eqn, xs, vals[eqn.nid], gs)
        if len(in_gs) != len(eqn.inputs):
            raise AssertionError(f'VJP rule for {eqn.op} returned {len(in_gs)} cotangents '
                                 f'for {len(eqn.inputs)} inputs')
        for j in hot_in:
            if in_gs[j] is not None:
                key = eqn.inputs[j]
                grads[key] = add(F, grads.get(key), in_gs[j])
    return outs, [grads.get((graph.input_nids[p], 0)) if graph.input_nids[p] is not None
                  else None for p in wrt]
