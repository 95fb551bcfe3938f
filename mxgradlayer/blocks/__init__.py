# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Derivative layers: Gluon HybridBlocks that differentiate a wrapped block by its inputs.

`base` is the shell they share; `total` holds the total-derivative blocks (InputGradient,
VJP, JVP, HVP), `per_sample` those that need every direction of each sample's input
(Jacobian, Hessian, Laplacian, Divergence), `taylor` the Taylor-mode ones (Taylor,
DifferentialOperator).
"""
from .base import DerivativeBlock, PerSampleBlock
from .total import InputGradient, VJP, JVP, HVP
from .per_sample import Jacobian, Hessian, Laplacian, Divergence
from .taylor import Taylor, DifferentialOperator

__all__ = ['InputGradient', 'VJP', 'JVP', 'Jacobian', 'HVP', 'Hessian', 'Laplacian',
           'Divergence', 'Taylor', 'DifferentialOperator', 'DerivativeBlock', 'PerSampleBlock']
