# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The operator table: one `OpDef` per MXNet operator, filled only by the helpers below.

An entry holds everything mxgradlayer knows of an operator (or of one ``act_type`` of
``Activation`` / ``LeakyReLU``, keyed ``'Activation:tanh'``): its rules by kind, a
primal override, a lowering, the inputs it differentiates, an attribute validator and
how it treats the batch axis.  The family modules in `mxgradlayer.rules` fill it, one
short line per operator where a helper fits:

* `def_elementwise` (f' and f''), `def_linear` (a transpose), `def_bilinear` (a product
  and its two transposes), `def_zero` (piecewise constant), `def_lowering` (rewritten into
  covered operators when traced), and `define`, the general one all of them call.

Rules, by kind (``KINDS``); each receives ``(c, eqn, xs, ans, ...)``: ``c`` the
interpreter's `transform.RuleContext` (``c.F`` is ``mx.nd`` or ``mx.sym``, ``c.K`` the
number of directions folded into the batch axis), ``eqn`` the node (`ir.Eqn`: parsed
``attrs``, static shapes), ``xs`` the primal inputs, ``ans`` the primal outputs:

* ``jvp(c, eqn, xs, ans, ts)``: one tangent per input in, one per output out;
* ``vjp(c, eqn, xs, ans, gs)``: one cotangent per output in, one per input out;
* ``curvature(c, eqn, xs, ans, ts)``: for the forward Laplacian, the second-order term
  sum_k D^2 f(x)[t_k, t_k] per output (`no_curvature` for operators linear in their
  differentiated inputs);
* ``laplacian(c, eqn, xs, ans, ts, ls)`` (optional, used instead of jvp(ls) + curvature):
  the whole forward-Laplacian step, where ``ls`` are the inputs' Laplacians;
* ``taylor(c, eqn, xs, ans, ins, outs, k)``: for Taylor mode, coefficient k >= 2 of each
  output's Taylor series minus the part linear in the inputs' coefficient k (which the
  interpreter adds with the JVP rule); ``ins[j]`` is input j's series ``[x_1 .. x_(k-1)]``
  (None if it carries none), ``outs[i]`` output i's ``[y_1 .. y_(k-1)]`` (`series`).
  `no_higher_terms` for operators linear in their differentiated inputs.  The
  interpreter sums the top coefficient of a collapsed sweep over its directions; a rule
  marked ``collapses = True`` does that itself when ``c.collapsing`` holds the weights
  (and may then sum before multiplying by primal factors, as `faa_di_bruno` does).

Zero is None, everywhere: a zero tangent, cotangent, curvature or Laplacian is None, in
and out, and an operator whose derivative vanishes is `def_zero` (the interpreter then
calls none of its rules).  What the interpreter (`transform`) guarantees every rule:

* it runs for a node on a differentiated path, with at least one tangent (JVP,
  curvature, step) or cotangent (VJP) that is not None; so a rule's only input tangent or
  only output cotangent is never None;
* the inputs that carry a derivative are among the entry's ``diff_args``;
* the entry's ``validate(eqn)`` returned None (a string is the reason to refuse);
* in a per-sample sweep, ``couples(eqn)`` returned None and the node keeps axis 0 as the
  batch axis of its differentiated inputs and outputs;
* a VJP need only return the cotangents of inputs ``j`` with ``c.needs(j)``.

