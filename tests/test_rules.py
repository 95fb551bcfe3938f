"""Every rule, through one generic checker: JVP and VJP to second order (so the rules of
the rules are exercised), imperative and hybridized, float64; MXNet's own first-order
gradient as a second oracle; the forward Laplacian against finite differences."""
import pytest
from mxnet import autograd

import mxgradlayer as mg
from mxgradlayer import transform
from mxgradlayer.errors import SampleCouplingError
from mxgradlayer.test_util import check_grads, fd_laplacian, relative_error

from helpers import Lambda, array
from op_specs import SPECS, VARIANTS

ALL = SPECS + VARIANTS


def _args(spec):
    return [array(s, spec.low, spec.high, seed=i, away_from_zero=spec.away)
            for i, s in enumerate(spec.shapes)]


def _cases():
    for i, s in enumerate(ALL):
        for w in s.wrt:
            yield pytest.param(s, w, id=f'{s.op}-{i}-wrt{w}')


@pytest.mark.parametrize('hybridize', [False, True], ids=['imperative', 'hybridized'])
@pytest.mark.parametrize('spec,wrt', list(_cases()))
def test_rule_second_order(spec, wrt, hybridize):
    reference = Lambda(spec.ref) if spec.ref else None
    check_grads(Lambda(spec.fn), _args(spec), wrt=wrt, order=2, hybridize=hybridize,
                reference=reference)


@pytest.mark.parametrize('spec,wrt', [c for c in _cases() if c.values[0].mx_ref])
def test_rule_matches_mxnet_first_order(spec, wrt):
    """Where MXNet's first-order backward is right, our VJP agrees with it."""
    args = _args(spec)
    block = Lambda(spec.fn)
    w = array(block(*args).shape, seed=7)
    args[wrt].attach_grad()
    with autograd.record():
        out = block(*args)
    out.backward(w)
    ours = mg.VJP(block, wrt)(*args, w)
    assert relative_error(ours.asnumpy(), args[wrt].grad.asnumpy()) < 1e-10


# Rows whose differentiated input has no batch axis of its own (a broadcast operand, a
# weight matrix, a reduction over the batch): per-sample blocks must refuse them.
NOT_PER_SAMPLE = {('broadcast_add', 1), ('broadcast_mul', 1), ('broadcast_minus', 1),
                  ('broadcast_maximum', 1), ('broadcast_power', 1), ('broadcast_plus', 1),
                  ('broadcast_mul', 0), ('FullyConnected', 1), ('FullyConnected', 2),
                  ('dot', 1), ('sum', 0), ('mean', 0), ('slice', 0),
                  ('reshape', 0), ('dot', 0), ('transpose', 0), ('broadcast_plus', 1),
                  ('Concat', 0), ('Concat', 1), ('norm', 0), ('Embedding', 0), ('SwapAxis', 0)}


def _laplacian_cases():
    for i, s in enumerate(ALL):
        for w in s.wrt:
            yield pytest.param(s, w, i, id=f'{s.op}-{i}-wrt{w}')


@pytest.mark.parametrize('spec,wrt,row', list(_laplacian_cases()))
def test_forward_laplacian(spec, wrt, row):
    args = _args(spec)
    block = Lambda(spec.fn)
    lap = mg.Laplacian(block, wrt)
    try:
        got = lap(*args).asnumpy()
    except SampleCouplingError:
        assert (spec.op, wrt) in NOT_PER_SAMPLE, 'refused a per-sample operator'
        return
    ref = fd_laplacian(mg.Jacobian(block, wrt), args, wrt)
    assert relative_error(got, ref) < 1e-6
    ht = mg.Laplacian(block, wrt, method='hessian_trace')(*args).asnumpy()
    assert relative_error(ht, ref) < 1e-6


def _per_sample_derivatives(block, args, wrt, hybridize):
    """Laplacian and Jacobian in both modes (the Hessian nests the same sweeps), or None
    where refused."""
    out = []
    for make in (lambda: mg.Laplacian(block, wrt), lambda: mg.Jacobian(block, wrt, 'forward'),
                 lambda: mg.Jacobian(block, wrt, 'reverse')):
        blk = make()
        if hybridize:
            blk.hybridize()
        try:
            out.append(blk(*args).asnumpy())
        except (SampleCouplingError, mg.errors.InputSpecError):
            out.append(None)
    return out


@pytest.mark.parametrize('spec,wrt,row', list(_laplacian_cases()))
def test_directions_folded_by_products(spec, wrt, row, monkeypatch):
    """From `transform._GEMM_DIRECTIONS` directions on, sweeps sum and repeat over the
    folded directions by matrix products instead of slices and concatenations.  The rows'
    inputs have fewer directions than that, so the threshold is lowered here: every rule's
    Laplacian and Jacobians must then be what they are by slices (which the test
    above checks against finite differences); odd rows hybridized, even ones imperative."""
    args = _args(spec)
    block = Lambda(spec.fn)
    hybridize = row % 2 == 1
    by_slices = _per_sample_derivatives(block, args, wrt, hybridize)
    monkeypatch.setattr(transform, '_GEMM_DIRECTIONS', 2)
    by_products = _per_sample_derivatives(block, args, wrt, hybridize)
    for name, a, b in zip(('Laplacian', 'Jacobian forward', 'Jacobian reverse'),
                          by_slices, by_products):
        assert (a is None) == (b is None), name
        if a is not None:
            assert relative_error(b, a) < 1e-12, name


SAME_SHAPE_BINARY = [s for s in SPECS if len(s.shapes) == 2 and s.shapes[0] == s.shapes[1]
                     and s.wrt == (0, 1)]


@pytest.mark.parametrize('spec', SAME_SHAPE_BINARY, ids=[s.op for s in SAME_SHAPE_BINARY])
def test_forward_laplacian_both_operands(spec):
    """Cross terms of the curvature: both operands depend on the same input."""
    block = Lambda(lambda F, x: spec.fn(F, x, F.exp(x * 0.3) + 0.1))
    x = array((3, 4), 0.5 if spec.low > 0 else -1.0, 1.5, seed=3, away_from_zero=spec.away)
    got = mg.Laplacian(block)(x).asnumpy()
    ref = fd_laplacian(mg.Jacobian(block), [x], 0)
    assert relative_error(got, ref) < 1e-6


def _lowered_cases():
    from mxgradlayer import registry
    for i, s in enumerate(ALL):
        opdef = registry.operators().get(s.op)
        if opdef is not None and opdef.lowering is not None:
            yield pytest.param(s, id=f'{s.op}-{i}')


@pytest.mark.parametrize('spec', list(_lowered_cases()))
def test_lowering_computes_what_mxnet_computes(spec):
    """A lowered operator is differentiated as its primitives: they must compute what
    MXNet's own kernel does (float32, MXNet's default path)."""
    import numpy as np
    from helpers import exact_primal
    args = [a.astype('float32') for a in _args(spec)]
    block = Lambda(spec.fn)
    got, ref = exact_primal(block)(*args).asnumpy(), block(*args).asnumpy()
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) <= 1e-6 * max(np.max(np.abs(ref)), 1.0)
