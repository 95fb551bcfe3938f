#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""WGAN-GP on the 8 Gaussians: the gradient penalty is an InputGradient layer.

Real data: 8 Gaussians (standard deviation 0.02) on a circle of radius 2.  A generator
(MLP 2 -> 128 -> 128 -> 128 -> 2, ReLU) maps Gaussian noise to points; a critic (MLP
2 -> 128 -> 128 -> 128 -> 1, LeakyReLU) is trained with the Wasserstein loss plus
Gulrajani et al.'s gradient penalty lambda * (|grad_x D(x_hat)| - 1)^2 on random
interpolates x_hat of real and generated points.  grad_x D is
``mxgradlayer.InputGradient(critic)``: an exact derivative, hybridized with the rest of
the critic's loss and trained through with MXNet's ordinary backward.

Printed as training goes: the mean distance of generated points to their nearest mode
(the data's own is 0.025) and how many of the 8 modes hold at least 5% of them.  A PNG
shows real and generated samples.
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

MODES = 2.0 * np.array([[np.cos(a), np.sin(a)] for a in np.arange(8) * np.pi / 4])


def real_batch(rng, n, std=0.02):
    return MODES[rng.integers(0, 8, size=n)] + std * rng.standard_normal((n, 2))


def mlp(out, activation, width=128, depth=3):
    net = gluon.nn.HybridSequential()
    for _ in range(depth):
        net.add(gluon.nn.Dense(width))
        net.add(gluon.nn.LeakyReLU(0.2) if activation == 'leaky' else gluon.nn.Activation('relu'))
    net.add(gluon.nn.Dense(out))
    return net


class CriticLoss(gluon.HybridBlock):
    """mean D(fake) - mean D(real) + lambda * mean (|grad_x D(x_hat)| - 1)^2."""

    def __init__(self, critic, penalty=10.0, **kwargs):
        super().__init__(**kwargs)
        self._penalty = penalty
        with self.name_scope():
            self.critic = critic
            self.grad = mxgradlayer.InputGradient(critic)

    def hybrid_forward(self, F, real, fake, mix):
        x_hat = F.broadcast_mul(mix, real) + F.broadcast_mul(1 - mix, fake)
        slope = F.sqrt(F.sum(F.square(self.grad(x_hat)), axis=1) + 1e-12)
        gp = F.mean(F.square(slope - 1))
        wasserstein = F.mean(self.critic(fake)) - F.mean(self.critic(real))
        return wasserstein + self._penalty * gp, wasserstein, gp


class GeneratorLoss(gluon.HybridBlock):
    def __init__(self, generator, critic, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.generator, self.critic = generator, critic

    def hybrid_forward(self, F, z):
        return -F.mean(self.critic(self.generator(z)))


def mode_metrics(points):
    """(mean distance to the nearest mode, number of modes holding >= 5% of the points)."""
    dist = np.linalg.norm(points[:, None, :] - MODES[None], axis=2)
    nearest = dist.argmin(axis=1)
    share = np.bincount(nearest, minlength=8) / len(points)
    return float(dist.min(axis=1).mean()), int((share >= 0.05).sum())


def train(args):
    mx.random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    generator, critic = mlp(2, 'relu', args.width), mlp(1, 'leaky', args.width)
    generator.initialize(mx.init.Xavier())
    critic.initialize(mx.init.Xavier())
    critic_loss = CriticLoss(critic, args.penalty)
    generator_loss = GeneratorLoss(generator, critic)
    for block in (critic_loss, generator_loss, generator):
        block.hybridize(static_alloc=True)
    adam = {'learning_rate': args.lr, 'beta1': 0.5, 'beta2': 0.9}
    d_trainer = gluon.Trainer(critic.collect_params(), 'adam', adam)
    g_trainer = gluon.Trainer(generator.collect_params(), 'adam', adam)
    z_eval = nd.array(rng.standard_normal((2000, 2)))
    history = []
    steps = range(args.steps)
    if trange is not None and not args.no_progress:
        steps = trange(args.steps, desc='WGAN-GP', mininterval=0.5)
    start = time.perf_counter()
    for step in steps:
        for _ in range(args.critic_steps):
            real = nd.array(real_batch(rng, args.batch))
            fake = generator(nd.array(rng.standard_normal((args.batch, 2))))
            mix = nd.array(rng.uniform(size=(args.batch, 1)))
            with autograd.record():
                loss, wasserstein, gp = critic_loss(real, fake, mix)
            loss.backward()
            d_trainer.step(1)  # the losses are means already
        with autograd.record():
            g_loss = generator_loss(nd.array(rng.standard_normal((args.batch, 2))))
        g_loss.backward()
        # the critic's gradients from this backward are discarded by the next zero-out
        g_trainer.step(1)
        if step % args.eval_every == 0 or step == args.steps - 1:
            dist, modes = mode_metrics(generator(z_eval).asnumpy())
            history.append((step, dist, modes, float(-wasserstein.asscalar()), float(gp.asscalar())))
            if trange is None or args.no_progress:
                print(f'step {step:5d}  mean distance to nearest mode {dist:.3f}  '
                      f'modes covered {modes}/8  critic estimate of W1 {history[-1][3]:.3f}')
            else:
                steps.set_postfix(distance=f'{dist:.3f}', modes=modes)
    return generator, history, time.perf_counter() - start, z_eval


def plot(generator, z, history, rng, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    real = real_batch(rng, 2000)
    fake = generator(z).asnumpy()
    ax1.scatter(real[:, 0], real[:, 1], s=3, alpha=0.5, label='real')
    ax1.scatter(fake[:, 0], fake[:, 1], s=3, alpha=0.5, label='generated')
    ax1.set_aspect('equal'); ax1.legend(loc='upper right'); ax1.set_title('samples')
    steps = [h[0] for h in history]
    ax2.semilogy(steps, [h[1] for h in history], label='mean distance to nearest mode')
    ax2.axhline(0.025, color='k', lw=0.8, ls='--', label='real data (0.025)')
    ax2.set_xlabel('generator step'); ax2.legend(); ax2.set_title('training')
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--steps', type=int, default=2000, help='generator steps (default 2000)')
    p.add_argument('--critic-steps', type=int, default=5, help='critic steps per generator step')
    p.add_argument('--batch', type=int, default=256)
    p.add_argument('--width', type=int, default=128, help='hidden units of both MLPs')
    p.add_argument('--penalty', type=float, default=0.1,
                   help='gradient penalty weight (0.1, as Gulrajani et al. use for toy data)')
    p.add_argument('--lr', type=float, default=3e-4, help='Adam learning rate')
    p.add_argument('--eval-every', type=int, default=250)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--plot', default='wgan_gp.png', help='PNG path ("" for none)')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = p.parse_args(argv)
    generator, history, seconds, z = train(args)
    first, last = history[0], history[-1]
    print(f'mean distance to nearest mode: {first[1]:.3f} at step 0 -> {last[1]:.3f} after '
          f'{args.steps} steps (real data: 0.025)')
    print(f'modes covered: {last[2]}/8   training time {seconds:.0f} s')
    if args.plot:
        plot(generator, z, history, np.random.default_rng(args.seed + 1), args.plot)
        print(f'plot written to {args.plot}')
    return history


if __name__ == '__main__':
    main()
