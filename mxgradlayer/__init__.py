# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""mxgradlayer: derivatives of Gluon networks by their inputs, as trainable HybridBlocks."""
from .blocks import (InputGradient, VJP, JVP, Jacobian, HVP, Hessian, Laplacian,
                     Divergence)
from .errors import (MXGradLayerError, UnsupportedOperatorError, SampleCouplingError,
                     InputSpecError)
from .functional import grad, jvp, vjp, hvp, hessian, laplacian
from .registry import supported_ops
from .check import check

__version__ = '0.1.0'

__all__ = ['InputGradient', 'VJP', 'JVP', 'Jacobian', 'HVP', 'Hessian', 'Laplacian',
           'Divergence', 'grad', 'jvp', 'vjp', 'hvp', 'hessian', 'laplacian',
           'supported_ops', 'check', 'MXGradLayerError', 'UnsupportedOperatorError',
           'SampleCouplingError', 'InputSpecError', '__version__']
