#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Benchmark runner: derivative overhead ratios of the mxgradlayer workloads.

Each (workload, method) runs in a fresh subprocess with OMP_NUM_THREADS and
MXNET_CPU_WORKER_NTHREADS fixed, so peak resident memory is its own; it warms up, then
times at least ``--steps`` (>= 20) steps and at least two seconds of them, and reports
the median and minimum; ``ratio`` divides by the plain step's median from its own
process, ``interleaved`` times the plain and the derivative step alternately in one
process (drift of a shared machine cancels out of it).  Ratios are taken within one
run against the workload's plain step (W3: one forward and backward pass), never across
runs.  Writes a JSON file and prints a table.  ``--torch`` adds the same workloads in
PyTorch (if installed: ``pip install torch==2.13.0``; never a dependency of the library).
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def build(module, name, method):
    """The step of workload ``name`` ('W1', 'W2', 'W3', 'LAP2', 'LAP8', ...) from
    ``module`` (workloads, or torch_workloads, which defines the same functions)."""
    if name.startswith('LAP'):
        return module.laplacian_cost(method, int(name[3:]))
    return getattr(module, name.lower())(method)


def _timed(step, steps, seconds=2.0):
    """Step times: at least ``steps`` of them and at least ``seconds`` of work."""
    times = []
    begin = time.perf_counter()
    while len(times) < steps or time.perf_counter() - begin < seconds:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return sorted(times)


def measure(framework, workload, method, steps, warmup):
    """In this process: build the step, time it, print one JSON line.

    For a derivative method the plain step of the same workload is then built in the same
    process and the two are timed alternately (plain, method, plain, ...), so that the
    machine's drift cancels out of ``interleaved_ratio``; peak memory is read before the
    plain step exists.
    """
    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    if framework == 'mxnet':  # a torch run imports no MXNet, so its memory is its own
        import mxnet as mx
        import workloads as module
        mx.random.seed(0)
    else:
        import torch_workloads as module
    step = build(module, workload, method)
    for _ in range(warmup):
        step()
    times = _timed(step, steps)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {'framework': framework, 'workload': workload, 'method': method,
              'median_ms': 1e3 * times[len(times) // 2], 'min_ms': 1e3 * times[0],
              'steps': len(times), 'peak_rss_mb': rss_kb / 1024.0}
    if method != 'plain':
        plain = build(module, workload, 'plain')
        for _ in range(warmup):
            plain()
        pairs = []
        begin = time.perf_counter()
        while len(pairs) < steps or time.perf_counter() - begin < 2.0:
            t0 = time.perf_counter()
            plain()
            t1 = time.perf_counter()
            step()
            pairs.append((t1 - t0, time.perf_counter() - t1))
        base = sorted(p[0] for p in pairs)[len(pairs) // 2]
        other = sorted(p[1] for p in pairs)[len(pairs) // 2]
        result['interleaved_ratio'] = other / base
    print(json.dumps(result))


def run_one(framework, workload, method, args, env):
    cmd = [sys.executable, os.path.abspath(__file__), '--child', framework, workload, method,
           '--steps', str(args.steps), '--warmup', str(args.warmup)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        return {'framework': framework, 'workload': workload, 'method': method,
                'error': (res.stderr.strip().splitlines() or ['?'])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def table(results):
    ref = {}
    for r in results:
        if 'error' not in r and r['method'] == 'plain':
            ref[(r['framework'], r['workload'])] = r['median_ms']
    lines = [f"{'framework':9s} {'workload':8s} {'method':14s} {'median ms':>10s} "
             f"{'min ms':>8s} {'ratio':>7s} {'interleaved':>11s} {'peak RSS MB':>12s}"]
    for r in results:
        if 'error' in r:
            lines.append(f"{r['framework']:9s} {r['workload']:8s} {r['method']:14s} "
                         f"failed: {r['error']}")
            continue
        base = ref.get((r['framework'], r['workload']))
        r['ratio'] = r['median_ms'] / base if base else None
        ratio = f"{r['ratio']:7.2f}" if base else '      -'
        inter = (f"{r['interleaved_ratio']:11.2f}" if 'interleaved_ratio' in r
                 else f"{'-':>11s}")
        lines.append(f"{r['framework']:9s} {r['workload']:8s} {r['method']:14s} "
                     f"{r['median_ms']:10.2f} {r['min_ms']:8.2f} {ratio} {inter} "
                     f"{r['peak_rss_mb']:12.0f}")
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--child', nargs=3, metavar=('FRAMEWORK', 'WORKLOAD', 'METHOD'),
                   help=argparse.SUPPRESS)
    p.add_argument('--steps', type=int, default=30, help='timed steps (at least 20)')
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--threads', type=int, default=2, help='OMP_NUM_THREADS for every run')
    p.add_argument('--only', default='', help='comma-separated workloads (W1,W2,LAP2,...)')
    p.add_argument('--torch', action='store_true', help='also run the PyTorch workloads')
    p.add_argument('--out', default=os.path.join(HERE, 'results.json'))
    p.add_argument('--long-run', type=int, metavar='STEPS', default=0,
                   help='instead: train the Poisson workload STEPS steps and check that '
                        'resident memory stays flat (benchmarks/long_run.py)')
    args = p.parse_args(argv)
    if args.long_run:
        sys.path.insert(0, HERE)
        import long_run
        sys.exit(long_run.main(['--steps', str(args.long_run)]))
    if args.child:
        measure(*args.child, steps=args.steps, warmup=args.warmup)
        return
    if args.steps < 20:
        p.error('--steps must be at least 20')
    sys.path.insert(0, HERE)
    sys.path.insert(0, ROOT)
    from workloads import WORKLOADS
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MXNET_CPU_WORKER_NTHREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    env['PYTHONPATH'] = os.pathsep.join([ROOT, env.get('PYTHONPATH', '')])
    wanted = [w for w in WORKLOADS if not args.only or w in args.only.split(',')]
    frameworks = ['mxnet'] + (['torch'] if args.torch else [])
    results = []
    for fw in frameworks:
        for w in wanted:
            methods = WORKLOADS[w]
            if fw == 'torch':
                import torch_workloads
                methods = torch_workloads.WORKLOADS.get(w, [])
            for m in methods:
                r = run_one(fw, w, m, args, env)
                results.append(r)
                print(f'  {fw} {w} {m}: ' + (f"{r['median_ms']:.2f} ms" if 'error' not in r
                                             else r['error']), file=sys.stderr, flush=True)
    text = table(results)
    machine = {'platform': platform.platform(), 'processor': platform.processor(),
               'cpus': os.cpu_count(), 'python': platform.python_version(),
               'OMP_NUM_THREADS': args.threads, 'date': time.strftime('%Y-%m-%d %H:%M')}
    try:
        import mxnet
        machine['mxnet'] = mxnet.__version__
    except ImportError:
        pass
    with open(args.out, 'w') as f:
        json.dump({'machine': machine, 'results': results}, f, indent=1)
    print(json.dumps(machine))
    print(text)


if __name__ == '__main__':
    main()
