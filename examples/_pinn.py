# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""What the physics-informed examples (poisson2d, biharmonic_plate, beam) share: the
tanh MLP, the command line, the Adam training loop with its cosine schedule and
progress bar, and, for the unit square, boundary sampling, the relative L2 error on a
grid and the four-panel figure.  Each example keeps only its equation: the loss block
and the exact solution."""
import argparse
import time

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

try:
    from tqdm import trange
except ImportError:
    trange = None


def make_net(inputs, width=64, depth=3):
    """An MLP inputs -> width x depth (tanh) -> 1."""
    net = gluon.nn.HybridSequential()
    units = inputs
    for _ in range(depth):
        net.add(gluon.nn.Dense(width, activation='tanh', in_units=units))
        units = width
    net.add(gluon.nn.Dense(1, in_units=units))
    return net


def parser(doc, plot, steps=3000, lr=2e-3):
    """The options every example takes (--steps, --lr, --seed, --plot, --no-progress)."""
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--steps', type=int, default=steps)
    p.add_argument('--lr', type=float, default=lr, help='initial Adam learning rate')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--plot', default=plot, help='PNG path ("" for none)')
    p.add_argument('--no-progress', action='store_true')
    return p


def train(net, loss_block, batch, args, desc):
    """Adam with a cosine schedule (to 1 % of --lr) on ``loss_block(*batch(rng))``.

    Seeds MXNet and NumPy from --seed, initialises ``net`` (Xavier), hybridizes the loss
    with static memory.  Returns the (step, loss) record every 10 steps and the seconds
    the loop took."""
    mx.random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    net.initialize(mx.init.Xavier())
    loss_block.hybridize(static_alloc=True, static_shape=True)
    schedule = mx.lr_scheduler.CosineScheduler(max_update=args.steps, base_lr=args.lr,
                                               final_lr=args.lr * 1e-2)
    trainer = gluon.Trainer(net.collect_params(), 'adam',
                            {'learning_rate': args.lr, 'lr_scheduler': schedule})
    steps = range(args.steps)
    if trange is not None and not args.no_progress:
        steps = trange(args.steps, desc=desc, mininterval=0.5)
    losses = []
    start = time.perf_counter()
    for step in steps:
        inputs = batch(rng)
        with autograd.record():
            loss = loss_block(*inputs)
        loss.backward()
        trainer.step(1)
        if step % 10 == 0 or step == args.steps - 1:
            losses.append((step, loss.asscalar()))
            if hasattr(steps, 'set_postfix') and step % 100 == 0:
                steps.set_postfix(loss=f'{losses[-1][1]:.2e}')
    return losses, time.perf_counter() - start


def timing(args, elapsed):
    return f'({args.steps} steps in {elapsed:.0f} s, {1e3 * elapsed / args.steps:.1f} ms/step)'


# ----- the unit square -----
def square_points(rng, n):
    return nd.array(rng.uniform(0, 1, size=(n, 2)))


def boundary_points(rng, n):
    """n points uniformly on the four sides of the unit square."""
    t = rng.uniform(0, 1, size=n)
    side = rng.integers(0, 4, size=n)
    x = np.where(side == 0, 0.0, np.where(side == 1, 1.0, t))
    y = np.where(side == 2, 0.0, np.where(side == 3, 1.0, t))
    return nd.array(np.stack([x, y], axis=1))


def sine_mode(X, Y):
    """sin(pi x) sin(pi y): the exact solution of both square examples."""
    return np.sin(np.pi * X) * np.sin(np.pi * Y)


def sine_mode_at(F, points):
    """sin(pi x) sin(pi y) of (B, 2) points inside a loss block: (B, 1)."""
    xs = F.slice_axis(points, axis=1, begin=0, end=1)
    ys = F.slice_axis(points, axis=1, begin=1, end=2)
    return F.sin(np.pi * xs) * F.sin(np.pi * ys)


def solve_on_square(argv, doc, plot, make_loss, name, desc, interior):
    """The whole run of an equation on the unit square whose exact solution is
    `sine_mode`: options (--interior, --boundary besides `parser`'s), the MLP 2-64-64-64-1,
    training ``make_loss(net)`` on interior and boundary points, the relative L2 error on
    a 101 x 101 grid, printed, and the figure.  Returns the error."""
    p = parser(doc, plot)
    p.add_argument('--interior', type=int, default=interior, help='interior points per step')
    p.add_argument('--boundary', type=int, default=256, help='boundary points per step')
    args = p.parse_args(argv)

    net = make_net(2)
    losses, elapsed = train(net, make_loss(net),
                            lambda rng: (square_points(rng, args.interior),
                                         boundary_points(rng, args.boundary)), args, desc)
    err, X, Y, u, exact = relative_l2_on_square(net)
    print(f'relative L2 error on a 101 x 101 grid: {err:.2e}  {timing(args, elapsed)}')
    if args.plot:
        plot_square(args.plot, name, X, Y, u, exact, err, losses)
    return err


def relative_l2_on_square(net, exact=sine_mode, n=101):
    """||u - exact|| / ||exact|| on an n x n grid; also the grid, u and the exact values."""
    g = np.linspace(0, 1, n)
    X, Y = np.meshgrid(g, g, indexing='ij')
    u = net(nd.array(np.stack([X.ravel(), Y.ravel()], axis=1))).asnumpy().reshape(n, n)
    ue = exact(X, Y)
    return float(np.linalg.norm(u - ue) / np.linalg.norm(ue)), X, Y, u, ue


def plot_square(path, name, X, Y, u, exact, err, losses):
    """The network's solution, the exact one, the error and the loss, as one PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for ax, data, title in ((axes[0], u, f'network {name}'), (axes[1], exact, 'exact'),
                            (axes[2], u - exact, f'error (rel. L2 {err:.1e})')):
        im = ax.pcolormesh(X, Y, data, shading='auto', cmap='viridis')
        fig.colorbar(im, ax=ax)
        ax.set_title(title)
        ax.set_aspect('equal')
    plot_loss(axes[3], losses)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f'plot written to {path}')


def plot_loss(ax, losses):
    steps, values = zip(*losses)
    ax.semilogy(steps, values)
    ax.set_title('training loss')
    ax.set_xlabel('step')
