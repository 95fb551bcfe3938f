# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""mxgradlayer: derivatives of Gluon networks by their inputs, as trainable HybridBlocks."""
import os

# mxnet 1.9.1 sums the gradient contributions of a node with 8 or more consumers by a
# chain of in-place additions tied by control dependencies; in a cached graph a pruned
# chain can leave a dependency on a node that is gone, and the hybridized block fails
# with "control dep not found in graph" (README, known issues).  Derived graphs read
# their inputs and primal values in many places, so every sum is made one ElementWiseSum.
# MXNet reads the setting once, when the process builds its first gradient graph; a
# value the user set stands.
os.environ.setdefault('MXNET_EXEC_INPLACE_GRAD_SUM_CAP', str(1 << 30))
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
