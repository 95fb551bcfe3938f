#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Solve -Laplacian(u) = 2 pi^2 sin(pi x) sin(pi y) on the unit square, u = 0 on its boundary.

A physics-informed network u(x, y) (an MLP 2 -> 64 -> 64 -> 64 -> 1 with tanh) is trained
with mxgradlayer.Laplacian inside the loss: the forward Laplacian propagates the value,
the two input directions and the Laplacian in one sweep, and MXNet trains through it with
its ordinary first-order backward.  The exact solution is sin(pi x) sin(pi y); the
relative L2 error on a 101 x 101 grid is printed, and a PNG shows the solution, the exact
solution and the error.
"""
import os
import sys

import numpy as np
from mxnet import gluon

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import mxgradlayer  # noqa: E402
import _pinn  # noqa: E402


class PoissonLoss(gluon.HybridBlock):
    """mean((-Laplacian(u) - f)^2) inside + weight * mean(u^2) on the boundary."""

    def __init__(self, u, boundary_weight=100.0, **kwargs):
        super().__init__(**kwargs)
        self._weight = boundary_weight
        with self.name_scope():
            self.u = u
            self.lap = mxgradlayer.Laplacian(u)

    def hybrid_forward(self, F, x_in, x_bd):
        f = 2 * np.pi ** 2 * _pinn.sine_mode_at(F, x_in)
        interior = F.mean(F.square(-self.lap(x_in) - f))
        boundary = F.mean(F.square(self.u(x_bd)))
        return interior + self._weight * boundary


def main(argv=None):
    return _pinn.solve_on_square(argv, __doc__, 'poisson2d.png', PoissonLoss, 'u', 'poisson',
                                 interior=1024)


if __name__ == '__main__':
    main()
