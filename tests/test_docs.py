"""The blocks' docstrings: numpydoc sections for every block, and their examples run."""
import doctest
import inspect

import pytest

import mxgradlayer as mg
from mxgradlayer.serving import export as serving
from mxgradlayer.blocks import per_sample, total

BLOCKS = [mg.InputGradient, mg.VJP, mg.JVP, mg.HVP, mg.Jacobian, mg.Hessian, mg.Laplacian,
          mg.Divergence]


@pytest.mark.parametrize('block', BLOCKS, ids=[b.__name__ for b in BLOCKS])
def test_every_block_documents_its_parameters_inputs_outputs_and_examples(block):
    doc = inspect.getdoc(block)
    for section in ('Parameters\n----------', 'Inputs:', 'Outputs:', 'Examples\n--------'):
        assert section in doc, f'{block.__name__} has no {section.splitlines()[0]} section'
    deprecated = {'method'} if block is mg.HVP else set()
    params = [p for p in inspect.signature(block.__init__).parameters
              if p not in {'self', 'kwargs'} | deprecated]
    for name in params:
        assert f'{name} :' in doc, f'{block.__name__} does not document {name}'


@pytest.mark.parametrize('module', [total, per_sample, serving],
                         ids=['total', 'per_sample', 'serving'])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_readme_shows_rules_as_they_are_in_the_table():
    """The rows "Adding an operator" quotes are the rows in mxgradlayer/rules."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent
    readme = (root / 'README.md').read_text()
    section = readme.split('## Adding an operator')[1].split('\n## ')[0]
    sources = ''.join(p.read_text() for p in (root / 'mxgradlayer' / 'rules').glob('*.py'))
    quoted = [block.split('```')[0] for block in section.split('```')[1::2]]
    rows = []
    for block in quoted:
        lines = [l for l in block.splitlines() if l and not l.startswith(('python', 'from '))]
        rows += ['\n'.join(lines[i:j]) for i, j in _statements(lines)]
    assert len(rows) >= 3
    for row in rows:
        assert row in sources, f'README quotes a rule that is not in mxgradlayer/rules:\n{row}'


def _statements(lines):
    """(start, end) of each top-level statement: a line and its continuation lines."""
    starts = [i for i, l in enumerate(lines) if not l.startswith(' ')] + [len(lines)]
    return list(zip(starts, starts[1:]))
