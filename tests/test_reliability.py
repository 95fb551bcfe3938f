"""Determinism, float32 against float64, and (slow) a long run whose memory stays flat."""
import os
import subprocess
import sys

import numpy as np
import pytest

import mxgradlayer as mg
from mxgradlayer.test_util import relative_error

from helpers import array, mlp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKS = [mg.InputGradient, mg.Jacobian, mg.Hessian, mg.Laplacian]


@pytest.mark.parametrize('cls', BLOCKS, ids=[c.__name__ for c in BLOCKS])
def test_repeated_calls_are_bit_identical(cls):
    net = mlp([16, 16, 2], 'tanh', in_units=3)
    x = array((8, 3), seed=1)
    for hybridize in (False, True):
        blk = cls(net)
        if hybridize:
            blk.hybridize(static_alloc=True)
        first = blk(x).asnumpy()
        for _ in range(3):
            np.testing.assert_array_equal(blk(x).asnumpy(), first)
    imperative = cls(net)(x).asnumpy()
    hybrid = cls(net)
    hybrid.hybridize()
    assert relative_error(hybrid(x).asnumpy(), imperative) < 1e-12


@pytest.mark.parametrize('cls', BLOCKS + [mg.Divergence], ids=lambda c: c.__name__)
def test_float32_agrees_with_float64(cls):
    width_out = 3 if cls is mg.Divergence else 2
    net64 = mlp([16, 16, width_out], 'tanh', in_units=3)
    net32 = mlp([16, 16, width_out], 'tanh', in_units=3, dtype='float32')
    for p32, p64 in zip(net32.collect_params().values(), net64.collect_params().values()):
        p32.set_data(p64.data().astype('float32'))
    x = array((6, 3), seed=2)
    ref = cls(net64)(x).asnumpy()
    for hybridize in (False, True):
        blk = cls(net32)
        if hybridize:
            blk.hybridize()
        got = blk(x.astype('float32'))
        assert got.dtype == np.float32
        assert relative_error(got.asnumpy(), ref) < 1e-4


@pytest.mark.slow
def test_ten_thousand_poisson_steps_keep_memory_flat():
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'long_run.py'),
                          '--steps', '10000', '--tolerance-mb', '20'],
                         capture_output=True, text=True, timeout=3600)
    assert res.returncode == 0, res.stdout + res.stderr
