"""Issue 11's non-oneDNN failures, each in a process of its own (tests/workaround_cases.py):
two of them killed the interpreter."""
import pytest

from isolated import run_script
from workaround_cases import CASES


@pytest.mark.parametrize('case', sorted(CASES))
def test_workaround(case):
    assert f'ok {case}' in run_script('workaround_cases.py', case)
