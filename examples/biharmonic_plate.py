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
import argparse
import os
import sys
import time

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import mxgradlayer  # noqa: E402

try:
    from tqdm import trange
except ImportError:
    trange = None

LOAD = 4 * np.pi ** 4


def make_net(width=64, depth=3):
    net = gluon.nn.HybridSequential()
    units = 2
    for _ in range(depth):
        net.add(gluon.nn.Dense(width, activation='tanh', in_units=units))
        units = width
    net.add(gluon.nn.Dense(1, in_units=units))
    return net


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
        xs = F.slice_axis(x_in, axis=1, begin=0, end=1)
        ys = F.slice_axis(x_in, axis=1, begin=1, end=2)
        shape = F.sin(np.pi * xs) * F.sin(np.pi * ys)
        interior = F.mean(F.square(self.biharmonic(x_in) / LOAD - shape))
        boundary = (F.mean(F.square(self.w(x_bd)))
                    + F.mean(F.square(self.laplacian(x_bd) / (2 * np.pi ** 2))))
        return interior + self._weight * boundary


def boundary_points(rng, n):
    t = rng.uniform(0, 1, size=n)
    side = rng.integers(0, 4, size=n)
    x = np.where(side == 0, 0.0, np.where(side == 1, 1.0, t))
    y = np.where(side == 2, 0.0, np.where(side == 3, 1.0, t))
    return np.stack([x, y], axis=1)


def relative_l2(net, n=101):
    g = np.linspace(0, 1, n)
    X, Y = np.meshgrid(g, g, indexing='ij')
    pts = np.stack([X.ravel(), Y.ravel()], axis=1)
    w = net(nd.array(pts)).asnumpy().reshape(n, n)
    exact = np.sin(np.pi * X) * np.sin(np.pi * Y)
    return float(np.linalg.norm(w - exact) / np.linalg.norm(exact)), X, Y, w, exact


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--steps', type=int, default=3000)
    p.add_argument('--interior', type=int, default=512, help='interior points per step')
    p.add_argument('--boundary', type=int, default=256, help='boundary points per step')
    p.add_argument('--lr', type=float, default=2e-3, help='initial Adam learning rate')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--plot', default='biharmonic_plate.png', help='PNG path ("" for none)')
    p.add_argument('--no-progress', action='store_true')
    args = p.parse_args(argv)

    mx.random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    net = make_net()
    net.initialize(mx.init.Xavier())
    loss_block = PlateLoss(net)
    loss_block.hybridize(static_alloc=True, static_shape=True)
    schedule = mx.lr_scheduler.CosineScheduler(max_update=args.steps, base_lr=args.lr,
                                               final_lr=args.lr * 1e-2)
    trainer = gluon.Trainer(net.collect_params(), 'adam',
                            {'learning_rate': args.lr, 'lr_scheduler': schedule})
    steps = range(args.steps)
    if trange is not None and not args.no_progress:
        steps = trange(args.steps, desc='plate', mininterval=0.5)
    losses = []
    start = time.perf_counter()
    for step in steps:
        x_in = nd.array(rng.uniform(0, 1, size=(args.interior, 2)))
        x_bd = nd.array(boundary_points(rng, args.boundary))
        with autograd.record():
            loss = loss_block(x_in, x_bd)
        loss.backward()
        trainer.step(1)
        if step % 10 == 0 or step == args.steps - 1:
            losses.append((step, loss.asscalar()))
            if hasattr(steps, 'set_postfix') and step % 100 == 0:
                steps.set_postfix(loss=f'{losses[-1][1]:.2e}')
    elapsed = time.perf_counter() - start
    err, X, Y, w, exact = relative_l2(net)
    print(f'relative L2 error on a 101 x 101 grid: {err:.2e}  '
          f'({args.steps} steps in {elapsed:.0f} s, {1e3 * elapsed / args.steps:.1f} ms/step)')
    if args.plot:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 4, figsize=(17, 4))
        for ax, data, title in ((axes[0], w, 'network w'), (axes[1], exact, 'exact'),
                                (axes[2], w - exact, f'error (rel. L2 {err:.1e})')):
            im = ax.pcolormesh(X, Y, data, shading='auto', cmap='viridis')
            fig.colorbar(im, ax=ax)
            ax.set_title(title)
            ax.set_aspect('equal')
        steps_, vals = zip(*losses)
        axes[3].semilogy(steps_, vals)
        axes[3].set_title('training loss')
        axes[3].set_xlabel('step')
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f'plot written to {args.plot}')
    return err


if __name__ == '__main__':
    main()
