#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Data-parallel training of a model with a derivative layer: one worker's program.

Trains the seed ODE residual mean((du/dx - 2x)^2) (u = x g(x) + 1, du/dx from
mxgradlayer.InputGradient) on fixed global batches.  With ``--kvstore dist_sync`` (under
launch.py) every worker takes its own shard of each global batch and MXNet's parameter
server sums the gradients; with ``--kvstore local`` one process trains on the whole
batches.  Both write the final parameters, which must agree.
"""
import argparse
import os
import sys

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))
import mxgradlayer  # noqa: E402


class Residual(gluon.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.g = gluon.nn.HybridSequential()
            self.g.add(gluon.nn.Dense(16, activation='sigmoid', in_units=1),
                       gluon.nn.Dense(1, in_units=16))
        self.du = mxgradlayer.InputGradient(_Solution(self.g))

    def hybrid_forward(self, F, x):
        return F.square(self.du(x) - 2 * x)  # per-sample residual; backward sums it


class _Solution(gluon.HybridBlock):
    def __init__(self, g, **kwargs):
        super().__init__(**kwargs)
        self.g = g

    def hybrid_forward(self, F, x):
        return x * self.g(x) + 1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--kvstore', default='local')
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--batch', type=int, default=64, help='global batch size')
    p.add_argument('--out', required=True, help='where to save the final parameters')
    p.add_argument('--contexts', type=int, default=1,
                   help='CPU contexts for split_and_load data parallelism in one process')
    args = p.parse_args(argv)
    kv = mx.kv.create(args.kvstore)
    rank, workers = kv.rank, kv.num_workers
    ctxs = [mx.cpu(i) for i in range(args.contexts)]
    model = Residual()
    model.initialize(mx.init.Constant(0.1), ctx=ctxs)
    for i, p_ in enumerate(model.collect_params().values()):  # same start everywhere
        p_.set_data(nd.array(np.random.default_rng(i).uniform(-1, 1, p_.shape)))
    model.hybridize()
    trainer = gluon.Trainer(model.collect_params(), 'sgd', {'learning_rate': 0.125},
                            kvstore=kv)
    rng = np.random.default_rng(0)  # every worker draws the same global batches
    for _ in range(args.steps):
        x = rng.uniform(-1, 1, size=(args.batch, 1))
        shard = np.array_split(x, workers)[rank]
        parts = gluon.utils.split_and_load(nd.array(shard), ctxs, even_split=False)
        with autograd.record():
            losses = [model(part) for part in parts]
        for loss in losses:
            loss.backward()
        trainer.step(args.batch, ignore_stale_grad=True)
    # finish this worker's last pushes before anyone waits on them (MXNet is asynchronous)
    nd.waitall()
    if rank == 0:
        model.save_parameters(args.out)
    print(f'worker {rank}/{workers}: done', flush=True)


if __name__ == '__main__':
    main()
