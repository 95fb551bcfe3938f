# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The interpreters: walk a traced `ir.Graph` with ``F`` and emit derivative operators.

`forward` pushes K batched tangents (and optionally Laplacians) through the graph in one
sweep; `taylor` pushes truncated Taylor series (several jets, one primal); `reverse`
pulls cotangents back.  Both evaluate the primal once, skip every node
that does not depend on a differentiated input (its derivative is zero), and never call
MXNet's own higher-order autograd: the result is an ordinary graph that MXNet trains with
its first-order backward, hybridizes and exports.

Before a node's rule runs, `_rule_for` checks, once per node and sweep, what the
registry's contract promises the rules: the entry has the kinds the mode needs, only its
``diff_args`` carry a derivative, its ``validate`` passes and, in a per-sample sweep, the
node acts sample by sample.  The rules themselves then test none of it.
"""
from mxnet import autograd
import mxnet as mx
import numpy as np

from .errors import SampleCouplingError, UnsupportedOperatorError
from .ir import apply_op
from .registry import add, op_key, zero_derivative_ops, entry

__all__ = ['forward', 'taylor', 'Jet', 'reverse', 'evaluate_primal', 'depends_on',
           'RuleContext', 'unrecorded', 'zeros_folded']


class _Unrecorded:
    """``mx.nd`` (or one of its namespaces) whose piecewise-constant operators run with
    autograd paused: they have no derivative, so recording them only adds hazards.

    In mxnet 1.9.1, a node all of whose output gradients are zero operators (the
    ``zeros_like`` that ``ones_like``, ``BlockGrad`` or a comparison pass back) is not
    differentiated; nnvm's gradient pass emits ``zeros_like`` of each of its inputs
    instead.  Imperative autograd keeps only the inputs an operator's own backward reads,
    and broadcast_add and broadcast_sub read none, so that ``zeros_like`` reads a freed
    array and the process dies in ``SetDependency``.  A derivative block seeds its
    reverse sweep with ones shaped like the network's output and builds masks from
    values nothing else differentiates, so without this a loss on ``InputGradient`` of
    ``Dense(x) + sum(sin(x))`` segfaulted in backward (README, known issues).  Cached
    graphs keep every array and are not affected.

    The operand that only lends its shape to ``broadcast_like`` and ``reshape_like`` gets
    such a zero gradient too (a Laplacian's curvature broadcast like a primal value that
    ends in a broadcast_add segfaulted the same way), so it is passed detached: the same
    data, no history, no operator.
    """

    def __init__(self, space):
        self._space = space

    def __getattr__(self, name):
        attr = getattr(self._space, name)
        if name in ('_internal', 'contrib'):
            return _Unrecorded(attr)
        if name in _SHAPE_OPERAND:
            def detached(lhs, rhs, *args, **kwargs):
                return attr(lhs, rhs.detach(), *args, **kwargs)
            return detached
        if name not in zero_derivative_ops():
            return attr

        def paused(*args, **kwargs):
            with autograd.pause():
                return attr(*args, **kwargs)
        return paused


_SHAPE_OPERAND = ('broadcast_like', 'reshape_like')

# from this many folded directions on, `RuleContext.sum_directions` and `repeat` are
# matrix products
_GEMM_DIRECTIONS = 8


def _folding_shape(K, eqn):
    """The per-sample shape of ``eqn``'s output when K directions are many enough to
    sum or repeat by a matrix product and the node's shape and dtype are known."""
    if K < _GEMM_DIRECTIONS or eqn is None or eqn.dtype is None or not eqn.out_shapes[0]:
        return None
    shape = tuple(eqn.out_shapes[0][1:])
    return None if None in shape else shape


def unrecorded(F):
    """``F`` itself for ``mx.sym``; for ``mx.nd``, a view that does not record
    piecewise-constant operators (see `_Unrecorded`)."""
    return _Unrecorded(F) if F is mx.nd else F


