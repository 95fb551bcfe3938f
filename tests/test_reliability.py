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


def test_small_machine_settings_fix_mxnets_halved_core_count():
    """2-3 cores: tuning off and MXNet's OpenMP pool at the core count; else nothing;
    OMP_NUM_THREADS set by the user leaves the pool alone."""
    settings = mg._small_machine_settings
    env = dict(os.environ)
    try:
        os.environ.pop('OMP_NUM_THREADS', None)
        assert settings(2) == {'MXNET_USE_OPERATOR_TUNING': '0', 'MXNET_OMP_MAX_THREADS': '2'}
        assert settings(3)['MXNET_OMP_MAX_THREADS'] == '3'
        assert settings(1) == {} and settings(4) == {} and settings(64) == {}
        os.environ['OMP_NUM_THREADS'] = '2'
        assert settings(2) == {'MXNET_USE_OPERATOR_TUNING': '0'}
    finally:
        os.environ.clear()
        os.environ.update(env)


def _environment_after(code, **env):
    run_env = {k: v for k, v in os.environ.items()
               if k not in ('OMP_NUM_THREADS', 'MXNET_USE_OPERATOR_TUNING',
                            'MXNET_OMP_MAX_THREADS', 'MXGRADLAYER_KEEP_MXNET_DEFAULTS')}
    run_env.update(env)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
    out = subprocess.run([sys.executable, '-c', code + '\nimport os\nprint(os.environ.get('
                          '"MXNET_USE_OPERATOR_TUNING"), os.environ.get("MXNET_OMP_MAX_THREADS"))'],
                         cwd=root, env=run_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_settings_apply_only_before_mxnet_and_never_over_the_users():
    expected = mg._small_machine_settings(mg._usable_cores())
    if not expected:
        pytest.skip('not a 2- or 3-core machine: mxgradlayer sets nothing here')
    cores = str(mg._usable_cores())
    assert _environment_after('import mxgradlayer') == ['0', cores]
    assert _environment_after('import mxnet, mxgradlayer') == ['None', 'None']
    assert _environment_after('import mxgradlayer', MXNET_USE_OPERATOR_TUNING='1') == ['1', cores]
    assert _environment_after('import mxgradlayer', MXNET_OMP_MAX_THREADS='1') == ['0', '1']
    assert _environment_after('import mxgradlayer', MXGRADLAYER_KEEP_MXNET_DEFAULTS='1') == \
        ['None', 'None']
