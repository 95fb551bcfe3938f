#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Learn the Müller-Brown potential energy surface from forces alone.

A machine-learned force field predicts an energy E(x) and is trained on forces
F = -dE/dx.  Here the energy network (MLP 2 -> 64 -> 64 -> 64 -> 1, softrelu) never sees
an energy: its loss is mean |-grad_x E(x) - F(x)|^2 on points where the Müller-Brown
energy is below a cut-off, with -grad_x E from ``mxgradlayer.InputGradient`` trained
through with MXNet's ordinary backward.  Energies are in units of 100 (the surface spans
about -1.5 to 2 of them).

Reported on held-out points: the force RMSE and the energy RMSE (forces fix the energy
only up to a constant, so the mean offset is removed first), each also relative to the
spread of the true values.  A PNG shows the true and the learned surfaces.

With ``--onnx PATH`` the trained energy-and-forces model (one block returning E and
F = -dE/dx) is written as ONNX by ``mxgradlayer.export_onnx``, with the held-out points
and MXNet's time per batch of 10,000 points beside it (PATH + '.json');
``serve_forces.py PATH`` serves it in onnxruntime without MXNet.
"""
import argparse
import json
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
except ImportError:  # the progress bar is optional
    trange = None

from muller_brown import BOX, energy, force, sample  # noqa: E402


class ForceLoss(gluon.HybridBlock):
    """mean |-grad_x E(x) - F|^2 (summed over the two components)."""

    def __init__(self, energy_net, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.grad = mxgradlayer.InputGradient(energy_net)

    def hybrid_forward(self, F, x, forces):
        # grad - (-F), not grad + F: MXNet 1.9.1's static_alloc miscomputes parameter
        # gradients of square(elemwise_add(parameter path, graph input)) (README)
        return F.mean(F.sum(F.square(self.grad(x) - F.negative(forces)), axis=1))


class EnergyAndForces(gluon.HybridBlock):
    """(E(x), F(x) = -dE/dx): the model a simulation calls."""

    def __init__(self, energy_net, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.grad = mxgradlayer.InputGradient(energy_net, return_output=True)

    def hybrid_forward(self, F, x):
        e, g = self.grad(x)
        return e, F.negative(g)


def export(net, test_x, path, repeats=20):
    """Write the ONNX model, and beside it the held-out points and MXNet's time per batch
    of 10,000 points (hybridized, median of ``repeats``) for serve_forces.py."""
    model = EnergyAndForces(net)
    mxgradlayer.export_onnx(model, path, nd.array(test_x[:16]), input_names=['positions'],
                            output_names=['energy', 'forces'])
    model.hybridize(static_alloc=True, static_shape=True)
    rng = np.random.default_rng(1)
    batch = nd.array(np.column_stack([rng.uniform(*BOX[0], 10000), rng.uniform(*BOX[1], 10000)]))
    times = []
    for _ in range(repeats + 3):
        start = time.perf_counter()
        e, f = model(batch)
        f.wait_to_read()
        times.append(time.perf_counter() - start)
    with open(path + '.json', 'w') as out:
        json.dump({'held_out_points': test_x.tolist(),
                   'mxnet_ms_per_10000': 1000 * float(np.median(times[3:])),
                   'mxnet_threads': os.environ.get('OMP_NUM_THREADS', 'default')}, out)


def build(width):
    net = gluon.nn.HybridSequential()
    for _ in range(3):
        net.add(gluon.nn.Dense(width, activation='softrelu'))
    net.add(gluon.nn.Dense(1))
    return net


def evaluate(net, points):
    pts = nd.array(points)
    grad = mxgradlayer.InputGradient(net, return_output=True)
    e, g = grad(pts)
    e, f = e.asnumpy(), -g.asnumpy()
    true_e, true_f = energy(points), force(points)
    offset = (e - true_e).mean()
    e_rmse = float(np.sqrt(((e - offset - true_e) ** 2).mean()))
    f_rmse = float(np.sqrt(((f - true_f) ** 2).sum(axis=1).mean()))
    return {'energy_rmse': e_rmse, 'energy_spread': float(true_e.std()),
            'force_rmse': f_rmse, 'force_spread': float(np.sqrt(((true_f - true_f.mean(0)) ** 2)
                                                               .sum(axis=1).mean())),
            'offset': float(offset)}


def train(args):
    mx.random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_x = sample(rng, args.points, args.cutoff)
    test_x = sample(rng, 2000, args.cutoff)
    net = build(args.width)
    net.initialize(mx.init.Xavier())
    loss_block = ForceLoss(net)
    loss_block.hybridize(static_alloc=True, static_shape=True)
    schedule = mx.lr_scheduler.CosineScheduler(max_update=args.steps, base_lr=args.lr,
                                               final_lr=args.lr * 1e-2)
    trainer = gluon.Trainer(net.collect_params(), 'adam',
                            {'learning_rate': args.lr, 'lr_scheduler': schedule})
    x_all, f_all = nd.array(train_x), nd.array(force(train_x))
    steps = range(args.steps)
    if trange is not None and not args.no_progress:
        steps = trange(args.steps, desc='forces', mininterval=0.5)
    losses = []
    start = time.perf_counter()
    for _ in steps:
        idx = nd.array(rng.integers(0, len(train_x), size=args.batch), dtype='int32')
        x, f = nd.take(x_all, idx), nd.take(f_all, idx)
        with autograd.record():
            loss = loss_block(x, f)
        loss.backward()
        # the loss does not reach the last bias (a constant energy offset)
        trainer.step(1, ignore_stale_grad=True)
        losses.append(float(loss.asscalar()))
    return net, test_x, evaluate(net, test_x), losses, time.perf_counter() - start


def plot(net, offset, losses, cutoff, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    gx, gy = np.meshgrid(np.linspace(*BOX[0], 120), np.linspace(*BOX[1], 100))
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    true = energy(pts).reshape(gx.shape)
    learned = (net(nd.array(pts)).asnumpy() - offset).reshape(gx.shape)
    levels = np.linspace(-1.5, min(cutoff, 2.0), 25)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, z, title in ((axes[0], true, 'Müller-Brown (true)'),
                         (axes[1], learned, 'learned from forces only')):
        cs = ax.contourf(gx, gy, np.clip(z, None, levels[-1]), levels=levels, cmap='viridis')
        ax.contour(gx, gy, true, levels=levels, colors='w', linewidths=0.3)
        ax.set_title(title); ax.set_xlabel('x'); ax.set_ylabel('y')
    fig.colorbar(cs, ax=axes[:2], shrink=0.9, label='energy / 100')
    axes[2].semilogy(losses, lw=0.5)
    axes[2].set_xlabel('step'); axes[2].set_title('force loss')
    fig.savefig(path, dpi=110, bbox_inches='tight')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--steps', type=int, default=10000, help='training steps (default 10000)')
    p.add_argument('--points', type=int, default=2000, help='training points')
    p.add_argument('--batch', type=int, default=256)
    p.add_argument('--width', type=int, default=64)
    p.add_argument('--lr', type=float, default=1e-2,
                   help='initial Adam learning rate (cosine decay to 1%%)')
    p.add_argument('--cutoff', type=float, default=1.0,
                   help='sample where the energy is below this (units of 100)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--plot', default='force_field.png', help='PNG path ("" for none)')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('--onnx', default='', metavar='PATH',
                   help='write the energy-and-forces model as ONNX (serve it with serve_forces.py)')
    args = p.parse_args(argv)
    net, test_x, metrics, losses, seconds = train(args)
    m = metrics
    print(f"held-out force RMSE  {m['force_rmse']:.4f} "
          f"({100 * m['force_rmse'] / m['force_spread']:.2f}% of the forces' spread)")
    print(f"held-out energy RMSE {m['energy_rmse']:.4f} "
          f"({100 * m['energy_rmse'] / m['energy_spread']:.2f}% of the energies' spread; "
          f"constant offset removed)")
    print(f'training time {seconds:.0f} s for {args.steps} steps')
    if args.plot:
        plot(net, m['offset'], losses, args.cutoff, args.plot)
        print(f'plot written to {args.plot}')
    if args.onnx:
        export(net, test_x, args.onnx)
        print(f'ONNX model written to {args.onnx} (held-out points and MXNet timing in '
              f'{args.onnx}.json); serve it with: python examples/serve_forces.py {args.onnx}')
    return metrics


if __name__ == '__main__':
    main()