class RuleContext:
    """What a rule may use besides ``F``: folding helpers for ``K`` batched directions,
    a memo of primal factors shared by the sweep, and the inputs a VJP must return."""

    def __init__(self, F, K, per_sample=None, memo=None):
        self.F, self.K = unrecorded(F), K
        # per-sample blocks need sample-local operators even for one direction
        self.per_sample = K > 1 if per_sample is None else per_sample
        self._memo = {} if memo is None else memo
        self._local = {}     # what depends on this sweep's directions (Taylor powers)
        self._needed = None  # positions of the inputs a VJP must return (None: all)
        # weights of the top Taylor coefficient while a rule that collapses it itself
        # (``rule.collapses``) computes it; None otherwise
        self.collapsing = None
        # the all-ones seeds of a reverse sweep (`reverse`'s ``unit_seeds``): a product
        # with one is its other factor, so no operator is spent on it
        self._units = []

    def needs(self, j):
        """Whether a VJP rule must compute the cotangent of input ``j`` (it depends on
        a differentiated input); skipping the others saves work and avoids refusing a
        broadcast parameter that is not differentiated anyway."""
        return self._needed is None or j in self._needed

    def memo(self, key, make):
        """A primal-derived factor built once per sweep (MXNet does not merge duplicates)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def memo_local(self, key, make):
        """Like `memo`, for values built from this context's own tangents or series."""
        if key not in self._local:
            self._local[key] = make()
        return self._local[key]

    def apply(self, eqn, inputs, **overrides):
        attrs = dict(eqn.raw_attrs)
        attrs.update({k: str(v) for k, v in overrides.items()})
        return apply_op(self.F, eqn.op, inputs, attrs)

    def scale(self, t, d, broadcast=False, eqn=None):
        """Multiply folded directions ``t`` (K*B, *s) by a primal factor ``d`` (B, *s).

        ``broadcast``: the two may differ in shape by numpy broadcasting (same rank).
        ``eqn``: the node whose output shape and dtype ``d`` has (see `repeat`).
        """
        if t is None:
            return None
        F = self.F
        if self.K == 1:
            if not broadcast and any(t is u for u in self._units):
                return d
            return F.broadcast_mul(t, d) if broadcast else F.elemwise_mul(t, d)
        if not broadcast:
            return F.elemwise_mul(t, self.repeat(d, eqn))
        unfolded = F.reshape(t, shape=(-4, self.K, -1, -2))
        return F.reshape(F.broadcast_mul(unfolded, F.expand_dims(d, axis=0)), shape=(-3, -2))

    def memo_value(self, x, what, make):
        """``make(x)``, built once per sweep for the value ``x`` (a primal array or
        Symbol) and ``what`` is made of it."""
        # keyed by identity; the entry holds x itself, so the id cannot be reused meanwhile
        key = (id(x), what)
        if key not in self._memo or self._memo[key][0] is not x:
            self._memo[key] = (x, make(x))
        return self._memo[key][1]

    def repeat(self, x, eqn=None):
        """Primal ``x`` (B, *s) repeated for the K folded directions: (K*B, *s).

        A concatenation rather than a broadcast: MXNet's backward of a broadcast is a
        generic reduction, several times slower than the slices that undo a concat.
        ``eqn``: the node whose output shape and dtype ``x`` has; with it, many
        directions are repeated by a matrix product instead (as in `sum_directions`).
        """
        if self.K == 1:
            return x
        F, K = self.F, self.K
        shape = _folding_shape(K, eqn)
        if shape is not None:
            return self.memo_value(x, ('repeat-product', K), lambda x: F.reshape(F.dot(
                F.ones(shape=(K, 1), dtype=np.dtype(eqn.dtype).name),
                F.reshape(x, shape=(1, -1))), shape=(-1,) + shape))
        return self.memo_value(x, ('repeat', K),
                               lambda x: F.concat(*([x] * K), dim=0))

    def sum_directions(self, t, eqn=None):
        """Sum folded directions (K*B, *s) -> (B, *s).

        ``eqn``: the node whose output shape and dtype ``t`` has; with it, many
        directions are summed by a matrix product (below).
        """
        # MXNet's reduction over a new axis is several times slower than add_n over K
        # slices (2.3 against 0.4 ms for K = 2, B = 4096, 64 features); for many
        # directions, ones (1, K) times the (K, B*S) view is faster still, with a
        # backward that is one outer product instead of a concatenation of K slices
        # (with backward, B = 1024, 64 features: K = 32 2.9-3.5 against 4.3-4.7 ms,
        # K = 8 0.67-0.71 against 0.83-0.98 ms; K = 2 and 4 the other way)
        F, K = self.F, self.K
        if K == 1:
            return t
        shape = _folding_shape(K, eqn)
        if shape is not None:
            ones = F.ones(shape=(1, K), dtype=np.dtype(eqn.dtype).name)
            total = F.dot(ones, F.reshape(t, shape=(K, -1)))
            return F.reshape(total, shape=(-1,) + shape)
        parts = F.split(t, num_outputs=K, axis=0)
        return F.add_n(*[parts[k] for k in range(K)])

    def collapse(self, t, weights):
        """sum_k weights[k] t_k over the folded directions (K*B, *s) -> (B, *s).

        Directions of equal weight are summed first (add_n, as in `sum_directions`), so
        the Laplacian's n equal weights cost one multiplication, the biharmonic's two.
        """
        if t is None:
            return None
        F = self.F
        parts = F.split(t, num_outputs=self.K, axis=0) if self.K > 1 else [t]
        groups = {}
        for k, w in enumerate(weights):
            if w != 0.0:
                groups.setdefault(float(w), []).append(parts[k])
        terms = [(F.add_n(*ps) if len(ps) > 1 else ps[0]) * w if w != 1.0 else
                 (F.add_n(*ps) if len(ps) > 1 else ps[0]) for w, ps in groups.items()]
        return terms[0] if len(terms) == 1 else F.add_n(*terms)

    def zeros_tangent(self, x):
        """A zero tangent for primal ``x`` in folded layout: (K*B, *s)."""
        return self.repeat(self.F.zeros_like(x))

    def coupling(self, eqn, why):
        """Refuse an operator that mixes samples, in a per-sample computation: for what
        only the rule sees (an operand broadcast along the batch axis, a weight that
        depends on the input); a whole operator that acts along the batch axis says so
        in its entry (``couples``), and the interpreter checks it."""
        if self.per_sample:
            raise SampleCouplingError(eqn.op, eqn.name, why)


