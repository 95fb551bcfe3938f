#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Kirchhoff plate: the biharmonic Delta^2 w = 4 pi^4 sin(pi x) sin(pi y) on the unit square.

A simply supported plate: w = 0 and Delta w = 0 on the boundary; the exact deflection is
w = sin(pi x) sin(pi y).  The network w(x, y) is an MLP 2 -> 64 -> 64 -> 64 -> 1 with
tanh.  mxgradlayer.DifferentialOperator(w, 'biharmonic') computes
w_xxxx + 2 w_xxyy + w_yyyy by collapsed Taylor mode: one sweep carries the fourth-order
Taylor coefficients along a few interpolation directions, summed as they propagate,
instead of nesting a Laplacian inside a Laplacian; the boundary's Delta w comes from
the same block kind with terms='laplacian'.  The relative L2 error on a 101 x 101 grid
is printed, and a PNG shows the deflection, the exact one, the error and the loss.
"""
import os
import sys

import numpy as np
from mxnet import gluon

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import mxgradlayer  # noqa: E402
import _pinn  # noqa: E402

LOAD = 4 * np.pi ** 4


class PlateLoss(gluon.HybridBlock):
    """mean(((Delta^2 w - q) / (4 pi^4))^2) inside + weight * mean(w^2 + (Delta w / 2 pi^2)^2)
    on the boundary (each term scaled by its size in the exact solution)."""

    def __init__(self, w, boundary_weight=10.0, **kwargs):
        super().__init__(**kwargs)
        self._weight = boundary_weight
        with self.name_scope():
            self.w = w
            self.biharmonic = mxgradlayer.DifferentialOperator(w, 'biharmonic')
            self.laplacian = mxgradlayer.DifferentialOperator(w, 'laplacian')

    def hybrid_forward(self, F, x_in, x_bd):
        shape = _pinn.sine_mode_at(F, x_in)
        interior = F.mean(F.square(self.biharmonic(x_in) / LOAD - shape))
        boundary = (F.mean(F.square(self.w(x_bd)))
                    + F.mean(F.square(self.laplacian(x_bd) / (2 * np.pi ** 2))))
        return interior + self._weight * boundary


def main(argv=None):
    return _pinn.solve_on_square(argv, __doc__, 'biharmonic_plate.png', PlateLoss, 'w', 'plate',
                                 interior=512)


if __name__ == '__main__':
    main()
