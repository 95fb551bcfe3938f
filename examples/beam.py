#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Euler-Bernoulli beam u''''(x) = q on [0, 1] under a uniform load, by a physics-informed net.

The deflection u(x) is an MLP 1 -> 64 -> 64 -> 64 -> 1 with tanh.  One
mxgradlayer.Taylor(u, order=4) block gives u, u', u'', u''' and u'''' of every point
in a single Taylor-mode sweep (no nesting of four gradients): the fourth derivative
enters the equation's residual at the interior points, the lower ones the boundary
conditions of the chosen supports, all from the same call.  With q = 24 the exact
deflections are polynomials:

  cantilever        u(0) = u'(0) = 0, u''(1) = u'''(1) = 0   u = x^4 - 4x^3 + 6x^2
  clamped           u(0) = u'(0) = 0, u(1) = u'(1) = 0       u = x^2 (1 - x)^2
  simply-supported  u(0) = u''(0) = 0, u(1) = u''(1) = 0     u = x^4 - 2x^3 + x

The relative L2 error against the exact deflection on 201 points is printed, and a PNG
shows the deflection, the error and the training loss.
"""
import os
import sys

import numpy as np
from mxnet import gluon, nd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import mxgradlayer  # noqa: E402
import _pinn  # noqa: E402

LOAD = 24.0
# supports: (boundary point, derivative order) pairs that vanish, and the exact deflection
SUPPORTS = {
    'cantilever': (((0.0, 0), (0.0, 1), (1.0, 2), (1.0, 3)),
                   lambda x: x ** 4 - 4 * x ** 3 + 6 * x ** 2),
    'clamped': (((0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1)),
                lambda x: x ** 2 * (1 - x) ** 2),
    'simply-supported': (((0.0, 0), (0.0, 2), (1.0, 0), (1.0, 2)),
                         lambda x: x ** 4 - 2 * x ** 3 + x),
}


class BeamLoss(gluon.HybridBlock):
    """mean(((u'''' - q) / q)^2) inside + weight * sum of the squared boundary conditions.

    The boundary points are appended to the interior ones, so a single Taylor sweep
    (one primal evaluation) serves both.
    """

    def __init__(self, u, conditions, boundary_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        self._conditions = conditions
        self._weight = boundary_weight
        with self.name_scope():
            self.taylor = mxgradlayer.Taylor(u, order=4)

    def hybrid_forward(self, F, x, boundary_x):
        points = F.concat(x, boundary_x, dim=0)
        series = self.taylor(points, F.ones_like(points))  # (5, points, 1)
        n = len(self._conditions)
        interior = F.slice(series, begin=(4, 0, None), end=(5, -n, None))
        residual = F.mean(F.square(interior / LOAD - 1.0))
        ends = F.slice_axis(series, axis=1, begin=-n, end=None)  # the boundary points
        boundary = [F.slice(ends, begin=(order, i, None), end=(order + 1, i + 1, None))
                    for i, (_, order) in enumerate(self._conditions)]
        return residual + self._weight * F.add_n(*[F.sum(F.square(b)) for b in boundary])


def relative_l2(net, exact, n=201):
    x = np.linspace(0, 1, n)
    u = net(nd.array(x[:, None])).asnumpy().ravel()
    ue = exact(x)
    return float(np.linalg.norm(u - ue) / np.linalg.norm(ue)), x, u, ue


def main(argv=None):
    p = _pinn.parser(__doc__, 'beam.png', lr=3e-3)
    p.add_argument('--supports', choices=sorted(SUPPORTS), default='cantilever')
    p.add_argument('--points', type=int, default=128, help='interior points per step')
    args = p.parse_args(argv)

    conditions, exact = SUPPORTS[args.supports]
    net = _pinn.make_net(1)
    boundary_x = nd.array([[point] for point, _ in conditions])
    losses, elapsed = _pinn.train(
        net, BeamLoss(net, conditions),
        lambda rng: (nd.array(rng.uniform(0, 1, size=(args.points, 1))), boundary_x),
        args, args.supports)
    err, x, u, ue = relative_l2(net, exact)
    print(f'{args.supports} beam: relative L2 error on 201 points: {err:.2e}  '
          f'{_pinn.timing(args, elapsed)}')
    if args.plot:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        axes[0].plot(x, ue, 'k-', lw=3, alpha=0.4, label='exact')
        axes[0].plot(x, u, 'C0--', label='network')
        axes[0].set_title(f"{args.supports} beam, u'''' = {LOAD:g}")
        axes[0].set_xlabel('x')
        axes[0].legend()
        axes[1].plot(x, u - ue)
        axes[1].set_title(f'error (relative L2 {err:.1e})')
        axes[1].set_xlabel('x')
        _pinn.plot_loss(axes[2], losses)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f'plot written to {args.plot}')
    return err


if __name__ == '__main__':
    main()