def zeros_folded(F, x, K):
    """Zero tangents of K folded directions for primal ``x``: (K*B, *s)."""
    return RuleContext(F, K).zeros_tangent(x)


def _is_zero(opdef):
    """A node whose entry says its derivative is 0 (``opdef``: its entry, or None)."""
    return opdef is not None and opdef.zero


def depends_on(graph, input_positions):
    """Node ids whose value depends differentiably on the given graph inputs (a
    piecewise-constant operator such as ``floor`` or ``ones_like`` cuts the dependence)."""
    live = {graph.input_nids[p] for p in input_positions if graph.input_nids[p] is not None}
    for eqn in graph.nodes:
        if eqn.op != 'null' and not _is_zero(entry(eqn)) and any(i in live for i, _ in eqn.inputs):
            live.add(eqn.nid)
    return live


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


def _primal(F, eqn, opdef, xs, memo):
    """The node's value: its entry's primal override where MXNet's kernel is inexact or
    its backward wrong, else the operator itself."""
    if opdef is not None and opdef.primal is not None:
        return opdef.primal(F, eqn, xs, memo)
    return apply_op(F, eqn.op, xs, eqn.raw_attrs)


def evaluate_primal(F, graph, inputs, params, memo=None):
    """Primal values of every node: dict nid -> list of outputs.  (A Symbol's JSON holds
    only the ancestors of its outputs, so no node is evaluated in vain.)  ``memo``: the
    sweep's RuleContext memo, where a primal override leaves what its rules reuse."""
    F = unrecorded(F)
    vals, memo = {}, {} if memo is None else memo
    for eqn in graph.nodes:
        if eqn.op == 'null':
            vals[eqn.nid] = [_variable_value(graph, eqn, inputs, params)]
        else:
            vals[eqn.nid] = _primal(F, eqn, entry(eqn), [vals[i][k] for i, k in eqn.inputs],
                                    memo)
    return vals


