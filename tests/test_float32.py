"""float32 on MXNet's default CPU path (oneDNN on), each check in a process of its own
(tests/isolated.py): random real-shaped convolutional networks against float64 twins and
central differences (tests/float32_properties.py), per-sample blocks (Laplacian,
Jacobian, Hessian) on a real-shaped residual network (tests/per_sample_float32_check.py),
and a WGAN-GP critic with BatchNorm in training mode that must learn."""
import pytest

from isolated import result_of, run_script


def test_random_real_shaped_networks_in_float32():
    out = run_script('float32_properties.py', '--examples', 25)
    assert 'passed 25' in out


@pytest.mark.slow
def test_soak_random_real_shaped_networks_in_float32():
    out = run_script('float32_properties.py', '--examples', 400, timeout=3600)
    assert 'passed 400' in out


@pytest.mark.parametrize('mode', ['imperative', 'hybridized'])
def test_wgan_gp_critic_with_batchnorm_trains_in_float32(mode):
    # the script asserts that the Wasserstein estimate grows by 0.5 and that the
    # penalty holds the mean gradient norm within (0.3, 3)
    out = run_script('float32_properties.py', '--critic', mode)
    assert f'critic {mode}' in out


def test_per_sample_blocks_on_a_real_shaped_network_in_float32():
    """Laplacian, Jacobian (both modes) and Hessian over a 3x6x6 input: 108 directions
    folded into the batch axis, summed and repeated by matrix products."""
    worst = result_of(run_script('per_sample_float32_check.py'))
    assert len(worst) == 11, worst
    assert worst.pop('Laplacian float64 vs differences') < 1e-7
    assert worst.pop('Laplacian loss parameter gradient float64 vs differences') < 1e-6
    for key, err in worst.items():
        assert err < 1e-5, (key, err)
