# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""mxgradlayer: derivatives of Gluon networks by their inputs, as trainable HybridBlocks."""
import os
import sys

# mxnet 1.9.1 sums the gradient contributions of a node with 8 or more consumers by a
# chain of in-place additions tied by control dependencies; in a cached graph a pruned
# chain can leave a dependency on a node that is gone, and the hybridized block fails
# with "control dep not found in graph" (README, known issues).  Derived graphs read
# their inputs and primal values in many places, so every sum is made one ElementWiseSum.
# MXNet reads the setting once, when the process builds its first gradient graph; a
# value the user set stands.
os.environ.setdefault('MXNET_EXEC_INPLACE_GRAD_SUM_CAP', str(1 << 30))


def _small_machine_settings(cores):
    """What MXNet 1.9.1 gets wrong by default on a machine with 2 or 3 usable cores.

    Both defaults assume hyper-threads and halve the core count to 1 (README,
    Performance): MXNet's OpenMP pool (src/engine/openmp.cc: omp_get_num_procs() >> 1 on
    x86 unless OMP_NUM_THREADS is set, and omp_set_num_threads of that, which oneDNN then
    uses too), and the operator tuner (src/operator/operator_tune-inl.h: OpenMP overhead
    measured on omp_get_num_procs() / 2 cores, infinite below 2, so no tuned kernel uses
    OpenMP).  Measured on two cores: elemwise_mul of 4096 x 64 0.15 ms by default,
    0.04-0.07 ms with both settings; tanh 3.1 against 1.6 ms.  MXNET_OMP_MAX_THREADS
    (MXNet's own) leaves other libraries' OpenMP alone."""
    if not 2 <= cores < 4:
        return {}
    settings = {'MXNET_USE_OPERATOR_TUNING': '0'}
    if 'OMP_NUM_THREADS' not in os.environ:
        settings['MXNET_OMP_MAX_THREADS'] = str(cores)
    return settings


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# MXNet reads these when libmxnet loads: they can only apply when mxgradlayer is imported
# before mxnet; a value the user set stands (MXGRADLAYER_KEEP_MXNET_DEFAULTS=1 sets none).
if 'mxnet' not in sys.modules and not os.environ.get('MXGRADLAYER_KEEP_MXNET_DEFAULTS'):
    for _name, _value in _small_machine_settings(_usable_cores()).items():
        os.environ.setdefault(_name, _value)
from .blocks import (InputGradient, VJP, JVP, Jacobian, HVP, Hessian, Laplacian,
                     Divergence, Taylor, DifferentialOperator)
from .errors import (MXGradLayerError, UnsupportedOperatorError, SampleCouplingError,
                     InputSpecError, ExportError)
from .functional import grad, jvp, vjp, hvp, hessian, laplacian
from .registry import supported_ops
from .coverage import check
from .serving import export_onnx, exportable_ops

__version__ = '0.1.0'

__all__ = ['InputGradient', 'VJP', 'JVP', 'Jacobian', 'HVP', 'Hessian', 'Laplacian',
           'Divergence', 'Taylor', 'DifferentialOperator', 'grad', 'jvp', 'vjp', 'hvp', 'hessian', 'laplacian',
           'supported_ops', 'check', 'MXGradLayerError', 'UnsupportedOperatorError',
           'SampleCouplingError', 'InputSpecError', 'ExportError', 'export_onnx',
           'exportable_ops', '__version__']
