# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""MXNet's NumPy interface (``npx.set_np()``): its operators, lowered to legacy ones.

A network written for ``mx.np`` emits two kinds of operators: the ``npx`` layers Gluon
uses in NumPy mode are aliases of the legacy kernels (``_npx_fully_connected`` is
``FullyConnected`` in the traced graph, and so are Convolution, BatchNorm, Pooling,
Activation, LeakyReLU, LayerNorm, softmax, Dropout, ...), and the ``np`` functions are
operators of their own (``_npi_add``, ``_np_sum``, ``_np_reshape``, ...).  Each of those
is one line below: a lowering to the legacy operators whose rules are in the other
families, rewritten when the network is traced.  So one table serves both front ends,
the derived graphs hold legacy operators only, and the closure test's argument
(derivative blocks trace to covered operators) holds in NumPy mode unchanged.

This deviates from writing NumPy-mode rules that emit NumPy operators: those would repeat
every rule for a second operator set with the same kernels.  The derivative blocks view
NumPy arrays and Symbols as legacy ones at their boundary and hand their results back
as NumPy ones (`blocks.base`); the views share data and autograd history.

Where the NumPy semantics differ (reshape codes, ``axis=None``, broadcasting ``where``),
the lowering translates them; an attribute combination it cannot translate keeps the
node, which has no rules, so a sweep through it is refused by name.
"""
from ..ir import apply_op
from ..registry import def_lowering, operators

__all__ = []


def _lower(op, fn, doc):
    def_lowering(op, fn, doc=doc)


def _lower_as(op, legacy):
    """``op`` as ``legacy`` with the same attributes, where the table covers ``legacy``
    (otherwise the node stays, and is refused by its NumPy name)."""
    if legacy in operators():
        _lower(op, lambda F, eqn, xs, options: apply_op(F, legacy, xs, eqn.raw_attrs),
               f'as {legacy}')


# ----- arithmetic: NumPy broadcasting is that of the broadcast_* operators -----
# (np.maximum and np.minimum emit the legacy broadcast_maximum / _maximum_scalar)
for _np_op, _legacy in (('add', 'broadcast_add'), ('subtract', 'broadcast_sub'),
                        ('multiply', 'broadcast_mul'), ('true_divide', 'broadcast_div'),
                        ('power', 'broadcast_power'),
                        ('add_scalar', '_plus_scalar'), ('subtract_scalar', '_minus_scalar'),
                        ('rsubtract_scalar', '_rminus_scalar'),
                        ('multiply_scalar', '_mul_scalar'), ('true_divide_scalar', '_div_scalar'),
                        ('rtrue_divide_scalar', '_rdiv_scalar'),
                        ('power_scalar', '_power_scalar'), ('rpower_scalar', '_rpower_scalar')):
    _lower_as('_npi_' + _np_op, _legacy)

# ----- elementwise functions of one array -----
for _name in ('exp', 'expm1', 'log', 'log1p', 'log2', 'log10', 'sqrt', 'cbrt', 'square',
              'reciprocal', 'negative', 'sin', 'cos', 'tan', 'arcsin', 'arccos', 'arctan',
              'sinh', 'cosh', 'tanh', 'arcsinh', 'arccosh', 'arctanh', 'sign', 'rint',
              'floor', 'ceil', 'trunc', 'fix', 'degrees', 'radians'):
    _lower_as('_npi_' + _name, _name)
for _np_op, _legacy in (('_npi_absolute', 'abs'), ('_npx_relu', 'relu'),
                        ('_npx_sigmoid', 'sigmoid'), ('_np_copy', '_copy')):
    _lower_as(_np_op, _legacy)
for _np_op, _legacy in (('equal', 'broadcast_equal'), ('not_equal', 'broadcast_not_equal'),
                        ('greater', 'broadcast_greater'),
                        ('greater_equal', 'broadcast_greater_equal'),
                        ('less', 'broadcast_lesser'), ('less_equal', 'broadcast_lesser_equal')):
    _lower_as('_npi_' + _np_op, _legacy)
    _lower_as(f'_npi_{_np_op}_scalar', _legacy.replace('broadcast', '') + '_scalar')


def _hypot(F, eqn, xs, options):
    return [F.sqrt(F.broadcast_add(F.square(xs[0]), F.square(xs[1])))]


_lower('_npi_hypot', _hypot, 'sqrt(x^2 + y^2)')


# ----- reductions: axis=None is every axis -----
def _reduction(legacy):
    def lowering(F, eqn, xs, options):
        a = eqn.attrs
        if a.get('initial') is not None or a.get('dtype') not in (None, 'None'):
            return None  # kept: refused by name
        attrs = {'keepdims': a.get('keepdims', False)}
        if a.get('axis') is not None:
            attrs['axis'] = a['axis']
        return apply_op(F, legacy, xs, {k: str(v) for k, v in attrs.items()})
    return lowering


for _np_op, _legacy in (('_np_sum', 'sum'), ('_npi_mean', 'mean'), ('_np_max', 'max'),
                        ('_np_min', 'min')):
    _lower(_np_op, _reduction(_legacy), f'as {_legacy} (axis=None: every axis)')


def _moments(std):
    """np.var and np.std: mean((x - mean(x))^2) scaled by n / (n - ddof)."""
    def lowering(F, eqn, xs, options):
        a = eqn.attrs
        shape = eqn.in_shapes[0]
        axes = a.get('axis')
        axes = tuple(range(len(shape))) if axes is None else (
            axes if isinstance(axes, tuple) else (axes,))
        count = 1
        for ax in axes:
            if shape[ax] is None:
                return None
            count *= shape[ax]
        ddof = a.get('ddof', 0)
        x = xs[0]
        centred = F.broadcast_sub(x, F.mean(x, axis=axes, keepdims=True))
        var = F.mean(F.square(centred), axis=axes, keepdims=a.get('keepdims', False))
        if ddof:
            var = var * (count / (count - ddof))
        return [F.sqrt(var) if std else var]
    return lowering


_lower('_npi_var', _moments(False), 'mean of squared deviations')
_lower('_npi_std', _moments(True), 'square root of the variance')


def _average(F, eqn, xs, options):
    if eqn.attrs.get('weighted') or eqn.attrs.get('returned'):
        return None
    return _reduction('mean')(F, eqn, xs, options)


_lower('_npi_average', _average, 'unweighted: as mean')


# ----- shapes -----
def _static_reshape(F, eqn, xs, options):
    """A reshape to the node's inferred output shape, whose batch-dependent dimensions
    (None) are legacy code 0 for a batch axis 0 kept in place and -1 for one more; a
    shape with two other batch-dependent dimensions is kept (and refused)."""
    if eqn.attrs.get('order', 'C') != 'C':
        return None
    out = list(eqn.out_shapes[0])
    if not out:
        return None
    if out[0] is None and eqn.batch_aligned[0] and eqn.in_aligned[0]:
        out[0] = 0  # axis 0 is the batch axis, in and out
    if out.count(None) > 1:
        return None
    return [F.reshape(xs[0], shape=tuple(-1 if d is None else d for d in out))]


_lower('_np_reshape', _static_reshape, 'as reshape to the inferred shape')
_lower('_npx_reshape', _static_reshape, 'as reshape to the inferred shape')


def _transpose(F, eqn, xs, options):
    axes = eqn.attrs.get('axes')
    return [F.transpose(xs[0]) if axes is None else F.transpose(xs[0], axes=axes)]


_lower('_np_transpose', _transpose, 'as transpose')


def _squeeze(F, eqn, xs, options):
    axis = eqn.attrs.get('axis')
    return [F.squeeze(xs[0]) if axis is None else F.squeeze(xs[0], axis=axis)]


_lower('_np_squeeze', _squeeze, 'as squeeze')


def _concatenate(F, eqn, xs, options):
    if eqn.attrs.get('axis', 0) is None:
        return None
    return [F.concat(*xs, dim=eqn.attrs.get('axis', 0))]


_lower('_npi_concatenate', _concatenate, 'as concat')
_lower_as('_npi_stack', 'stack')
_lower_as('_npi_broadcast_to', 'broadcast_to')
_lower_as('_npi_flip', 'reverse')


def _split(F, eqn, xs, options):
    a = eqn.attrs
    axis, squeeze = a.get('axis', 0), a.get('squeeze_axis', False)
    if a.get('sections', 0):
        out = F.split(xs[0], num_outputs=a['sections'], axis=axis, squeeze_axis=squeeze)
        return [out] if a['sections'] == 1 else [out[i] for i in range(a['sections'])]
    starts = list(a.get('indices', ()))
    if squeeze or not starts:
        return None
    ends = starts[1:] + [None]
    return [F.slice_axis(xs[0], axis=axis, begin=b, end=e) for b, e in zip(starts, ends)]


_lower('_split_v2', _split, 'as split, or one slice_axis per part')


# ----- where: NumPy broadcasts the condition and both branches -----
def _where(F, eqn, xs, options):
    shapes = {tuple(s) for s in eqn.in_shapes}
    if len(shapes) != 1:
        return None
    return [F.where(*xs)]


def _where_scalar(side):
    def lowering(F, eqn, xs, options):
        cond, x = xs
        if tuple(eqn.in_shapes[0]) != tuple(eqn.in_shapes[1]):
            return None
        other = F.zeros_like(x) + float(eqn.attrs['scalar'])
        return [F.where(cond, other, x) if side == 'l' else F.where(cond, x, other)]
    return lowering


_lower('_npi_where', _where, 'as where, for equal shapes')
_lower('_npi_where_lscalar', _where_scalar('l'), 'as where with a constant branch')
_lower('_npi_where_rscalar', _where_scalar('r'), 'as where with a constant branch')


def _full_like(F, eqn, xs, options):
    fill = float(eqn.attrs.get('fill_value', 0))
    zeros = F.zeros_like(xs[0])
    return [zeros if fill == 0.0 else F.ones_like(xs[0]) * fill]


_lower('_npi_full_like', _full_like, 'zeros_like / ones_like (no derivative)')


# ----- products -----
def _matmul(F, eqn, xs, options):
    ra, rb = (len(s) for s in eqn.in_shapes)
    if ra == rb == 2:
        return [F.dot(*xs)]
    if ra == rb == 3:
        return [F.batch_dot(*xs)]
    return None


def _np_dot(F, eqn, xs, options):
    # np.dot contracts the last axis of a with the second-to-last of b; for b of rank
    # 1 or 2 that is legacy dot's first axis of b
    return [F.dot(*xs)] if len(eqn.in_shapes[1]) <= 2 else None


_lower('_npi_matmul', _matmul, 'as dot (2-D) or batch_dot (3-D)')
_lower('_np_dot', _np_dot, 'as dot, for b of rank 1 or 2')


# ----- einsum: sums over single-operand indices, then pairwise batch_dot contractions -----
def _einsum_terms(subscripts, count):
    """(input index strings, output string) of an einsum without '...' and without an
    index repeated within one operand (a diagonal), or None."""
    subscripts = subscripts.replace(' ', '')
    if '...' in subscripts:
        return None
    if '->' in subscripts:
        ins, out = subscripts.split('->')
    else:  # NumPy's implicit output: the indices that appear once, in order
        ins = subscripts
        letters = ins.replace(',', '')
        out = ''.join(sorted(c for c in set(letters) if letters.count(c) == 1))
    terms = ins.split(',')
    if len(terms) != count or any(len(set(t)) != len(t) for t in terms + [out]):
        return None
    return terms, out


class _Reshaper:
    """Legacy reshapes between index groups of known sizes, where a batch-dependent
    size (None) may appear once per shape, as -1."""

    def __init__(self, sizes):
        self.sizes = sizes

    def merged(self, groups):
        shape = []
        for group in groups:
            size = 1
            for c in group:
                if self.sizes[c] is None:
                    size = None
                    break
                size *= self.sizes[c]
            shape.append(size)
        return self._codes(shape)

    def split(self, letters):
        return self._codes([self.sizes[c] for c in letters])

    @staticmethod
    def _codes(shape):
        if shape.count(None) > 1:
            raise _Kept()
        return tuple(-1 if d is None else d for d in shape)


class _Kept(Exception):
    """This einsum has no lowering: the node stays, and is refused by name."""


def _einsum_contract(F, reshape, a, la, b, lb, keep):
    """batch_dot of two operands: shared indices that stay are the batch, shared ones
    that do not are contracted, the others are each side's free indices."""
    batch = [c for c in la if c in lb and c in keep]
    contracted = [c for c in la if c in lb and c not in keep]
    free_a = [c for c in la if c not in lb]
    free_b = [c for c in lb if c not in la]

    def arranged(x, letters, order):
        perm = [letters.index(c) for c in order]
        return x if perm == list(range(len(perm))) else F.transpose(x, axes=tuple(perm))
    a3 = F.reshape(arranged(a, la, batch + free_a + contracted),
                   shape=reshape.merged([batch, free_a, contracted]))
    b3 = F.reshape(arranged(b, lb, batch + contracted + free_b),
                   shape=reshape.merged([batch, contracted, free_b]))
    letters = batch + free_a + free_b
    shape = reshape.split(letters) or (1,)  # (legacy arrays have an axis at least)
    return F.reshape(F.batch_dot(a3, b3), shape=shape), ''.join(letters)


