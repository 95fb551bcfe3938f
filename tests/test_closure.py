"""Rules are closed: every operator a rule emits has rules itself, and every registered
operator has a row in op_specs (so it is checked numerically)."""
import json

import mxnet as mx
import pytest

import mxgradlayer as mg
from mxgradlayer.registry import LOWERINGS, RULES, ZERO_DERIVATIVE_OPS, rule_key
from mxgradlayer.graph import Eqn

from helpers import Lambda
from op_specs import SPECS, VARIANTS, ALIASES


def _emitted_ops(block, n_inputs, shapes):
    vars_ = [mx.sym.var(f'x{i}', shape=s, dtype='float64') for i, s in enumerate(shapes)]
    out = block(*vars_)
    out = out if isinstance(out, mx.sym.Symbol) else mx.sym.Group(list(out))
    nodes = json.loads(out.tojson())['nodes']
    return [Eqn(i, n['op'], n['name'], n.get('attrs', {}), []) for i, n in enumerate(nodes)
            if n['op'] != 'null']


def _derived_blocks(spec, wrt):
    net = Lambda(spec.fn)
    yield 'VJP', mg.VJP(net, wrt), list(spec.shapes) + [None]
    yield 'JVP', mg.JVP(net, wrt), list(spec.shapes) + [spec.shapes[wrt]]
    yield 'InputGradient', mg.InputGradient(net, wrt), list(spec.shapes)


@pytest.mark.parametrize('spec', SPECS + VARIANTS, ids=[s.op for s in SPECS + VARIANTS])
def test_rules_emit_only_covered_operators(spec):
    for wrt in spec.wrt:
        for mode, block, shapes in _derived_blocks(spec, wrt):
            if shapes[-1] is None:  # VJP's w has the output's shape
                out = Lambda(spec.ref or spec.fn)(
                    *[mx.nd.zeros(s, dtype='float64') for s in spec.shapes])
                shapes[-1] = out.shape
            for eqn in _emitted_ops(block, len(shapes), shapes):
                # a lowered operator is rewritten again when the derived block is traced
                assert rule_key(eqn) in RULES or eqn.op in LOWERINGS, \
                    f'{mode} of {spec.op} emits {rule_key(eqn)}, which has no rule'


def test_every_registered_operator_has_a_spec_row():
    tested = {s.op for s in SPECS + VARIANTS}
    missing = [op for op in list(RULES) + list(LOWERINGS)
               if op not in tested and op not in ZERO_DERIVATIVE_OPS
               and ALIASES.get(op) not in tested]
    assert not missing, f'operators with rules but no row in tests/op_specs.py: {missing}'


def test_supported_ops_is_the_registry():
    assert mg.supported_ops() == sorted(set(RULES) | set(LOWERINGS))
    assert 'FullyConnected' in mg.supported_ops() and 'Activation:tanh' in mg.supported_ops()