def _rule_for(c, graph, eqn, opdef, active, mode):
    """The node's `OpDef` (``entry(eqn)``, looked up once per node by the sweep), after
    every check the rules rely on; ``active`` are the positions of the inputs that carry
    a derivative."""
    key = op_key(eqn)
    if opdef is None or not opdef.supports(mode):
        raise UnsupportedOperatorError(key, eqn.name, mode)
    if opdef.diff_args is not None:
        bad = [j for j in active if j not in opdef.diff_args]
        if bad:
            why = (f'input {bad[0]} depends on the differentiated input, and the rule '
                   f'differentiates only inputs {list(opdef.diff_args)}')
            if opdef.not_differentiable:
                why += f': {opdef.not_differentiable}'
            raise UnsupportedOperatorError(key, eqn.name, mode, why)
    if opdef.validate is not None:
        why = opdef.validate(eqn)
        if why:
            raise UnsupportedOperatorError(key, eqn.name, mode, why)
    if c.per_sample:
        _check_sample_local(graph, eqn, active, opdef)
    return opdef


def _check_sample_local(graph, eqn, active, opdef):
    """With K > 1 folded directions, every node on the path must act sample by sample:
    axis 0 of its differentiated inputs and of its outputs is the batch axis (at every
    probed batch size), and no other axis depends on the batch size."""
    why = opdef.couples(eqn) if opdef.couples is not None else None
    if why:
        raise SampleCouplingError(eqn.op, eqn.name, why)
    if not graph.batch_polymorphic:
        raise SampleCouplingError(eqn.op, eqn.name, 'the network only runs at one batch size')
    if not all(eqn.in_aligned[i] for i in active):
        raise SampleCouplingError(eqn.op, eqn.name, 'an input without batch axis depends on '
                                  'the differentiated input')
    if not all(eqn.batch_aligned):
        raise SampleCouplingError(eqn.op, eqn.name, 'its output has no batch axis at axis 0')
    shapes = [eqn.in_shapes[i] for i in active] + list(eqn.out_shapes)
    if any(None in s[1:] for s in shapes):
        raise SampleCouplingError(eqn.op, eqn.name, 'the batch size appears beyond axis 0')


def _one_each(result, n, eqn, what):
    result = list(result)
    if len(result) != n:
        raise AssertionError(f'{what} rule of {op_key(eqn)} returned {len(result)} values '
                             f'for {n}')
    return result


