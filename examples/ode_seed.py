#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Solve u'(x) = 2x, u(0) = 1 on [-1, 1] with du/dx as a layer inside the network.

u(x) = x * g(x) + 1 with g an MLP (1 -> 32 -> 32 -> 1, sigmoid) satisfies u(0) = 1 by
construction; training minimises mean((du/dx - 2x)^2) on random batches of 64 points.
The exact solution is x^2 + 1.  ``--method layer`` uses mxgradlayer.InputGradient (an
exact derivative, trained through with MXNet's ordinary backward); ``--method fd`` uses
the traditional forward difference (u(x + h) - u(x)) / h with h = 1e-4 in float32;
``--method both`` (the default) trains both and prints them side by side.
``--numpy`` runs the same code in MXNet's NumPy interface (``npx.set_np()``: mx.np
arrays, F.np operators), as Dive into Deep Learning writes Gluon code.
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
except ImportError:  # the progress bar is optional
    trange = None


class Solution(gluon.HybridBlock):
    """u(x) = x * g(x) + 1."""

    def __init__(self, width=32, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.g = gluon.nn.HybridSequential()
            self.g.add(gluon.nn.Dense(width, activation='sigmoid', in_units=1),
                       gluon.nn.Dense(width, activation='sigmoid', in_units=width),
                       gluon.nn.Dense(1, in_units=width))

    def hybrid_forward(self, F, x):
        return x * self.g(x) + 1


def ops(F):
    """The operators of the active front end: F.np in NumPy mode, F itself otherwise."""
    return F.np if mx.util.is_np_array() else F


def array(values):
    return (mx.np.array if mx.util.is_np_array() else nd.array)(values, dtype='float32')


class LayerResidual(gluon.HybridBlock):
    """mean((du/dx - 2x)^2) with du/dx from mxgradlayer.InputGradient."""

    def __init__(self, u, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.du = mxgradlayer.InputGradient(u)

    def hybrid_forward(self, F, x):
        P = ops(F)
        return P.mean(P.square(self.du(x) - 2 * x))


class FDResidual(gluon.HybridBlock):
    """mean(((u(x + h) - u(x)) / h - 2x)^2), the finite-difference workaround."""

    def __init__(self, u, h=1e-4, **kwargs):
        super().__init__(**kwargs)
        self.u, self._h = u, h
        with self.name_scope():
            pass

    def hybrid_forward(self, F, x):
        du = (self.u(x + self._h) - self.u(x)) / self._h
        P = ops(F)
        return P.mean(P.square(du - 2 * x))


def max_error(u):
    x = np.linspace(-1.0, 1.0, 201).reshape(-1, 1)
    got = u(array(x)).asnumpy()
    return float(np.max(np.abs(got - (x ** 2 + 1)))), x, got


def initial_values(seed):
    """The initial weights as the legacy front end draws them (Xavier, seeded), as NumPy
    arrays: MXNet's initialisers draw different streams in the two front ends, and this
    way both start from the same network and train to the same numbers."""
    numpy_mode = mx.util.is_np_array()
    if numpy_mode:
        mx.npx.reset_np()
    try:
        mx.random.seed(seed)
        twin = Solution()
        twin.initialize(mx.init.Xavier())
        return [p.data().asnumpy() for p in twin.collect_params().values()]
    finally:
        if numpy_mode:
            mx.npx.set_np()


def train(method, args):
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    u = Solution()
    u.initialize()
    for p, value in zip(u.collect_params().values(), initial_values(args.seed)):
        p.set_data(array(value))
    loss_block = LayerResidual(u) if method == 'layer' else FDResidual(u)
    loss_block.hybridize(static_alloc=True, static_shape=True)
    schedule = mx.lr_scheduler.CosineScheduler(max_update=args.steps, base_lr=args.lr,
                                               final_lr=args.lr * 1e-2)
    trainer = gluon.Trainer(u.collect_params(), 'adam',
                            {'learning_rate': args.lr, 'lr_scheduler': schedule})
    rng = np.random.default_rng(args.seed)
    losses = []
    steps = range(args.steps)
    if trange is not None and not args.no_progress:
        steps = trange(args.steps, desc=f'{method:5s}', leave=False, mininterval=0.5)
    start = time.perf_counter()
    for _ in steps:
        x = array(rng.uniform(-1.0, 1.0, size=(args.batch, 1)))
        with autograd.record():
            loss = loss_block(x)
        loss.backward()
        trainer.step(1)
        losses.append(float(loss.asnumpy()))
    elapsed = time.perf_counter() - start
    err, xs, got = max_error(u)
    return {'method': method, 'error': err, 'seconds': elapsed, 'losses': losses,
            'x': xs, 'u': got}


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    x = results[0]['x'][:, 0]
    ax1.plot(x, x ** 2 + 1, 'k-', lw=3, alpha=0.3, label='exact  $x^2 + 1$')
    for r in results:
        ax1.plot(x, r['u'][:, 0], '--', label=f"{r['method']} (max error {r['error']:.1e})")
        ax2.semilogy(r['losses'], lw=0.6, label=r['method'])
    front_end = 'NumPy interface' if mx.util.is_np_array() else 'legacy NDArray'
    ax1.set_xlabel('x'); ax1.set_ylabel('u(x)'); ax1.legend()
    ax1.set_title(f"u' = 2x, u(0) = 1 ({front_end})")
    ax2.set_xlabel('step'); ax2.set_ylabel('residual loss'); ax2.legend()
    ax2.set_title('training loss')
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--method', choices=('layer', 'fd', 'both'), default='both')
    p.add_argument('--steps', type=int, default=20000, help='training steps (default 20000)')
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--lr', type=float, default=2e-2, help='initial Adam learning rate (cosine decay to 1%%)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--plot', default='ode_seed.png', help='PNG path ("" for none)')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('--numpy', action='store_true',
                   help="MXNet's NumPy interface (npx.set_np()) instead of the legacy one")
    args = p.parse_args(argv)
    if args.numpy:
        mx.npx.set_np()
    methods = ('layer', 'fd') if args.method == 'both' else (args.method,)
    results = [train(m, args) for m in methods]
    print(f"{'method':14s} {'max |u - (x^2+1)|':>18s} {'train time':>11s} {'steps':>7s}")
    for r in results:
        label = 'InputGradient' if r['method'] == 'layer' else 'FD h=1e-4'
        print(f"{label:14s} {r['error']:18.2e} {r['seconds']:9.1f} s {args.steps:7d}")
    if args.plot:
        plot(results, args.plot)
        print(f'plot written to {args.plot}')
    return results


if __name__ == '__main__':
    main()
