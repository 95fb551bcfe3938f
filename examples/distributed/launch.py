#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Start a scheduler, a server and N workers of train_pinn.py on this machine's loopback,
wait for them, stop them, and compare the result with one process trained on the whole
batches (``--check``).

MXNet's parameter server (kvstore 'dist_sync') takes its roles from DMLC_* environment
variables; every process here listens on 127.0.0.1 only.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(HERE, 'train_pinn.py')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_distributed(workers, steps, out, timeout=300):
    env = dict(os.environ, DMLC_PS_ROOT_URI='127.0.0.1', DMLC_PS_ROOT_PORT=str(free_port()),
               DMLC_NUM_SERVER='1', DMLC_NUM_WORKER=str(workers), DMLC_NODE_HOST='127.0.0.1',
               PS_VERBOSE='0', OMP_NUM_THREADS='1')
    cmd = [sys.executable, TRAIN, '--kvstore', 'dist_sync', '--steps', str(steps), '--out', out]
    procs = [subprocess.Popen(cmd, env=dict(env, DMLC_ROLE=role),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for role in ['scheduler', 'server'] + ['worker'] * workers]
    try:
        for p in procs[2:]:
            p.wait(timeout=timeout)
        for p in procs[:2]:
            p.wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    outputs = [p.stdout.read() for p in procs]
    if any(p.returncode != 0 for p in procs[2:]):
        raise RuntimeError('a worker failed:\n' + '\n'.join(outputs))
    return outputs


def compare(path_a, path_b):
    import numpy as np
    import mxnet as mx
    a, b = mx.nd.load(path_a), mx.nd.load(path_b)
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k].asnumpy() - b[k].asnumpy()))) for k in a)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--check', action='store_true',
                   help='also train in one process and print the largest difference')
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp()
    dist = os.path.join(tmp, 'dist.params')
    for line in run_distributed(args.workers, args.steps, dist)[2:]:
        print(line.strip())
    print(f'distributed parameters written to {dist}')
    if args.check:
        single = os.path.join(tmp, 'single.params')
        subprocess.run([sys.executable, TRAIN, '--steps', str(args.steps), '--out', single],
                       check=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
        diff = compare(dist, single)
        print(f'largest parameter difference, {args.workers} workers vs one process: '
              f'{diff:.2e}')
        return diff


if __name__ == '__main__':
    main()
