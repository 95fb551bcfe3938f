#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""What a user gets without setting any environment variable: W1, W2 and W3 (plain and
`layer` steps, benchmarks/workloads.py) in fresh processes with OMP_NUM_THREADS,
MXNET_USE_OPERATOR_TUNING and MXNET_OMP_MAX_THREADS removed, once with ``import mxnet``
first (MXNet's own defaults) and once with ``import mxgradlayer`` first (the library's
small-machine settings, README "Performance"), alternating, --repeat times.  Prints the
median step time of each and the settings each process ran with."""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = (('w1', 'plain'), ('w1', 'layer'), ('w2', 'plain'), ('w2', 'layer'),
         ('w3', 'plain'), ('w3', 'layer'))


def child(order, steps):
    if order == 'mxgradlayer':
        import mxgradlayer  # noqa: F401  (before mxnet: its settings apply)
    import mxnet  # noqa: F401
    import numpy as np
    sys.path.insert(0, HERE)
    import workloads
    out = {}
    for workload, method in CASES:
        step = getattr(workloads, workload)(method)
        for _ in range(5):
            step()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        out[f'{workload.upper()} {method}'] = float(np.median(times)) * 1e3
    settings = ' '.join(f'{k}={os.environ.get(k)}' for k in
                        ('MXNET_USE_OPERATOR_TUNING', 'MXNET_OMP_MAX_THREADS'))
    print(settings + '\t' + ' '.join(f'{k}={v:.3f}' for k, v in out.items()))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--child', choices=('mxnet', 'mxgradlayer'), help=argparse.SUPPRESS)
    p.add_argument('--steps', type=int, default=40, help='timed steps per case')
    p.add_argument('--repeat', type=int, default=2)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.steps)
        return
    env = {k: v for k, v in os.environ.items()
           if k not in ('OMP_NUM_THREADS', 'MXNET_USE_OPERATOR_TUNING', 'MXNET_OMP_MAX_THREADS')}
    env['PYTHONPATH'] = os.pathsep.join([os.path.join(HERE, '..'), env.get('PYTHONPATH', '')])
    for rep in range(args.repeat):
        for order in ('mxnet', 'mxgradlayer'):
            out = subprocess.run([sys.executable, __file__, '--child', order, '--steps',
                                  str(args.steps)], env=env, capture_output=True, text=True,
                                 check=True)
            print(f'[{rep + 1}/{args.repeat}] {order} first: {out.stdout.strip()}', flush=True)


if __name__ == '__main__':
    main()