def _einsum(F, eqn, xs, options):
    parsed = _einsum_terms(str(eqn.attrs.get('subscripts', '')), len(xs))
    if parsed is None:
        return None
    terms, out = parsed
    sizes = {}
    for term, shape in zip(terms, eqn.in_shapes):
        if len(term) != len(shape):
            return None
        for c, d in zip(term, shape):
            sizes[c] = d
    reshape = _Reshaper(sizes)
    try:
        operands = []
        for i, (x, term) in enumerate(zip(xs, terms)):
            elsewhere = set(out).union(*[set(t) for j, t in enumerate(terms) if j != i])
            alone = [k for k, c in enumerate(term) if c not in elsewhere]
            if alone:  # an index of this operand alone, summed out first
                x = F.sum(x, axis=tuple(alone))
                term = ''.join(c for c in term if c in elsewhere)
            operands.append((x, term))
        acc, letters = operands[0]
        for i in range(1, len(operands)):  # (what is left is in the output)
            keep = set(out).union(*[set(t) for _, t in operands[i + 1:]])
            acc, letters = _einsum_contract(F, reshape, acc, letters, *operands[i], keep)
    except _Kept:
        return None
    if not out:
        return [F.reshape(acc, shape=(1,))]
    perm = [letters.index(c) for c in out]
    return [acc if perm == list(range(len(perm))) else F.transpose(acc, axes=tuple(perm))]


_lower('_npi_einsum', _einsum,
       "as sums, transposes and batch_dot (no '...', no index repeated within an operand)")
