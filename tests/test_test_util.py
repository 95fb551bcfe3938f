"""The checker catches wrong rules: at first order, and at second order only."""
import pytest

from mxgradlayer import registry
from mxgradlayer.registry import def_elementwise
from mxgradlayer.test_util import check_grads

from helpers import Lambda, array


@pytest.fixture
def restore_rules():
    saved = registry.operators()
    yield
    registry.restore(saved)


def test_checker_passes_a_correct_rule():
    check_grads(Lambda(lambda F, x: F.sin(x)), [array((3, 4))], order=2)


def test_checker_catches_a_rule_off_by_a_tenth_of_a_percent(restore_rules):
    def_elementwise('sin', lambda F, x, y, a: F.cos(x) * 1.001, lambda F, x, y, a: -y)
    with pytest.raises(AssertionError, match='JVP of'):
        check_grads(Lambda(lambda F, x: F.sin(x)), [array((3, 4))], order=1)
    with pytest.raises(AssertionError, match='VJP of'):
        check_grads(Lambda(lambda F, x: F.sin(x)), [array((3, 4))], order=1, modes=('rev',))


def test_checker_catches_a_rule_wrong_only_at_second_order(restore_rules):
    # sin's rule emits cos, whose own rule is now wrong: first order is still right
    def_elementwise('cos', lambda F, x, y, a: F.sin(x) * -1.01, lambda F, x, y, a: -y)
    block = Lambda(lambda F, x: F.sin(x))
    check_grads(block, [array((3, 4))], order=1)
    with pytest.raises(AssertionError, match='of JVP of|of VJP of'):
        check_grads(block, [array((3, 4))], order=2)
