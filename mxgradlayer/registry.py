# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The single table of derivative rules, keyed by MXNet operator name.

Every rule receives ``(c, eqn, xs, ans, ...)``: ``c`` is the `RuleContext` (``c.F`` is
``mx.nd`` or ``mx.sym``, ``c.K`` the number of tangents folded into the batch axis),
``eqn`` the `Eqn` record (parsed ``attrs``, static shapes), ``xs`` the primal inputs,
``ans`` the primal outputs (a list).  Then:

* ``jvp(c, eqn, xs, ans, ts)``: ``ts`` has one tangent per input (``None`` = zero);
  returns one tangent per output (``None`` = zero).
* ``vjp(c, eqn, xs, ans, gs)``: ``gs`` has one cotangent per output (``None`` = zero);
  returns one cotangent per input (``None`` = zero or not differentiated).
* ``curvature(c, eqn, xs, ans, ts)``: for the forward Laplacian, the second-order term
  sum_k D^2 f(x)[t_k, t_k] per output; a rule without one is linear in its inputs.
* ``laplacian(c, eqn, xs, ans, ts, ls)`` (optional): the whole forward-Laplacian step,
  where ``ls`` are the inputs' Laplacians; for rules that need fewer operators than
  ``jvp(ls) + curvature(ts)`` (elementwise rows with a ``ratio``).

