"""Rules are closed: every operator a rule emits has rules itself, and every registered
operator has a row in op_specs (so it is checked numerically)."""
import json

import mxnet as mx
import pytest
from mxnet import npx

import mxgradlayer as mg
from mxgradlayer import registry
from mxgradlayer.ir import Eqn

from helpers import Lambda
from op_specs import NUMPY_SPECS, SPECS, VARIANTS


def _emitted_ops(block, n_inputs, shapes):
    vars_ = [mx.sym.var(f'x{i}', shape=s, dtype='float64') for i, s in enumerate(shapes)]
    if mx.util.is_np_array():
        vars_ = [v.as_np_ndarray() for v in vars_]
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
    if registry.operators()[spec.op].supports('Taylor'):  # (NumPy rows: lowerings)
        yield 'Taylor', mg.Taylor(net, order=3, wrt=wrt), list(spec.shapes) + [spec.shapes[wrt]]


@pytest.mark.parametrize('spec', SPECS + VARIANTS, ids=[s.op for s in SPECS + VARIANTS])
def test_rules_emit_only_covered_operators(spec):
    _check_closure(spec, mx.nd)


@pytest.mark.parametrize('spec', NUMPY_SPECS, ids=[s.op for s in NUMPY_SPECS])
def test_rules_emit_only_covered_operators_in_numpy_mode(spec):
    """The same in NumPy mode: derivative blocks of mx.np networks trace to covered
    operators (so they can be differentiated again there)."""
    npx.set_np()
    try:
        _check_closure(spec, mx.np)
    finally:
        npx.reset_np()


def _check_closure(spec, arrays):
    for wrt in spec.wrt:
        for mode, block, shapes in _derived_blocks(spec, wrt):
            if shapes[-1] is None:  # VJP's w has the output's shape
                out = Lambda(spec.ref or spec.fn)(
                    *[arrays.zeros(s, dtype='float64') for s in spec.shapes])
                shapes[-1] = out.shape
            for eqn in _emitted_ops(block, len(shapes), shapes):
                # (a lowered operator is rewritten again when the derived block is traced)
                assert registry.entry(eqn) is not None, \
                    f'{mode} of {spec.op} emits {registry.op_key(eqn)}, which has no rule'


def test_every_registered_operator_has_a_spec_row():
    tested = {s.op for s in SPECS + VARIANTS + NUMPY_SPECS}
    aliases = registry.aliases()
    missing = [op for op, opdef in registry.operators().items()
               if op not in tested and not opdef.zero and aliases.get(op) not in tested]
    assert not missing, f'operators with rules but no row in tests/op_specs.py: {missing}'


def test_supported_ops_is_the_table():
    assert mg.supported_ops() == sorted(registry.operators())
    assert 'FullyConnected' in mg.supported_ops() and 'Activation:tanh' in mg.supported_ops()
    # an alias shares its entry: one definition, two names
    assert registry.operators()['concat'] is registry.operators()['Concat']


def test_every_entry_can_be_differentiated_or_is_rewritten():
    for op, opdef in registry.operators().items():
        assert opdef.zero or opdef.lowering is not None or {'jvp', 'vjp'} <= set(opdef.rules), \
            f'{op}: an entry with rules must have a JVP and a VJP'
        for kind in opdef.rules:
            assert kind in registry.KINDS, f'{op}: unknown rule kind {kind!r}'
