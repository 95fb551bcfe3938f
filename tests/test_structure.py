"""The core's layers import one way: ir <- registry <- tracing, transform <- blocks;
serving (ONNX export) sits beside the blocks and needs only ir and tracing."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'mxgradlayer'
# module -> the mxgradlayer modules it may import (errors is everyone's)
ALLOWED = {
    'ir': set(),
    'series': set(),
    'registry': {'series'},
    'tracing': {'ir', 'registry'},
    'transform': {'ir', 'registry'},
    'rules': {'ir', 'registry', 'series', 'rules'},
    'blocks': {'rules', 'tracing', 'transform', 'blocks'},
    'serving': {'ir', 'tracing', 'serving'},
}


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = path.relative_to(PACKAGE).with_suffix('').parts[:-1]
            base = list(parts[:len(parts) - node.level + 1])
            target = base + (node.module.split('.') if node.module else [])
            if not target:  # "from . import rules"
                target = [node.names[0].name]
            yield target[0]


@pytest.mark.parametrize('layer', sorted(ALLOWED))
def test_layer_imports_only_the_layers_below_it(layer):
    paths = ([PACKAGE / f'{layer}.py'] if (PACKAGE / f'{layer}.py').exists()
             else sorted((PACKAGE / layer).glob('*.py')))
    assert paths
    for path in paths:
        wrong = {m for m in _imports(path) if m != 'errors'} - ALLOWED[layer]
        assert not wrong, f'{path.relative_to(PACKAGE)} imports {sorted(wrong)}'