Tangents and cotangents are batched by folding: K directions of a tensor of shape (B, *s)
are one tensor of shape (K*B, *s), direction-major, so an operator that acts on each
sample alone applies unchanged to them, and rules only re-broadcast primal factors
(``c.scale``, ``c.repeat``).  Rules emit only operators that are themselves in this
table, so every derived graph can be differentiated again (tests/test_closure.py).
"""
import inspect

from .series import autonomous, cauchy, faa_di_bruno

__all__ = ['OpDef', 'KINDS', 'define', 'def_elementwise', 'def_linear', 'def_bilinear',
           'def_zero', 'def_lowering', 'no_curvature', 'no_higher_terms', 'entry', 'op_key',
           'supported_ops', 'aliases', 'operators', 'zero_derivative_ops', 'add']

# The rule kinds; a new mode adds its kind here and its rules beside the others.
KINDS = ('jvp', 'vjp', 'curvature', 'laplacian', 'taylor')
# The kinds each interpreter mode needs (any one of a tuple's alternatives).
_NEEDS = {'JVP': ('jvp',), 'VJP': ('vjp',), 'Taylor': ('jvp', 'taylor'),
          'forward-Laplacian': ('jvp', ('curvature', 'laplacian'))}


class OpDef:
    """Everything known of one operator.  Entries are replaced, never changed in place.

    Attributes
    ----------
    name : str
        The key: the MXNet operator name, or ``'Op:act_type'``.
    rules : dict
        kind -> rule function (see the module's contract).
    primal : callable or None
        ``fn(F, eqn, xs, memo) -> outputs``, replacing MXNet's kernel when the traced graph
        is evaluated (where MXNet's kernel is inexact or its backward wrong); ``memo`` is
        shared with the sweep's rules, so a factor they reuse is built once.
    lowering : callable or None
        ``fn(F, eqn, xs, options) -> outputs or None``, rewriting the node into covered
        operators when a block is traced (None: keep this node as it is); ``options``
        is the trace's `tracing.TraceOptions`.
    mode_dependent : bool
        The lowering depends on ``options.training`` (BatchNorm).
    diff_args : tuple of int or None
        The inputs that may depend on a differentiated input (None: all).
    not_differentiable : str
        Why the other inputs cannot be differentiated, for the error.
    validate : callable or None
        ``fn(eqn) -> None or reason``: attribute combinations the rules do not cover.
    couples : callable or None
        ``fn(eqn) -> None or reason``: why the node mixes the samples of a batch (it acts
        along the batch axis), refused in per-sample sweeps.
    zero : bool
        The derivative is zero (piecewise constant): no rule runs, nothing depends on it.
    aliases : tuple of str
        Other names MXNet gives the same operator; they share this entry.
    doc : str
    """
    __slots__ = ('name', 'rules', 'primal', 'lowering', 'mode_dependent', 'diff_args',
                 'not_differentiable', 'validate', 'couples', 'zero', 'aliases', 'doc')

    def __init__(self, name):
        self.name, self.rules = name, {}
        self.primal = self.lowering = self.diff_args = self.validate = self.couples = None
        self.mode_dependent = self.zero = False
        self.aliases, self.doc, self.not_differentiable = (), '', ''

    def replaced(self, rules, fields):
        new = OpDef(self.name)
        for slot in self.__slots__:
            setattr(new, slot, getattr(self, slot))
        new.rules = {**self.rules, **rules}
        for key, value in fields.items():
            setattr(new, key, value)
        return new

    def supports(self, mode):
        return self.zero or all(
            any(k in self.rules for k in (need if isinstance(need, tuple) else (need,)))
            for need in _NEEDS[mode])

    def __repr__(self):
        return f'OpDef({self.name}: {", ".join(self.rules) or "no rules"})'


_OPS = {}      # name or alias -> OpDef
_ZERO = set()  # names of the def_zero operators (read on every imperative operator call)


def define(op, aliases=(), **fields):
    """Add to (or replace parts of) the entry of ``op``: rule kinds by keyword (``jvp=``,
    ``vjp=``, ``curvature=``, ``laplacian=``, or a new kind) and `OpDef` fields
    (``primal=``, ``lowering=``, ``diff_args=``, ``validate=``, ``couples=``, ...).
    ``aliases``: other names of the same operator, sharing the entry."""
    rules = {k: fields.pop(k) for k in list(fields) if k in KINDS}
    unknown = set(fields) - set(OpDef.__slots__)
    if unknown:
        raise TypeError(f'define({op!r}): unknown fields {sorted(unknown)}; rule kinds are '
                        f'{KINDS} (add a new kind to registry.KINDS)')
    old = _OPS.get(op) or OpDef(op)
    fields['aliases'] = tuple(dict.fromkeys(old.aliases + tuple(aliases)))
    new = old.replaced(rules, fields)
    for name in (op,) + new.aliases:
        _OPS[name] = new
        (_ZERO.add if new.zero else _ZERO.discard)(name)
    return new


def no_curvature(c, eqn, xs, ans, ts):
    """The curvature of an operator linear in its differentiated inputs: zero."""
    return [None] * eqn.num_outputs


def no_higher_terms(c, eqn, xs, ans, ins, outs, k):
    """The Taylor terms of an operator linear (or piecewise linear) in its differentiated
    inputs: coefficient k of the output is the JVP of the inputs' coefficient k."""
    return [None] * eqn.num_outputs


def add(F, a, b):
    """a + b where None stands for zero."""
    if a is None:
        return b
    if b is None:
        return a
    return F.elemwise_add(a, b)


def def_elementwise(op, d1, d2=None, ratio=None, nth=None, ode=None, aliases=(),
                    **fields):
    """Unary elementwise ``f`` from ``d1(F, x, ans, attrs)`` = f'(x) and, for the forward
    Laplacian, either ``d2`` = f''(x) (None: f'' = 0, as for relu) or ``ratio`` = f''/f';
    for Taylor mode, ``nth(F, x, ans, attrs, m)`` = the m-th derivative for m >= 2 (None
    where it is zero; not needed when f'' = 0).  Without ``nth``, a function with f'' != 0
    has no Taylor rule and Taylor mode refuses it.  ``ode``: the ascending coefficients
    of a polynomial P with f' = P(f) (tanh: 1 - f^2); Taylor mode then propagates the
    coefficients by that ODE's recurrence (`series.autonomous`, fewer products), and
    uses ``nth`` only for a collapsed coefficient, where Faa di Bruno sums the
    directions before it multiplies.

    A ``d2`` with a ``d1`` keyword receives f'(x) as already built in the sweep (softrelu's
    f'' = s(1 - s) with s = f'), so the forward Laplacian does not compute it twice.  A
    ``ratio`` where f'' = ratio f' is cheap (tanh: -2 y) makes the forward-Laplacian step
    f' (l + ratio q) (l the input's Laplacian, q the sum of the squared tangents): four
    operators against five for f' l + f'' q, and f' is read once less; activations are
    most of a PINN's derived graph.
    """
    if ode is not None and nth is None:
        # a collapsed coefficient always goes through Faa di Bruno, which needs nth
        raise TypeError(f'def_elementwise({op!r}): ode= needs nth= as well')
    d2_reuses_d1 = d2 is not None and 'd1' in inspect.signature(d2).parameters

    def first(c, eqn, xs, ans):
        return c.memo((eqn.nid, 'd1'), lambda: d1(c.F, xs[0], ans[0], eqn.attrs))

    def jvp(c, eqn, xs, ans, ts):
        return [c.scale(ts[0], first(c, eqn, xs, ans), eqn=eqn)]

    def vjp(c, eqn, xs, ans, gs):
        return [c.scale(gs[0], first(c, eqn, xs, ans), eqn=eqn)]

    def curvature(c, eqn, xs, ans, ts):
        if d2 is None:
            return [None]
        extra = {'d1': first(c, eqn, xs, ans)} if d2_reuses_d1 else {}
        second = c.memo((eqn.nid, 'd2'), lambda: d2(c.F, xs[0], ans[0], eqn.attrs, **extra))
        if second is None:  # f'' = 0 for these attributes
            return [None]
        return [c.F.elemwise_mul(second, c.sum_directions(c.F.square(ts[0]), eqn))]

    def laplacian(c, eqn, xs, ans, ts, ls):
        F = c.F
        r = c.memo((eqn.nid, 'ratio'), lambda: ratio(F, xs[0], ans[0], eqn.attrs))
        inner = F.elemwise_mul(r, c.sum_directions(F.square(ts[0]), eqn))
        if ls[0] is not None:
            inner = F.elemwise_add(ls[0], inner)
        return [F.elemwise_mul(first(c, eqn, xs, ans), inner)]

    def taylor(c, eqn, xs, ans, ins, outs, k):
        # a collapsed coefficient by Faa di Bruno, which sums each power over the
        # directions before the one product with f^(m)(x_0) (measured: the biharmonic at
        # d = 8 1.3 times faster than by the recurrence, which multiplies folded series)
        if ode is not None and c.collapsing is None:
            return [autonomous(c, eqn.nid, ins[0], outs[0], ans[0], k, ode)]
        return [faa_di_bruno(c, eqn.nid, ins[0], k, lambda m: derivative(c, eqn, xs, ans, m))]

    def derivative(c, eqn, xs, ans, m):
        # f'' from what the JVP and the forward Laplacian already hold where it is cheap
        # (tanh: -2y times f' = 1 - y^2, two operations against Horner's four)
        if m == 2 and ratio is not None:
            r = c.memo((eqn.nid, 'ratio'), lambda: ratio(c.F, xs[0], ans[0], eqn.attrs))
            return c.F.elemwise_mul(r, first(c, eqn, xs, ans))
        return nth(c.F, xs[0], ans[0], eqn.attrs, m)
    taylor.collapses = True  # faa_di_bruno honours c.collapsing

    second_order = {'laplacian': laplacian} if ratio is not None else {'curvature': curvature}
    if d2 is None and ratio is None:  # f'' = 0: piecewise linear
        second_order['taylor'] = no_higher_terms
    elif nth is not None:
        second_order['taylor'] = taylor
    return define(op, aliases, jvp=jvp, vjp=vjp, **second_order, **fields)


def def_linear(op, transpose, jvp=None, aliases=(), **fields):
    """An operator linear in its differentiated inputs: ``transpose`` is its VJP; the JVP
    re-applies the operator to the tangents (zeros for inputs without one) unless given."""
    return define(op, aliases, jvp=jvp or _reapplied, vjp=transpose, curvature=no_curvature,
                  taylor=no_higher_terms, **fields)


def _reapplied(c, eqn, xs, ans, ts):
    ts = [c.zeros_tangent(x) if t is None else t for x, t in zip(xs, ts)]
    return c.apply(eqn, ts)


def def_bilinear(op, product, transpose_left, transpose_right, shared_right=True,
                 right='right operand', bias=None, aliases=(), **fields):
    """``op(a, b[, bias])``, linear in ``a`` and in ``b`` separately (dot, FullyConnected).

    ``product(c, eqn, a, b)``: the operator without bias; ``transpose_left(c, eqn, g, a,
    b)`` and ``transpose_right(c, eqn, g, a, b)``: the cotangents of ``a`` and ``b``.  Then the
    JVP is product(ta, b) + product(a, tb), the curvature 2 product(ta, tb), the Taylor
    terms sum_{i=1}^{k-1} product(a_i, b_(k-i)) (Leibniz) and the VJP the two transposes.  ``shared_right``: ``b`` is shared by every sample (a weight matrix),
    so its tangent has no batch axis to fold directions into: exact for one direction and
    refused in per-sample sweeps (``right`` names it in the error); otherwise (batch_dot)
    ``b`` has a batch axis and primal factors are repeated for the folded directions.
    ``bias``: ``(tangent(c, eqn, t, ans), cotangent(c, eqn, g))`` of an additive third
    input, shared like a weight.
    """
    def operand(c, x):
        return c.repeat(x) if not shared_right else x

    def shared(c, eqn, what):
        if shared_right:
            c.coupling(eqn, f'its {what} depends on the input')

    def jvp(c, eqn, xs, ans, ts):
        out = None
        if ts[0] is not None:
            out = product(c, eqn, ts[0], operand(c, xs[1]))
        if ts[1] is not None:
            shared(c, eqn, right)
            out = add(c.F, out, product(c, eqn, operand(c, xs[0]), ts[1]))
        if len(ts) > 2 and ts[2] is not None:
            shared(c, eqn, 'bias')
            out = add(c.F, out, bias[0](c, eqn, ts[2], ans[0]))
        return [out]

    def curvature(c, eqn, xs, ans, ts):
        if ts[0] is None or ts[1] is None:
            return [None]
        return [c.sum_directions(product(c, eqn, ts[0], ts[1]), eqn) * 2.0]

    def taylor(c, eqn, xs, ans, ins, outs, k):
        return [cauchy(c.F, ins[0], ins[1], k, mul=lambda u, v: product(c, eqn, u, v))]

    def vjp(c, eqn, xs, ans, gs):
        out = [None] * len(xs)
        a, b = operand(c, xs[0]), operand(c, xs[1])
        if c.needs(0):
            out[0] = transpose_left(c, eqn, gs[0], a, b)
        if c.needs(1):
            shared(c, eqn, right)
            out[1] = transpose_right(c, eqn, gs[0], a, b)
        if len(xs) > 2 and c.needs(2):
            shared(c, eqn, 'bias')
            out[2] = bias[1](c, eqn, gs[0])
        return out
    return define(op, aliases, jvp=jvp, vjp=vjp, curvature=curvature, taylor=taylor,
                  **fields)


def def_zero(*ops):
    """Piecewise-constant operators (sign, comparisons, ``*_like``, constructors): the
    derivative is zero, so nothing downstream depends on their input."""
    for op in ops:
        define(op, zero=True, doc='piecewise constant')


def def_lowering(op, fn, mode_dependent=False, aliases=(), doc=''):
    """Rewrite ``op`` into covered operators when a block is traced:
    ``fn(F, eqn, xs, options)`` returns the outputs, or None to keep the node as it is."""
    return define(op, aliases, lowering=fn, mode_dependent=mode_dependent, doc=doc)


# ----- reading the table -----
_DISPATCH_ATTR = {'Activation': ('act_type', None), 'LeakyReLU': ('act_type', 'leaky')}


def op_key(eqn):
    """The table key of a node: its operator, or ``'Op:act_type'`` for the activations."""
    dispatch = _DISPATCH_ATTR.get(eqn.op)
    if dispatch is None:
        return eqn.op
    return f'{eqn.op}:{eqn.attrs.get(dispatch[0], dispatch[1])}'


def entry(eqn):
    """The `OpDef` of a node, or None."""
    return _OPS.get(op_key(eqn))


def operators():
    """name -> `OpDef` of every registered name (aliases included)."""
    return dict(_OPS)


def aliases():
    """alias -> the name its entry is registered under."""
    return {alias: d.name for d in _OPS.values() for alias in d.aliases}


def zero_derivative_ops():
    return _ZERO


def supported_ops():
    """Sorted list of the operators (``Op`` or ``Op:act_type``) mxgradlayer can
    differentiate: those with rules, and those rewritten into operators that have."""
    return sorted(_OPS)


def restore(snapshot):
    """Put back a table saved with `operators` (tests that register wrong rules)."""
    _OPS.clear()
    _OPS.update(snapshot)
    _ZERO.clear()
    _ZERO.update(name for name, d in _OPS.items() if d.zero)
