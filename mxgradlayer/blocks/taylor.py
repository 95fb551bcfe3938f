# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Taylor-mode blocks: derivatives of any order along directions in one forward sweep.

`Taylor` returns the derivatives d^k/dt^k net(x + t v) for k = 0..order.  Where nesting
first-order blocks K times costs about 2^K sweeps, one Taylor sweep costs about K^2
(each coefficient of a node's output is a sum over lower coefficients).
`DifferentialOperator` evaluates a linear differential operator sum_a c_a d^a u by
collapsed Taylor mode (Dangel et al. 2025): mixed partials are interpolated from
directional derivatives of the same order, and the highest coefficient of the sweep is
carried already summed over the directions, which is what makes the forward Laplacian
cheap; the biharmonic and the weighted Laplacian come the same way.
"""
import itertools
import math

import numpy as np
import mxnet as mx

from ..errors import InputSpecError
from ..tracing import resolve_input_specs
from ..transform import Jet, taylor
from .base import DerivativeBlock, call_block, prod

__all__ = ['Taylor', 'DifferentialOperator', 'interpolation_directions']


def _zeros_if_none(F, t, like):
    return F.zeros_like(like) if t is None else t


class Taylor(DerivativeBlock):
    r"""Derivatives of every order up to ``order`` along a direction, in one sweep.

    .. math:: \mathrm{Taylor}(x, v)_k = \frac{d^k}{dt^k}\, \mathrm{net}(x + t v)
              \Big|_{t=0}, \qquad k = 0, \ldots, \mathrm{order}

    Taylor mode (Griewank & Walther, ch. 13): every intermediate value carries its
    Taylor coefficients to the requested order, each operator propagating them by its
    own rule (Leibniz for products, Faa di Bruno with the function's derivative table for
    elementwise functions), so the fourth derivative of a scalar network costs one
    sweep, not four nested ones.  With several directions (``v`` of shape
    (D, batch, ...)) they are pushed together, folded into the batch axis.

    Parameters
    ----------
    net : gluon.HybridBlock
        The network to differentiate.  Its Parameters are shared, not copied.
    order : int, default 2
        The highest derivative, at least 1.
    wrt : int, default 0
        Position of the input to differentiate by.

    Inputs:
        - **inputs**: the inputs of ``net``, each of shape (batch, ...).
        - **v**: the direction, shaped like ``inputs[wrt]``; or D directions, shape
          (D, batch, ...), whose samples must then not interact (per-sample, as in
          `Jacobian`).

    Outputs:
        - **series**: shape (order + 1, batch, \*output_shape), or (order + 1, D, batch,
          \*output_shape) for D directions: ``series[0]`` is ``net(x)``, ``series[k]`` the
          k-th derivative along v.  A tuple for several outputs.

    Examples
    --------
    >>> import mxnet as mx, mxgradlayer as mg
    >>> net = mx.gluon.nn.HybridLambda(lambda F, x: F.sin(x))
    >>> mg.Taylor(net, order=4)(mx.nd.array([[0.5]]), mx.nd.array([[1.0]])).reshape((-1,))
    <BLANKLINE>
    [ 0.47942555  0.87758255 -0.47942555 -0.87758255  0.47942555]
    <NDArray 5 @cpu(0)>

    References
    ----------
    A. Griewank and A. Walther, "Evaluating Derivatives", 2nd ed., SIAM (2008),
    chapter 13 (Taylor and tensor coefficients).
    """
    _num_vectors = 1
    _single_wrt = True

    def __init__(self, net, order=2, wrt=0, **kwargs):
        if not isinstance(order, (int, np.integer)) or order < 1:
            raise ValueError(f'order must be an int >= 1; got {order!r}')
        super().__init__(net, wrt, **kwargs)
        self._order = int(order)

    def __repr__(self):
        return super().__repr__().replace('(wrt=', f'(order={self._order}, wrt=', 1)

    def _direction_count(self, v, inputs, p):
        """None for one direction shaped like the input, D for (D, batch, ...)."""
        specs = resolve_input_specs([v, inputs[p]])
        if specs is None:
            raise InputSpecError('Taylor could not infer the shape of v; call it on arrays')
        (v_shape, _), (x_shape, _) = specs
        if len(v_shape) == len(x_shape):
            self._check_direction(v, inputs, p)
            return None
        if len(v_shape) == len(x_shape) + 1 and all(
                a is None or b is None or a == b for a, b in zip(v_shape[1:], x_shape)):
            return v_shape[0]
        raise InputSpecError(f'Taylor: v must have the shape of input {p} {tuple(x_shape)}, '
                             f'or (D,) + that shape for D directions; got {tuple(v_shape)}')

    def _compute(self, F, graph, inputs, vectors, params):
        p, v, K = self._positions(len(inputs))[0], vectors[0], self._order
        D = self._direction_count(v, inputs, p)
        folded = v if D is None else F.reshape(v, shape=(-3, -2))
        jet = Jet({p: [folded]}, K, K=D or 1, per_sample=D is not None)
        outs, (series,) = taylor(F, graph, inputs, params, [jet])
        res = []
        for o, s in zip(outs, series):
            s = s or [None] * K
            lead = o if D is None else F.reshape(F.concat(*([o] * D), dim=0) if D > 1 else o,
                                                 shape=(-4, D, -1, -2))
            terms = [lead]
            for k, t in enumerate(s, start=1):
                t = (F.zeros_like(lead) if t is None else
                     (t if D is None else F.reshape(t, shape=(-4, D, -1, -2))))
                terms.append(t * float(math.factorial(k)) if k > 1 else t)
            res.append(F.stack(*terms, axis=0))
        return res[0] if len(res) == 1 else tuple(res)


# ----- interpolating mixed partials from directional derivatives -----
def _multinomial(alpha):
    return math.factorial(sum(alpha)) / np.prod([math.factorial(a) for a in alpha])


def interpolation_directions(terms, n):
    """Directions v_d and weights w_d with sum_d w_d (v_d . grad)^N u = sum c_a d^a u, for
    terms {index tuple: c} all of order N over n coordinates.

    (v . grad)^N u = sum over multisets a of size N of N!/a! v^a d^a u, so the weights
    solve a linear system over every multiset whose indices lie within one term's
    (a direction on those indices reaches all of them).  Directions are chosen greedily
    from the simplest (e_i, then e_i +- e_j, e_i +- 2 e_j, ...), each kept only if it
    adds a new combination, so the system is square and solved exactly; the
    Laplacian gets the n unit directions, the biharmonic the n^2 of e_i and e_i +- e_j.
    Returns ``(V, w)``: V of shape (D, n) (small integers), w of shape (D,).
    """
    orders = {len(t) for t in terms}
    if len(orders) != 1:
        raise ValueError('interpolation_directions takes terms of one order')
    (N,) = orders
    supports = sorted({tuple(sorted(set(t))) for t in terms}, key=lambda s: (len(s), s))
    # the monomials reached: multisets of size N within one support
    monomials = sorted({tuple(sorted(m)) for s in supports
                        for m in itertools.combinations_with_replacement(s, N)})
    index = {m: r for r, m in enumerate(monomials)}
    target = np.zeros(len(monomials))
    for t, coef in terms.items():
        target[index[tuple(sorted(t))]] += coef

    def row(v):
        out = np.zeros(len(monomials))
        for m, r in index.items():
            counts = np.bincount(m, minlength=n)
            nz = counts.nonzero()[0]
            out[r] = _multinomial(counts[nz]) * np.prod([v[i] ** counts[i] for i in nz])
        return out

    chosen, rows = [], np.zeros((0, len(monomials)))
    for s in supports:
        for size in range(1, len(s) + 1):
            for sub in itertools.combinations(s, size):
                for entries in itertools.product((1, -1, 2, -2, 3, -3), repeat=size - 1):
                    v = np.zeros(n)
                    v[list(sub)] = (1,) + entries
                    r = row(v)
                    trial = np.vstack([rows, r])
                    if np.linalg.matrix_rank(trial) > rows.shape[0]:
                        chosen.append(v)
                        rows = trial
                if rows.shape[0] == len(monomials):
                    break
    w = np.linalg.lstsq(rows.T, target, rcond=None)[0]
    if not np.allclose(rows.T @ w, target, atol=1e-9 * max(1.0, np.abs(target).max())):
        raise AssertionError('interpolation did not reproduce the operator')  # pragma: no cover
    keep = np.abs(w) > 1e-12 * max(1.0, np.abs(w).max())
    return np.array(chosen)[keep], w[keep]


# ----- the operator block -----
def _drawn_zeros(F, like, S):
    """Zeros shaped like ``like`` (B, m) for S draws per sample: (S*B, m), draw-major,
    the layout random directions are drawn in."""
    zeros = F.zeros_like(like)
    return F.concat(*([zeros] * S), dim=0) if S > 1 else zeros



_NAMED = ('laplacian', 'biharmonic', 'weighted_laplacian')


def _as_terms(terms):
    """{index tuple: coefficient} by order, with index tuples sorted."""
    by_order = {}
    for index, coef in terms.items():
        index = (index,) if isinstance(index, (int, np.integer)) else tuple(index)
        if not all(isinstance(i, (int, np.integer)) and i >= 0 for i in index):
            raise ValueError(f'DifferentialOperator: a term is a tuple of coordinate indices '
                             f'(one per derivative); got {index!r}')
        key = tuple(sorted(int(i) for i in index))
        group = by_order.setdefault(len(key), {})
        group[key] = group.get(key, 0.0) + float(coef)
    return by_order


class DifferentialOperator(DerivativeBlock):
    r"""A linear differential operator applied to a network, by collapsed Taylor mode.

    .. math:: L u(x) = \sum_a c_a\, \partial^a u(x), \qquad
              \partial^{(i_1, \ldots, i_k)} = \partial_{i_1} \cdots \partial_{i_k}

    over the coordinates of the inputs ``wrt`` (each input's elements flattened, the
    inputs in the order given).  Mixed partials of order k come from k-th directional
    derivatives, (v . grad)^k u = sum_a k!/a! v^a d^a u, along a few simple directions
    (`interpolation_directions`); one Taylor sweep carries every direction of every
    order, the primal once, and the k-th coefficient already summed over its directions
    with their weights (collapsed Taylor mode).  The result is per sample, like
    `Laplacian`: the network's samples must not interact.

    Parameters
    ----------
    net : gluon.HybridBlock
        The network u.  Its Parameters are shared, not copied.
    terms : str or dict, default 'laplacian'
        ``{index tuple: coefficient}``, e.g. ``{(0, 0, 0, 0): 1, (0, 0, 1, 1): 2,
        (1, 1, 1, 1): 1}`` for the 2-D biharmonic, ``()`` for u itself; or one of
        ``'laplacian'`` (sum_i d_ii u), ``'biharmonic'`` (sum_ij d_iijj u) and
        ``'weighted_laplacian'`` (sum_ij C_ij d_ij u = tr(C Hessian), with
        ``coefficients``), for any number of coordinates.
    wrt : int or tuple of int, default 0
        The input(s) whose coordinates the operator acts on: with ``wrt=(0, 1)`` and
        inputs x of shape (B, 2) and t of shape (B, 1), coordinates 0, 1 are x's and 2 is
        t, so u_t - k (u_xx + u_yy) is ``{(2,): 1, (0, 0): -k, (1, 1): -k}``.
    coefficients : array-like or gluon.HybridBlock, optional
        For ``'weighted_laplacian'``: the constant (n, n) matrix C, or a block that maps
        the network's inputs to C(x) of shape (batch, n, n) (its Parameters train too).
    samples : int, optional
        An unbiased stochastic estimate from this many random directions per sample (per
        order of the operator), drawn anew at every call (seed them with
        ``mx.random.seed``).  Cost is that of S directions whatever the dimension.  Every
        operator with constant directions takes ``estimator='sparse'``; the dense one
        covers ``'laplacian'`` and ``'biharmonic'``.
    estimator : {'dense', 'sparse'}, default 'dense'
        How ``samples`` draws its directions (per sample, S draws, H the Hessian, T the
        fourth-derivative tensor, P = grad^2 (Delta u) the Hessian of the Laplacian):

        - ``'dense'``: Rademacher directions for the Laplacian (Hutchinson),
          E[v^T H v] = tr H, variance 2 sum_(i!=j) H_ij^2 / S; Gaussian directions for
          the biharmonic, E[(v . grad)^4 u] = 3 Delta^2 u, variance
          (24 sum T_ijkl^2 + 72 sum P_ij^2) / (9 S) (Isserlis' theorem: 105 pairings).
        - ``'sparse'`` (STDE's sparse random jets, Shi et al. 2024): each draw is one of
          the N directions of the exact operator, uniformly, the same directions with
          at most two non-zero entries that the exact sum uses (e_i for the Laplacian,
          e_i and e_i +- e_j for the biharmonic, `interpolation_directions` for ``terms``
          and the eigenvectors of a constant C), weighted N w_k; with the exact
          operator sum_k w_k d_k, the variance is
          (N sum_k w_k^2 d_k^2 - (sum_k w_k d_k)^2) / S (summed over the orders of
          ``terms``, each drawn on its own); for the Laplacian,
          (n sum_i H_ii^2 - (tr H)^2) / S, zero when the diagonal is constant.

    Inputs:
        - **inputs**: the inputs of ``net``, each of shape (batch, ...).

    Outputs:
        - **out**: L u, shape (batch, \*output_shape); a tuple for several outputs.

    Examples
    --------
    >>> import mxnet as mx, mxgradlayer as mg
    >>> net = mx.gluon.nn.HybridLambda(  # x0^2 x1^2
    ...     lambda F, x: F.prod(F.square(x), axis=1, keepdims=True))
    >>> x = mx.nd.array([[1.0, 2.0]])
    >>> mg.DifferentialOperator(net, {(0, 0, 1, 1): 1.0})(x)  # d^4 / dx0^2 dx1^2 = 4
    <BLANKLINE>
    [[4.]]
    <NDArray 1x1 @cpu(0)>

    References
    ----------
    F. Dangel, T. Siebert, M. Zeinhofer and A. Walther, "Collapsing Taylor mode automatic
    differentiation", NeurIPS 2025.  Z. Shi et al., "Stochastic Taylor derivative
    estimator", NeurIPS 2024.  M. F. Hutchinson, Communications in Statistics 18 (1989).
    """

    _per_sample = True

    def __init__(self, net, terms='laplacian', wrt=0, coefficients=None, samples=None,
                 estimator='dense', **kwargs):
        super().__init__(net, wrt, **kwargs)
        named = isinstance(terms, str)
        if named and terms not in _NAMED:
            raise ValueError(f'terms must be a dict or one of {", ".join(map(repr, _NAMED))}; '
                             f'got {terms!r}')
        if (terms == 'weighted_laplacian') != (coefficients is not None):
            raise ValueError("coefficients= goes with terms='weighted_laplacian' (and it "
                             "needs them)")
        if estimator not in ('dense', 'sparse'):
            raise ValueError(f"estimator must be 'dense' or 'sparse'; got {estimator!r}")
        if samples is not None:
            if not isinstance(samples, (int, np.integer)) or samples < 1:
                raise ValueError(f'samples must be an int >= 1; got {samples!r}')
            if isinstance(coefficients, mx.gluon.Block):
                raise ValueError('samples= needs constant directions; coefficients given by '
                                 'a block C(x) are computed exactly')
            if estimator == 'dense' and terms not in ('laplacian', 'biharmonic'):
                raise ValueError("the dense estimator (samples=) covers terms='laplacian' "
                                 "and 'biharmonic'; for other operators use "
                                 "estimator='sparse'")
        if estimator != 'dense' and samples is None:
            raise ValueError('estimator= chooses how samples= draws directions; give samples=')
        self._terms, self._samples, self._estimator = terms, samples, estimator
        self._orders, self._directions = {}, []
        self.coefficients = None
        directions = []
        if not named:
            if not terms:
                raise ValueError('DifferentialOperator needs at least one term')
            self._orders = _as_terms(terms)
            for order, group in sorted(self._orders.items()):
                if order:
                    V, w = interpolation_directions(group, 1 + max(max(t) for t in group))
                    directions.append((order, V, w))
        elif isinstance(coefficients, mx.gluon.Block):
            self.coefficients = coefficients
        elif coefficients is not None:
            C = np.asarray(coefficients, dtype=float)
            if C.ndim != 2 or C.shape[0] != C.shape[1]:
                raise ValueError(f'coefficients must be a square matrix; got shape {C.shape}')
            lam, Q = np.linalg.eigh((C + C.T) / 2)  # tr(C H) = sum_i lam_i q_i^T H q_i
            directions.append((2, Q.T, lam))
        if directions:
            width = max(V.shape[1] for _, V, _ in directions)
            self._directions = [(order, len(w), w) for order, _, w in directions]
            stacked = np.concatenate([np.pad(V, ((0, 0), (0, width - V.shape[1])))
                                      for _, V, _ in directions])
            # float64, cast to the inputs' dtype in the graph (eigenvectors are not exact
            # in float32)
            self.directions = self.params.get_constant(
                'directions', mx.nd.array(stacked, dtype='float64'))
            self.directions.initialize(ctx=mx.current_context())

    def __repr__(self):
        what = self._terms if isinstance(self._terms, str) else 'terms'
        return super().__repr__().replace('(wrt=', f'({what}, wrt=', 1)

    # ----- coordinates -----
    def _coordinates(self, graph, inputs):
        """(position, shape, size) of each differentiated input, and their total size."""
        coords = []
        for p in self._positions(len(inputs)):
            shape = self._static(graph.specs[p][0], 'input')
            coords.append((p, shape, prod(shape)))
        return coords, sum(c[2] for c in coords)

    def _fold(self, F, V, coords, inputs, D, per_sample):
        """Directions V, (D, n) or per sample (D*B, n), as folded tangents of each input."""
        out, start = {}, 0
        for p, shape, size in coords:
            part = F.slice_axis(V, axis=1, begin=start, end=start + size) \
                if len(coords) > 1 else V
            start += size
            if per_sample:
                out[p] = F.reshape(part, shape=(-1,) + shape)
                continue
            part = F.reshape(part, shape=(D, 1) + shape)
            like = F.expand_dims(inputs[p], axis=0)
            out[p] = F.reshape(F.broadcast_like(part, like, lhs_axes=(1,), rhs_axes=(1,)),
                               shape=(-3, -2))
        return out

    def _flat_inputs(self, F, coords, inputs):
        flat = [F.reshape(inputs[p], shape=(0, -1)) for p, _, _ in coords]
        return flat[0] if len(flat) == 1 else F.concat(*flat, dim=1)

    # ----- the jets -----
    def _named_jets(self, F, coords, n, inputs, dtype):
        """(order, folded directions, weights) for the named operators: weights a list of
        floats per direction (collapsed), or a (S*B, 1) array per drawn direction."""
        S = self._samples
        if S is not None and self._estimator == 'dense':
            zeros = _drawn_zeros(F, self._flat_inputs(F, coords, inputs), S)
            with mx.autograd.pause():
                if self._terms == 'laplacian':
                    V = F.sign(F.random.uniform_like(zeros, low=-1.0, high=1.0))
                    return [(2, self._fold(F, V, coords, inputs, S, True), [2.0 / S] * S)]
                V = F.random.normal_like(zeros)
            return [(4, self._fold(F, V, coords, inputs, S, True), [8.0 / S] * S)]
        eye = F.eye(n, dtype=dtype)
        if self._terms == 'laplacian':  # y_2 = D^2 / 2
            order, V, weights = 2, eye, [2.0] * n
        elif self._terms == 'biharmonic':
            # Delta^2 = (1 - (n-1)/3) sum_i d_i^4 + (1/6) sum_(i<j) (D^4_(e_i+e_j) + D^4_(e_i-e_j))
            rows, weights = [], []
            if 3 != n - 1:
                rows.append(eye)
                weights += [24.0 - 8.0 * (n - 1)] * n
            for s in range(1, n):
                shifted = F.slice_axis(F.eye(n, n, s, dtype=dtype), axis=0, begin=0, end=n - s)
                base = F.slice_axis(eye, axis=0, begin=0, end=n - s)
                rows += [base + shifted, base - shifted]
                weights += [4.0] * (2 * (n - s))
            order, V = 4, F.concat(*rows, dim=0) if len(rows) > 1 else rows[0]
        else:
            return self._field_jets(F, coords, n, inputs, eye)
        if S is None:
            return [(order, self._fold(F, V, coords, inputs, len(weights), False), weights)]
        return [(order,) + self._sparse_draws(F, coords, inputs, V, weights, S, dtype)]

    def _sparse_draws(self, F, coords, inputs, V, weights, S, dtype):
        """S directions per sample drawn uniformly from the exact operator's N directions V
        (N, n), each weighted N w_k / S; folded directions and the (S*B, 1) weights."""
        N = len(weights)
        first = F.slice_axis(self._flat_inputs(F, coords, inputs), axis=1, begin=0, end=1)
        zeros = _drawn_zeros(F, first, S)
        with mx.autograd.pause():
            k = F.clip(F.floor(F.random.uniform_like(zeros) * N), 0, N - 1)
            pick = F.one_hot(F.reshape(k, shape=(-1,)), depth=N, dtype=dtype)  # (S*B, N)
        folded = self._fold(F, F.dot(pick, V), coords, inputs, S, True)
        if len(set(weights)) == 1:  # equal weights (the Laplacian): collapse as usual
            return folded, [weights[0] * N / S] * S
        runs = [(w, len(list(g))) for w, g in itertools.groupby(weights)]
        column = F.concat(*[F.full(shape=(size, 1), val=w * N / S, dtype=dtype)
                            for w, size in runs], dim=0)  # (N, 1)
        return folded, F.dot(pick, column)

    def _field_jets(self, F, coords, n, inputs, eye):
        # weighted Laplacian with C(x): tr(C H) = sum_i (D^2_(c_i+e_i) - D^2_(c_i-e_i)) / 4
        C = call_block(self.coefficients, *inputs)
        cols = F.reshape(F.transpose(C, axes=(2, 0, 1)), shape=(-3, -2))  # c_i, folded
        x = self._flat_inputs(F, coords, inputs)
        e = F.reshape(F.broadcast_like(F.expand_dims(eye, axis=1), F.expand_dims(x, axis=0),
                                       lhs_axes=(1,), rhs_axes=(1,)), shape=(-3, -2))
        V = F.concat(cols + e, cols - e, dim=0)
        return [(2, self._fold(F, V, coords, inputs, 2 * n, True), [0.5] * n + [-0.5] * n)]

    def _constant_jets(self, F, coords, n, inputs, directions, dtype):
        width = self.directions.shape[1]
        if np.dtype(self.directions.dtype) != np.dtype(dtype):
            directions = F.cast(directions, dtype=dtype)
        if width > n:
            raise InputSpecError(f'DifferentialOperator: the operator acts on {width} '
                                 f'coordinates but the inputs wrt={self._wrt} have {n}')
        jets, start = [], 0
        for order, D, w in self._directions:
            V = F.slice_axis(directions, axis=0, begin=start, end=start + D)
            start += D
            if width < n:
                V = F.concat(V, F.zeros(shape=(D, n - width), dtype=dtype),
                             dim=1)
            weights = [float(x) * math.factorial(order) for x in w]
            if self._samples is None:
                jets.append((order, self._fold(F, V, coords, inputs, D, False), weights))
            else:
                jets.append((order,) + self._sparse_draws(F, coords, inputs, V, weights,
                                                          self._samples, dtype))
        return jets

    def _compute(self, F, graph, inputs, vectors, params, directions=None):
        coords, n = self._coordinates(graph, inputs)
        dtype = np.dtype(graph.specs[coords[0][0]][1]).name
        if isinstance(self._terms, str) and self._terms == 'weighted_laplacian' and \
                self.coefficients is None and self.directions.shape[1] != n:
            raise InputSpecError(f'DifferentialOperator: coefficients are '
                                 f'{self.directions.shape[1]}x{self.directions.shape[1]} but '
                                 f'the inputs wrt={self._wrt} have {n} coordinates')
        if directions is not None:
            specs = self._constant_jets(F, coords, n, inputs, directions, dtype)
        elif isinstance(self._terms, str):
            specs = self._named_jets(F, coords, n, inputs, dtype)
        else:  # u itself only
            specs = []
        drawn = [None if isinstance(w, list) else w for _, _, w in specs]
        jets = [Jet({p: [t] for p, t in folded.items()}, order,
                    K=len(w) if d is None else self._samples, weights=w if d is None else None,
                    per_sample=True) for (order, folded, w), d in zip(specs, drawn)]
        outs, series = taylor(F, graph, inputs, params, jets)
        res = []
        for i, o in enumerate(outs):
            total = None
            zeroth = self._orders.get(0, {}).get((), 0.0)
            if zeroth:
                total = o * zeroth
            for s, d in zip(series, drawn):
                top = s[i][-1] if s[i] is not None else None
                if top is not None and d is not None:  # sum_s w_s top_s over the draws
                    top = F.broadcast_mul(F.reshape(top, shape=(0, -1)), d)
                    top = F.reshape_like(F.sum(F.reshape(top, shape=(-4, self._samples, -1,
                                                                      -2)), axis=0), o)
                if top is not None:
                    total = top if total is None else F.elemwise_add(total, top)
            res.append(F.zeros_like(o) if total is None else total)
        return res[0] if len(res) == 1 else tuple(res)
