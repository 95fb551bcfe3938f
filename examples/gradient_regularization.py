#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Input-gradient regularisation (double backpropagation) of a small CNN on digits.

scikit-learn's bundled 8x8 handwritten digits (1797 images, no download), pixels scaled
to [0, 1], split 80/20.  Two copies of one CNN (Conv 16 - Conv 32 stride 2 - Dense 64 -
Dense 10, ReLU) are trained in float32, hybridized, with Adam:

* plain: cross-entropy;
* regularised: cross-entropy + lambda * mean over images of |d loss / d x|^2 (Drucker
  and LeCun's double backpropagation).  d loss / d x is
  ``mxgradlayer.InputGradient(loss_of_the_network)``, a layer of the training graph,
  and MXNet's ordinary backward differentiates through it.

Printed: clean test accuracy of both, and their accuracy under the fast gradient sign
method (FGSM: x + epsilon sign(d loss / d x), clipped to [0, 1]; epsilon is in pixel
units of the [0, 1] range), with d loss / d x again from InputGradient (in float64, see
`fgsm_accuracy`).  A PNG shows
accuracy against epsilon for both models.
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


def load(seed):
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    y = digits.target.astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    n_train = int(0.8 * len(x))
    train, test = order[:n_train], order[n_train:]
    return x[train], y[train], x[test], y[test]


def cnn():
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(16, 3, padding=1, activation='relu'),
            gluon.nn.Conv2D(32, 3, strides=2, padding=1, activation='relu'),
            gluon.nn.Flatten(), gluon.nn.Dense(64, activation='relu'), gluon.nn.Dense(10))
    return net


class PerImageLoss(gluon.HybridBlock):
    """Cross-entropy of each image: (batch, 1).  The label is a second input, so that
    InputGradient(PerImageLoss(net)) is d loss / d image."""

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        self.net = net

    def hybrid_forward(self, F, x, label):
        logp = F.log_softmax(self.net(x), axis=1)
        return -F.pick(logp, label, axis=1, keepdims=True)


class RegularisedLoss(gluon.HybridBlock):
    """mean cross-entropy + penalty * mean over images of |d loss / d x|^2."""

    def __init__(self, net, penalty, **kwargs):
        super().__init__(**kwargs)
        self._penalty = penalty
        with self.name_scope():
            self.loss = PerImageLoss(net)
            self.grad = mxgradlayer.InputGradient(self.loss)

    def hybrid_forward(self, F, x, label):
        ce = F.mean(self.loss(x, label))
        if not self._penalty:
            return ce
        g = self.grad(x, label)
        return ce + self._penalty * F.mean(F.sum(F.square(g), axis=(1, 2, 3)))


def train(penalty, data, args, label):
    mx.random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x_train, y_train = data[:2]
    net = cnn()
    net.initialize(mx.init.Xavier())
    objective = RegularisedLoss(net, penalty)
    objective.hybridize(static_alloc=True)
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': args.lr})
    epochs = range(args.epochs)
    if trange is not None and not args.no_progress:
        epochs = trange(args.epochs, desc=label, mininterval=0.5)
    for _ in epochs:
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), args.batch):
            idx = order[start:start + args.batch]
            x, y = nd.array(x_train[idx]), nd.array(y_train[idx])
            with autograd.record():
                loss = objective(x, y)
            loss.backward()
            trainer.step(1)  # the loss is a mean already
    return net


def accuracy(net, x, y):
    return float((net(x).argmax(axis=1) == y).mean().asscalar())


def fgsm_accuracy(net, x, y, epsilon):
    """Accuracy on x + epsilon sign(d loss / d x), clipped to the pixel range.

    The attack's gradient is taken on the model cast to float64: for an image classified
    with a logit margin above ~17, float32's softmax rounds to exactly 1 and the gradient
    of the cross-entropy to exactly 0, so float32 FGSM would leave the image untouched
    (seen: the plain model's accuracy stuck near 0.5 for every epsilon).  The casts are
    exact, and the perturbed images are classified by the float32 model.
    """
    if epsilon == 0:
        return accuracy(net, x, y)
    net.cast('float64')
    try:
        grad = mxgradlayer.InputGradient(PerImageLoss(net))(x.astype('float64'),
                                                            y.astype('float64'))
    finally:
        net.cast('float32')
    step = epsilon * nd.sign(grad).astype('float32')
    return accuracy(net, nd.clip(x + step, 0, 1), y)


def plot(epsilons, curves, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for label, accs in curves.items():
        ax.plot(epsilons, accs, 'o-', label=label)
    ax.set_xlabel('FGSM epsilon (pixels in [0, 1])')
    ax.set_ylabel('test accuracy')
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title('digits 8x8: plain vs input-gradient regularised CNN')
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--epochs', type=int, default=40, help='training epochs (default 40)')
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--lr', type=float, default=2e-3, help='Adam learning rate')
    p.add_argument('--penalty', type=float, default=1.0,
                   help='weight of mean |d loss / d x|^2 (default 1)')
    p.add_argument('--epsilon', type=float, default=0.1,
                   help='FGSM step for the printed figure (default 0.1)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--plot', default='gradient_regularization.png',
                   help='PNG path ("" for none)')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = p.parse_args(argv)
    data = load(args.seed)
    x_test, y_test = nd.array(data[2]), nd.array(data[3])
    start = time.perf_counter()
    models = {'plain': train(0.0, data, args, 'plain'),
              f'regularised (lambda={args.penalty:g})': train(args.penalty, data, args,
                                                              'regularised')}
    seconds = time.perf_counter() - start
    results = {}
    for label, net in models.items():
        clean = accuracy(net, x_test, y_test)
        attacked = fgsm_accuracy(net, x_test, y_test, args.epsilon)
        results[label] = (clean, attacked)
        print(f'{label:28s} clean test accuracy {clean:.3f}   '
              f'under FGSM (epsilon={args.epsilon:g}) {attacked:.3f}')
    print(f'{len(data[0])} training and {len(data[2])} test images, {args.epochs} epochs, '
          f'training time {seconds:.0f} s for both models')
    if args.plot:
        epsilons = [0.0, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3]
        curves = {label: [fgsm_accuracy(net, x_test, y_test, e) for e in epsilons]
                  for label, net in models.items()}
        plot(epsilons, curves, args.plot)
        print(f'plot written to {args.plot}')
    return results


if __name__ == '__main__':
    main()
