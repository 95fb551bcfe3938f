#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Curvature of a trained network with respect to its input, from Hessian-vector products.

1. Train a small MLP (d -> 64 -> 64 -> 1, tanh) to fit f(x) = sum_i sin(x_i) in d dimensions.
2. For each sample, find the largest-magnitude eigenvalue of the input Hessian by power
   iteration on mxgradlayer.HVP (never forming the Hessian), and check it against the
   eigenvalues of the full mxgradlayer.Hessian.
3. Estimate the Laplacian (the Hessian trace) with Hutchinson's estimator
   E[v^T H v] over Rademacher vectors v, and check it against mxgradlayer.Laplacian.
"""
import argparse
import os
import sys

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import mxgradlayer  # noqa: E402

try:
    from tqdm import tqdm
except ImportError:
    tqdm = None


def progress(it, desc, quiet):
    return tqdm(it, desc=desc, leave=False, mininterval=0.5) if tqdm and not quiet else it


def train(d, steps, rng, quiet):
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(64, activation='tanh', in_units=d),
            gluon.nn.Dense(64, activation='tanh', in_units=64),
            gluon.nn.Dense(1, in_units=64))
    net.initialize(mx.init.Xavier())
    net.cast('float64')
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 3e-3})
    for _ in progress(range(steps), 'train', quiet):
        x = rng.uniform(-2, 2, size=(256, d))
        xs, ys = nd.array(x, dtype='float64'), nd.array(np.sin(x).sum(1, keepdims=True),
                                                      dtype='float64')
        with autograd.record():
            loss = ((net(xs) - ys) ** 2).mean()
        loss.backward()
        trainer.step(1)
    return net, float(loss.asscalar())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dim', type=int, default=16, help='input dimension d')
    p.add_argument('--samples', type=int, default=8, help='points to analyse')
    p.add_argument('--train-steps', type=int, default=1500)
    p.add_argument('--iterations', type=int, default=200, help='power iterations')
    p.add_argument('--probes', type=int, default=2000, help='Hutchinson probe vectors')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--plot', default='hvp_curvature.png', help='PNG path ("" for none)')
    p.add_argument('--no-progress', action='store_true')
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    mx.random.seed(args.seed)
    net, loss = train(args.dim, args.train_steps, rng, args.no_progress)
    print(f'trained: mean squared error {loss:.2e} on f(x) = sum sin(x_i), d = {args.dim}')

    x = nd.array(rng.uniform(-2, 2, size=(args.samples, args.dim)), dtype='float64')
    hvp = mxgradlayer.HVP(net)
    hvp.hybridize()
    v = nd.array(rng.standard_normal(x.shape), dtype='float64')
    for _ in progress(range(args.iterations), 'power iteration', args.no_progress):
        hv = hvp(x, v)
        v = hv / nd.norm(hv, axis=1, keepdims=True)
    rayleigh = (v * hvp(x, v)).sum(axis=1).asnumpy()  # v has unit norm

    hess = mxgradlayer.Hessian(net)(x).asnumpy()[:, 0]          # (samples, d, d)
    eig = np.linalg.eigvalsh(hess)
    dominant = eig[np.arange(len(eig)), np.argmax(np.abs(eig), axis=1)]
    err_eig = np.max(np.abs(rayleigh - dominant) / np.abs(dominant))
    print(f'largest |eigenvalue| by power iteration on HVP vs full Hessian: '
          f'max relative error {err_eig:.1e} over {args.samples} samples')

    total = np.zeros(args.samples)
    for _ in progress(range(args.probes), 'Hutchinson', args.no_progress):
        z = nd.array(rng.choice([-1.0, 1.0], size=x.shape), dtype='float64')
        total += (z * hvp(x, z)).sum(axis=1).asnumpy()
    hutchinson = total / args.probes
    lap = mxgradlayer.Laplacian(net)(x).asnumpy()[:, 0]
    spread = np.sqrt(2 * (np.sum(hess ** 2, axis=(1, 2)) - np.sum(np.diagonal(hess, axis1=1,
                                                                              axis2=2) ** 2, 1))
                     / args.probes)
    print(f'Hutchinson trace estimate vs forward Laplacian: max |difference| '
          f'{np.max(np.abs(hutchinson - lap)):.3f}, expected standard deviation '
          f'{np.max(spread):.3f} ({args.probes} probes)')
    print(f'forward Laplacian vs Hessian trace: max relative difference '
          f'{np.max(np.abs(lap - np.trace(hess, axis1=1, axis2=2)) / np.abs(lap)):.1e}')
    if args.plot:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        idx = np.arange(args.samples)
        a1.plot(idx, dominant, 'ko', label='full Hessian')
        a1.plot(idx, rayleigh, 'rx', label='power iteration on HVP')
        a1.set_title('dominant input-Hessian eigenvalue'); a1.set_xlabel('sample'); a1.legend()
        a2.errorbar(idx, hutchinson, yerr=spread, fmt='rx', label='Hutchinson (HVP)')
        a2.plot(idx, lap, 'ko', label='forward Laplacian')
        a2.set_title('Laplacian'); a2.set_xlabel('sample'); a2.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f'plot written to {args.plot}')
    return err_eig, np.max(np.abs(hutchinson - lap)), np.max(spread)


if __name__ == '__main__':
    main()