def forward(F, graph, inputs, params, tangents, K=1, laplacian=False, per_sample=None):
    """Forward sweep.

    ``tangents`` maps input positions to folded tangents (K*B, *s).  Returns
    ``(outputs, output_tangents, output_laplacians)``; the last is None unless
    ``laplacian``, when the sweep also carries sum_k D^2 f[t_k, t_k] (the forward
    Laplacian of Li et al., 2023).  Zero derivatives come back as None.
    ``per_sample`` (default: K > 1) refuses operators that mix the samples of a batch.
    """
    F = unrecorded(F)
    c = RuleContext(F, K, per_sample)
    c1 = RuleContext(F, 1, per_sample=False, memo=c._memo)
    mode = 'forward-Laplacian' if laplacian else 'JVP'
    vals, tans, laps = {}, {}, {}
    for eqn in graph.nodes:
        nid = eqn.nid
        if eqn.op == 'null':
            vals[nid] = [_variable_value(graph, eqn, inputs, params)]
            pos = graph.input_nids.index(nid) if nid in graph.input_nids else None
            tans[nid], laps[nid] = [tangents.get(pos)], [None]
            continue
        xs = [vals[i][k] for i, k in eqn.inputs]
        opdef = entry(eqn)
        ans = _primal(F, eqn, opdef, xs, c._memo)
        vals[nid] = ans
        n = len(ans)
        tans[nid], laps[nid] = [None] * n, [None] * n
        ts = [tans[i][k] for i, k in eqn.inputs]
        active = [j for j, t in enumerate(ts) if t is not None]
        if not active or _is_zero(opdef):
            continue
        rules = _rule_for(c, graph, eqn, opdef, active, mode).rules
        tans[nid] = _one_each(rules['jvp'](c, eqn, xs, ans, ts), n, eqn, 'JVP')
        if not laplacian:
            continue
        ls = [laps[i][k] for i, k in eqn.inputs]
        if 'laplacian' in rules:
            laps[nid] = _one_each(rules['laplacian'](c, eqn, xs, ans, ts, ls), n, eqn,
                                  'forward-Laplacian')
            continue
        lin = ([None] * n if all(l is None for l in ls) else
               _one_each(rules['jvp'](c1, eqn, xs, ans, ls), n, eqn, 'JVP'))
        curv = _one_each(rules['curvature'](c, eqn, xs, ans, ts), n, eqn, 'curvature')
        laps[nid] = [add(F, a, b) for a, b in zip(lin, curv)]
    outs = [vals[n][k] for n, k in graph.heads]
    out_t = [tans[n][k] for n, k in graph.heads]
    out_l = [laps[n][k] for n, k in graph.heads] if laplacian else None
    return outs, out_t, out_l


class Jet:
    """One set of Taylor series pushed through a graph by `taylor`.

    ``series`` maps input positions to ``[x_1, ..., x_order]`` (normalised coefficients,
    folded: (K*B, *s); None entries are zero); ``weights`` (K floats) collapses the top
    coefficient: it is carried as sum_k w_k x_order,k, shape
    (B, *s), from the start (collapsed Taylor mode, Dangel et al. 2025).  The top
    coefficient is linear in the inputs' top coefficients, so the collapse is exact.
    """

    def __init__(self, series, order, K=1, weights=None, per_sample=None):
        self.series, self.order, self.K, self.weights = series, order, K, weights
        self.per_sample = per_sample


def _input_series(c, jet, pos):
    s = jet.series.get(pos)
    if s is None:
        return None
    s = list(s) + [None] * (jet.order - len(s))
    if jet.weights is not None:
        s[-1] = c.collapse(s[-1], jet.weights)
    return s if any(x is not None for x in s) else None


def taylor(F, graph, inputs, params, jets):
    """Taylor-mode sweep: every `Jet` through the graph in one pass over its nodes, the
    primal evaluated once for all of them.

    Returns ``(outputs, series)``: ``series[j][i]`` is head i's ``[y_1, ..., y_order]``
    for jet j (None: no derivative; entries None where zero), its last entry collapsed
    where the jet has weights.  Coefficient k of a node's output is the JVP rule applied
    to the inputs' coefficient k plus the node's ``taylor`` rule of the lower ones.
    """
    F = unrecorded(F)
    memo = {}
    contexts = [RuleContext(F, j.K, j.per_sample, memo) for j in jets]
    tops = [RuleContext(F, 1, per_sample=False, memo=memo) for _ in jets]
    vals, sers = {}, [{} for _ in jets]
    for eqn in graph.nodes:
        nid = eqn.nid
        if eqn.op == 'null':
            vals[nid] = [_variable_value(graph, eqn, inputs, params)]
            pos = graph.input_nids.index(nid) if nid in graph.input_nids else None
            for c, jet, ser in zip(contexts, jets, sers):
                ser[nid] = [_input_series(c, jet, pos) if pos is not None else None]
            continue
        xs = [vals[i][k] for i, k in eqn.inputs]
        opdef = entry(eqn)
        ans = _primal(F, eqn, opdef, xs, memo)
        vals[nid] = ans
        n = len(ans)
        for c, top, jet, ser in zip(contexts, tops, jets, sers):
            ser[nid] = [None] * n
            ins = [ser[i][k] for i, k in eqn.inputs]
            active = [j for j, s in enumerate(ins) if s is not None]
            if not active or _is_zero(opdef):
                continue
            rules = _rule_for(c, graph, eqn, opdef, active, 'Taylor').rules
            outs = [[] for _ in range(n)]
            for k in range(1, jet.order + 1):
                collapsed = jet.weights is not None and k == jet.order
                ts = [s[k - 1] if s is not None else None for s in ins]
                lin = ([None] * n if all(t is None for t in ts) else
                       _one_each(rules['jvp'](top if collapsed else c, eqn, xs, ans, ts), n,
                                 eqn, 'JVP'))
                if k > 1:
                    lower = [s[:k - 1] if s is not None else None for s in ins]
                    rule = rules['taylor']
                    # a rule that collapses itself can sum the directions before it
                    # multiplies by primal factors (f^(m)(x_0) in Faa di Bruno): K times
                    # fewer products, and no repeated primal
                    early = collapsed and getattr(rule, 'collapses', False)
                    c.collapsing = jet.weights if early else None
                    try:
                        rest = _one_each(rule(c, eqn, xs, ans, lower, outs, k), n, eqn,
                                         'Taylor')
                    finally:
                        c.collapsing = None
                    if collapsed and not early:
                        rest = [c.collapse(r, jet.weights) for r in rest]
                    lin = [add(F, a, b) for a, b in zip(lin, rest)]
                for i in range(n):
                    outs[i].append(lin[i])
            ser[nid] = [o if any(t is not None for t in o) else None for o in outs]
    outs = [vals[n][k] for n, k in graph.heads]
    return outs, [[ser[n][k] for n, k in graph.heads] for ser in sers]


