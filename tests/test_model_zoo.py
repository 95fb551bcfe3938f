"""Every family of mxnet.gluon.model_zoo.vision through the derivative blocks in float32
on MXNet's default CPU path (oneDNN on), at its native input size, batch 2, each network
in a process of its own (tests/zoo_check.py does the work; a crash fails one test).

Checked per network: InputGradient imperative and hybridized, against a float64 twin
and against one-sided differences of the float64 network (its output is piecewise
linear: see zoo_check.py); a gradient-penalty step, imperative and hybridized, whose
float32 parameter gradients agree with the float64 ones, and these with differences
along a random direction of all parameters (``make test-slow``: also of the last
layer's alone, where the penalty is smooth).  JVP and HVP on a ResNet and a MobileNet.  The smallest member of each family runs in ``make test``, all
of them in ``make test-slow``.
"""
import os
import subprocess
import sys
import time

import pytest

from isolated import HERE, result_of, run_script

# in the order they are started.  vgg11 without BatchNorm (100 s, 9 GB) runs in
# make test-slow only: with vgg11_bn it was a third of the default suite's model zoo
DEFAULT = ['vgg11_bn', 'resnet18_v1', 'resnet18_v2', 'squeezenet1.1', 'mobilenet0.25',
           'mobilenetv2_0.25', 'inceptionv3', 'densenet121', 'alexnet', 'squeezenet1.0']
SLOW = ['vgg11', 'resnet34_v1', 'resnet50_v1', 'resnet101_v1', 'resnet152_v1', 'resnet34_v2',
        'resnet50_v2', 'resnet101_v2', 'resnet152_v2', 'vgg13', 'vgg16', 'vgg19',
        'vgg13_bn', 'vgg16_bn', 'vgg19_bn', 'densenet161', 'densenet169', 'densenet201',
        'mobilenet0.5', 'mobilenet0.75', 'mobilenet1.0', 'mobilenetv2_0.5',
        'mobilenetv2_0.75', 'mobilenetv2_1.0']
WITH_HVP_JVP = {'resnet18_v1', 'mobilenet0.25'}

# float32 against float64, relative L2.  The derivatives of these ReLU networks are
# piecewise constant, and float32 rounding moves some units across their kinks: measured
# 2e-3 (densenet121), 3e-3 (mobilenet0.25); a wrong rule is off by O(1).
FLOAT32_TOLERANCE = 3e-2
# hybridized against imperative float32: the same kernels, in another order at most
HYBRIDIZED_TOLERANCE = 1e-5
# float64 against differences: what rounding allows (reported by zoo_check) plus 1e-6
FD_TOLERANCE = 1e-6


# Peak resident memory of each check, measured (GB): the schedule below keeps the sum
# of what runs at once under MEMORY_BUDGET.  VGG's 133 million parameters in float64,
# with their gradients and a direction, are most of its 9 GB.
PEAK_GB = {'vgg11': 8.9, 'vgg11_bn': 9.2, 'alexnet': 3.4, 'inceptionv3': 3.3,
           'densenet121': 3.3, 'squeezenet1.0': 2.6, 'resnet18_v1': 2.4,
           'resnet18_v2': 2.4, 'squeezenet1.1': 2.2, 'mobilenet0.25': 1.0,
           'mobilenetv2_0.25': 0.9}
MEMORY_BUDGET = 12.5
WORKERS = 2


def _args(network, thorough=False):
    return [network] + (['--hvp-jvp'] if network in WITH_HVP_JVP else []) + \
        (['--thorough'] if thorough else [])


class _Schedule:
    """The default checks, two processes at a time with one thread each: a check spends
    much of its time in single-threaded work (tracing, graph building, numpy), and two
    at once finish in 78 % of the time of one after the other with two threads each
    (resnet18_v2 and squeezenet1.0: 22.8 s against 29.3 s).  Each is still a process
    of its own, and its test reads its result when it finishes."""

    def __init__(self, networks):
        self.pending, self.running, self.done = list(networks), {}, {}

    def _start_what_fits(self):
        for network in list(self.pending):
            if len(self.running) >= WORKERS:
                return
            used = sum(PEAK_GB[n] for n in self.running)
            if self.running and used + PEAK_GB[network] > MEMORY_BUDGET:
                continue
            env = dict(os.environ, OMP_NUM_THREADS='1')
            self.running[network] = (subprocess.Popen(
                [sys.executable, os.path.join(HERE, 'zoo_check.py'), *_args(network)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
                time.perf_counter())
            self.pending.remove(network)

    def result(self, network, timeout=1800):
        while network not in self.done:
            self._start_what_fits()
            for n, (proc, start) in list(self.running.items()):
                if proc.poll() is not None or time.perf_counter() - start > timeout:
                    if proc.poll() is None:
                        proc.kill()
                    out, err = proc.communicate()
                    self.done[n] = (proc.returncode, out, err)
                    del self.running[n]
            time.sleep(0.1)
        code, out, err = self.done[network]
        if code != 0:
            how = (f'was killed by signal {-code}' if code < 0 else f'exited with status {code}')
            raise AssertionError(f'zoo_check.py {" ".join(_args(network))} {how}\n'
                                 f'--- stdout (tail)\n{out[-3000:]}\n'
                                 f'--- stderr (tail)\n{err[-3000:]}')
        return result_of(out)


@pytest.fixture(scope='module')
def schedule():
    return _Schedule(DEFAULT)


def _check(res, network, thorough=False):
    assert res['hybridized_vs_imperative'] < HYBRIDIZED_TOLERANCE, res
    assert res['penalty_hybridized_vs_imperative'] < HYBRIDIZED_TOLERANCE, res
    assert res['float32_vs_float64'] < FLOAT32_TOLERANCE, res
    assert res['float32_hybridized_vs_float64'] < FLOAT32_TOLERANCE, res
    assert res['penalty_float32_vs_float64'] < FLOAT32_TOLERANCE, res
    assert res['float64_vs_fd'] < FD_TOLERANCE + res['float64_vs_fd_rounding'], res
    assert res['penalty_float64_vs_fd_all'] < \
        FD_TOLERANCE + res['penalty_float64_vs_fd_all_rounding'], res
    if thorough:
        assert res['penalty_float64_vs_fd_last'] < FD_TOLERANCE, res
    if network in WITH_HVP_JVP:
        assert res['jvp_float32_vs_float64'] < FLOAT32_TOLERANCE, res
        assert res['hvp_float32_vs_float64'] < FLOAT32_TOLERANCE, res
        assert res['hvp_rev_rev_vs_fwd_rev'] < HYBRIDIZED_TOLERANCE, res
        assert res['jvp_float64_vs_fd'] < FD_TOLERANCE + res['jvp_float64_vs_fd_rounding'], res
        assert res['hvp_float64_vs_fd'] < FD_TOLERANCE + res['hvp_float64_vs_fd_rounding'], res


@pytest.mark.parametrize('network', DEFAULT)
def test_model_zoo_network(network, schedule):
    _check(schedule.result(network), network)


@pytest.mark.slow
@pytest.mark.parametrize('network', DEFAULT + SLOW)
def test_model_zoo_network_thorough(network):
    # one at a time, with two threads: the large members' memory is not measured
    _check(result_of(run_script('zoo_check.py', *_args(network, thorough=True),
                                timeout=3600)), network, thorough=True)