Tangents and cotangents are batched by folding: ``K`` directions of a tensor of shape
(B, *s) are one tensor of shape (K*B, *s), direction-major.  Operators that act on each
sample alone then apply unchanged to it; rules only re-broadcast primal factors
(`RuleContext.scale`).  Rules emit only operators that are themselves in this table, so
every derived graph can be differentiated again (tests/test_closure.py checks it).
"""
import inspect

import mxnet as mx
from mxnet import autograd

from .errors import UnsupportedOperatorError, SampleCouplingError
from .graph import apply_op

__all__ = ['Rule', 'RULES', 'defrule', 'def_elementwise', 'def_zero', 'def_linear',
           'supported_ops', 'lookup', 'RuleContext', 'ZERO_DERIVATIVE_OPS', 'PRIMALS',
           'LOWERINGS', 'def_lowering', 'unrecorded']


class Rule:
    """The derivative rules of one operator (or one ``act_type`` of it)."""
    __slots__ = ('jvp', 'vjp', 'curvature', 'linear', 'diff_args', 'doc', 'laplacian')

    def __init__(self, jvp, vjp, curvature=None, linear=False, diff_args=None, doc='',
                 laplacian=None):
        self.jvp, self.vjp, self.curvature = jvp, vjp, curvature
        self.linear, self.diff_args, self.doc = linear, diff_args, doc
        self.laplacian = laplacian


RULES = {}
ZERO_DERIVATIVE_OPS = set()
# Operators whose MXNet kernel is replaced by primitives when the graph is re-applied,
# ``fn(F, eqn, xs, memo) -> outputs`` (``memo`` is shared with the sweep's rules):
# MXNet's LeakyReLU variants compute in float32 on float64 data, its SELU backward is
# wrong for x < 0, and its oneDNN max-pooling backward is wrong after an inference-mode
# forward, so their values and parameter gradients come from primitives.
PRIMALS = {}
# Operators rewritten into primitives when a block is traced (see graph.lower): the
# normalisations and Dropout, whose derivatives then follow from their parts' rules.
# A lowering is ``fn(F, eqn, xs, options) -> outputs``, or None to keep the node as it
# is; ``options`` is the trace's `graph.TraceOptions`, and a ``mode_dependent`` lowering
# (BatchNorm) reads ``options.training`` from it.
LOWERINGS = {}


def def_lowering(op, fn, mode_dependent=False, doc=''):
    fn.mode_dependent, fn.doc = mode_dependent, doc
    LOWERINGS[op] = fn


def defrule(op, jvp, vjp, curvature=None, linear=False, diff_args=None, doc='',
            laplacian=None):
    """Register the rules of ``op``; ``op`` may be ``'Activation:tanh'``-style."""
    RULES[op] = Rule(jvp, vjp, curvature, linear, diff_args, doc, laplacian)


def def_elementwise(op, d1, d2=None, ratio=None, doc=''):
    """Unary elementwise ``f``: ``d1(F, x, ans, attrs)`` is f'(x); for the forward
    Laplacian either ``d2``, f''(x), or ``ratio``, f''/f'.

    A ``d2`` with a ``d1`` keyword receives f'(x) as already built in the sweep (softrelu's
    f'' = s(1 - s) with s = f'), so the forward Laplacian does not compute it twice.
    ``ratio(F, x, ans, attrs)``, where f'' = ratio f' with a cheap ratio (tanh: -2 y), makes
    the forward-Laplacian step f' (l + ratio q) (l the input's Laplacian, q the sum of the
    squared tangents): four operators against five for f' l + f'' q, and f' is read by
    one operator fewer.  Activations are most of a PINN's derived graph (W2: 47 operators
    against 49, 3.5 % of the training step).
    """
    d2_reuses_d1 = d2 is not None and 'd1' in inspect.signature(d2).parameters
    def first(c, eqn, xs, ans):
        return c.memo((eqn.nid, 'd1'), lambda: d1(c.F, xs[0], ans[0], eqn.attrs))

    def jvp(c, eqn, xs, ans, ts):
        return [c.scale(ts[0], first(c, eqn, xs, ans))]

    def vjp(c, eqn, xs, ans, gs):
        return [c.scale(gs[0], first(c, eqn, xs, ans))]

    def curvature(c, eqn, xs, ans, ts):
        if d2 is None:
            return [None]
        if d2_reuses_d1:
            second = c.memo((eqn.nid, 'd2'), lambda: d2(c.F, xs[0], ans[0], eqn.attrs,
                                                        d1=first(c, eqn, xs, ans)))
        else:
            second = c.memo((eqn.nid, 'd2'), lambda: d2(c.F, xs[0], ans[0], eqn.attrs))
        return [c.F.elemwise_mul(second, c.sum_directions(c.F.square(ts[0])))]

    def laplacian(c, eqn, xs, ans, ts, ls):
        F = c.F
        r = c.memo((eqn.nid, 'ratio'), lambda: ratio(F, xs[0], ans[0], eqn.attrs))
        inner = F.elemwise_mul(r, c.sum_directions(F.square(ts[0])))
        if ls[0] is not None:
            inner = F.elemwise_add(ls[0], inner)
        return [F.elemwise_mul(first(c, eqn, xs, ans), inner)]
    if ratio is not None:
        defrule(op, jvp, vjp, doc=doc, laplacian=laplacian)
    else:
        defrule(op, jvp, vjp, curvature, doc=doc)


def def_linear(op, transpose, jvp=None, doc=''):
    """An operator linear in its data input(s): the JVP re-applies it to the tangents."""
    def same(c, eqn, xs, ans, ts):
        if all(t is None for t in ts):
            return [None] * eqn.num_outputs
        ts = [c.zeros_tangent(x) if t is None else t for x, t in zip(xs, ts)]
        return c.apply(eqn, ts)
    defrule(op, jvp or same, transpose, None, linear=True, doc=doc)


def _zero_jvp(c, eqn, xs, ans, ts):
    return [None] * eqn.num_outputs


def _zero_vjp(c, eqn, xs, ans, gs):
    return [None] * len(xs)


def def_zero(*ops):
    """Piecewise-constant operators (sign, comparisons, *_like): derivative zero."""
    for op in ops:
        ZERO_DERIVATIVE_OPS.add(op)
        defrule(op, _zero_jvp, _zero_vjp, None, linear=True, doc='piecewise constant')


def add(F, a, b):
    """a + b where None stands for zero."""
    if a is None:
        return b
    if b is None:
        return a
    return F.elemwise_add(a, b)


_DISPATCH_ATTR = {'Activation': 'act_type', 'LeakyReLU': 'act_type'}


def rule_key(eqn):
    attr = _DISPATCH_ATTR.get(eqn.op)
    if attr is None:
        return eqn.op
    default = 'leaky' if eqn.op == 'LeakyReLU' else None
    return f'{eqn.op}:{eqn.attrs.get(attr, default)}'


def lookup(eqn, mode):
    """The rule for ``eqn``, or an `UnsupportedOperatorError` naming op, node and mode."""
    rule = RULES.get(rule_key(eqn))
    if rule is None or (mode == 'forward-Laplacian' and rule.curvature is None
                        and rule.laplacian is None and not rule.linear):
        raise UnsupportedOperatorError(rule_key(eqn), eqn.name, mode)
    return rule


def supported_ops():
    """Sorted list of the operators (``Op`` or ``Op:act_type``) that have rules or are
    rewritten into operators that have."""
    return sorted(set(RULES) | set(LOWERINGS))


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
        if name not in ZERO_DERIVATIVE_OPS:
            return attr

        def paused(*args, **kwargs):
            with autograd.pause():
                return attr(*args, **kwargs)
        return paused


_SHAPE_OPERAND = ('broadcast_like', 'reshape_like')


def unrecorded(F):
    """``F`` itself for ``mx.sym``; for ``mx.nd``, a view that does not record
    piecewise-constant operators (see `_Unrecorded`)."""
    return _Unrecorded(F) if F is mx.nd else F


class RuleContext:
    """What a rule may use besides ``F``: folding helpers for ``K`` batched directions."""

    def __init__(self, F, K, per_sample=None, memo=None):
        self.F, self.K = unrecorded(F), K
        # per-sample blocks need sample-local operators even for one direction
        self.per_sample = K > 1 if per_sample is None else per_sample
        self._memo = {} if memo is None else memo
        self.hot = None  # positions of the inputs a VJP must return (None: all)

    def needs(self, j):
        """Whether a VJP rule must compute the cotangent of input ``j`` (it depends on
        a differentiated input); skipping the others saves work and avoids refusing a
        broadcast parameter that is not differentiated anyway."""
        return self.hot is None or j in self.hot

    def memo(self, key, make):
        """A primal-derived factor built once per sweep (MXNet does not merge duplicates)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def apply(self, eqn, inputs, **overrides):
        attrs = dict(eqn.raw_attrs)
        attrs.update({k: str(v) for k, v in overrides.items()})
        return apply_op(self.F, eqn.op, inputs, attrs)

    def scale(self, t, d, broadcast=False):
        """Multiply folded directions ``t`` (K*B, *s) by a primal factor ``d`` (B, *s).

        ``broadcast``: the two may differ in shape by numpy broadcasting (same rank).
        """
        if t is None:
            return None
        F = self.F
        if self.K == 1:
            return F.broadcast_mul(t, d) if broadcast else F.elemwise_mul(t, d)
        if not broadcast:
            return F.elemwise_mul(t, self.repeat(d))
        unfolded = F.reshape(t, shape=(-4, self.K, -1, -2))
        return F.reshape(F.broadcast_mul(unfolded, F.expand_dims(d, axis=0)), shape=(-3, -2))

    def repeat(self, x):
        """Primal ``x`` (B, *s) repeated for the K folded directions: (K*B, *s).

        A concatenation rather than a broadcast: MXNet's backward of a broadcast is a
        generic reduction, several times slower than the slices that undo a concat.
        """
        if self.K == 1:
            return x
        # keyed by identity; the entry holds x itself, so the id cannot be reused meanwhile
        key = (id(x), 'repeat')
        if key not in self._memo or self._memo[key][0] is not x:
            self._memo[key] = (x, self.F.concat(*([x] * self.K), dim=0))
        return self._memo[key][1]

    def sum_directions(self, t):
        """Sum folded directions (K*B, *s) -> (B, *s).

        add_n over K slices: several times faster than a reduction over a new axis on
        MXNet's CPU kernels (0.4 ms against 2.3 ms for K = 2, B = 4096, 64 features).
        """
        if self.K == 1:
            return t
        parts = self.F.split(t, num_outputs=self.K, axis=0)
        return self.F.add_n(*[parts[k] for k in range(self.K)])

    def zeros_tangent(self, x):
        """A zero tangent for primal ``x`` in folded layout: (K*B, *s)."""
        return self.repeat(self.F.zeros_like(x))

    def coupling(self, eqn, why):
        """Refuse an operator that mixes samples, in a per-sample computation."""
        if self.per_sample:
            raise SampleCouplingError(eqn.op, eqn.name, why)