def reverse(F, graph, inputs, params, wrt, cotangents, K=1, per_sample=None,
            unit_seeds=False):
    """Reverse sweep: ``cotangents(outputs)`` returns one folded cotangent per head.

    Returns ``(outputs, grads)`` with one gradient per position in ``wrt``; a gradient
    that is structurally zero comes back as None.  ``unit_seeds``: the cotangents are
    all ones (``ones_like`` of the outputs, K = 1), so an elementwise product with them
    is the other factor (u = x g(x) + 1, a PINN's boundary ansatz, then costs no
    multiplication by its seed).
    """
    F = unrecorded(F)
    c = RuleContext(F, K, per_sample)
    live = depends_on(graph, wrt)
    vals = evaluate_primal(F, graph, inputs, params, c._memo)
    grads = {}
    outs = [vals[n][k] for n, k in graph.heads]
    seeds = list(cotangents(outs))
    if unit_seeds and K == 1:
        c._units = [g for g in seeds if g is not None]
    for (n, k), g in zip(graph.heads, seeds):
        if n in live and g is not None:
            grads[(n, k)] = add(F, grads.get((n, k)), g)
    for eqn in reversed(graph.nodes):
        if eqn.op == 'null' or eqn.nid not in live:
            continue
        gs = [grads.pop((eqn.nid, k), None) for k in range(len(vals[eqn.nid]))]
        if all(g is None for g in gs):
            continue
        active = [j for j, (i, _) in enumerate(eqn.inputs) if i in live]
        rules = _rule_for(c, graph, eqn, entry(eqn), active, 'VJP').rules
        xs = [vals[i][k] for i, k in eqn.inputs]
        c._needed = set(active)
        in_gs = _one_each(rules['vjp'](c, eqn, xs, vals[eqn.nid], gs), len(eqn.inputs), eqn,
                          'VJP')
        for j in active:
            if in_gs[j] is not None:
                key = eqn.inputs[j]
                grads[key] = add(F, grads.get(key), in_gs[j])
    results = [grads.get((graph.input_nids[p], 0)) if graph.input_nids[p] is not None
               else None for p in wrt]
    # with unit seeds a gradient can be a primal value itself (d(x y)/dx = y, an input):
    # returned as a copy, never as an alias of an array the caller holds
    primal = [v for vs in vals.values() for v in vs]
    return outs, [F.identity(g) if g is not None and any(g is v for v in primal) else g
                  for g in results]
