#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Long run: train the Poisson workload (Laplacian in the loss) for many steps and record
resident memory, to show that it stays flat after warm-up.

Prints the resident set size every ``--every`` steps and the growth after warm-up; exits
with status 1 when that growth exceeds ``--tolerance-mb``.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def long_run(steps=10000, warmup=1000, every=500, interior=4096, boundary=512):
    import mxnet as mx
    import workloads
    mx.random.seed(0)
    step = workloads.w2('layer', interior=interior, boundary=boundary)
    samples = []
    for i in range(1, steps + 1):
        step()
        if i >= warmup and (i - warmup) % every == 0:
            samples.append((i, rss_mb()))
    return samples


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--steps', type=int, default=10000)
    p.add_argument('--warmup', type=int, default=1000)
    p.add_argument('--every', type=int, default=500)
    p.add_argument('--interior', type=int, default=4096)
    p.add_argument('--tolerance-mb', type=float, default=20.0)
    args = p.parse_args(argv)
    samples = long_run(args.steps, args.warmup, args.every, args.interior)
    for i, mb in samples:
        print(f'step {i:6d}: {mb:8.1f} MB resident')
    growth = samples[-1][1] - samples[0][1]
    print(f'growth after warm-up: {growth:+.1f} MB over {samples[-1][0] - samples[0][0]} steps')
    return 0 if growth <= args.tolerance_mb else 1


if __name__ == '__main__':
    sys.exit(main())
