#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Benchmark runner: derivative overhead ratios of the mxgradlayer workloads.

Each (workload, method) runs in a fresh subprocess, so peak resident memory is its own,
by default under MXNet's default environment: none of OMP_NUM_THREADS,
MXNET_USE_OPERATOR_TUNING, MXNET_OMP_MAX_THREADS, MXNET_CPU_WORKER_NTHREADS is set, and
the workloads import mxgradlayer before mxnet, as the README advises, so what they run
with is what a user gets (on two or three cores mxgradlayer then sets the two MXNet
variables itself; ``benchmarks/defaults.py`` measures the other import order).
``--environment tuned`` sets them instead: OMP_NUM_THREADS=--threads, one engine worker,
operator tuning off (``--operator-tuning`` keeps it); the JSON records which.  Each run
warms up, then
times at least ``--steps`` (>= 20) steps and at least two seconds of them, and reports
the median and minimum; ``ratio`` divides by the plain step's median from its own
process, ``interleaved`` times the plain and the derivative step alternately in one
process (drift of a shared machine cancels out of it).  Ratios are taken within one
run against the workload's plain step (W3: one forward and backward pass), never across
runs.  Writes a JSON file and prints a table.  ``--torch`` adds the same workloads in
PyTorch (if installed: ``pip install torch==2.13.0``; never a dependency of the library),
``--jax-python PATH`` the MLP workloads in JAX with folx's forward Laplacian, run by the
Python of a virtual environment that has ``jax[cpu]`` and ``folx`` (``make bench-peers``);
all three use the same weights and points (benchmarks/data.py, resnet20.py), and the
peers run with their default thread counts (every core: two here).
"""
import argparse
import ast
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
    if framework == 'mxnet':  # a peer's run imports no MXNet, so its memory is its own
        import workloads as module  # (it imports mxgradlayer, then mxnet)
        import mxnet as mx
        mx.random.seed(0)
        version = f'mxnet {mx.__version__}'
    elif framework == 'torch':
        import torch_workloads as module
        version = f'torch {module.torch.__version__}'
    else:
        import jax_workloads as module
        from importlib.metadata import version as installed
        version = f"jax {module.jax.__version__}, folx {installed('folx')}"
    step = build(module, workload, method)
    value = step(report=True)  # the loss before any update: the same in every framework
    for _ in range(warmup):
        step()
    times = _timed(step, steps)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {'framework': framework, 'workload': workload, 'method': method,
              'median_ms': 1e3 * times[len(times) // 2], 'min_ms': 1e3 * times[0],
              'steps': len(times), 'peak_rss_mb': rss_kb / 1024.0, 'version': version,
              'value': value}
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
    python = args.jax_python if framework == 'jax' else sys.executable
    cmd = [python, os.path.abspath(__file__), '--child', framework, workload, method,
           '--steps', str(args.steps), '--warmup', str(args.warmup)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        return {'framework': framework, 'workload': workload, 'method': method,
                'error': (res.stderr.strip().splitlines() or ['?'])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def workload_methods(framework):
    """The WORKLOADS table of workloads.py, torch_workloads.py or jax_workloads.py, read
    without importing the framework."""
    name = {'mxnet': 'workloads.py', 'torch': 'torch_workloads.py',
            'jax': 'jax_workloads.py'}[framework]
    with open(os.path.join(HERE, name)) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'WORKLOADS'
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError(f'{name} defines no WORKLOADS table')


def _median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


def combine(runs):
    """One row per (framework, workload, method): medians over the repeats (the minimum
    of the minima, the largest peak memory)."""
    rows = {}
    for r in runs:
        rows.setdefault((r['framework'], r['workload'], r['method']), []).append(r)
    out = []
    for key, rs in rows.items():
        ok = [r for r in rs if 'error' not in r]
        if not ok:
            out.append(dict(rs[-1]))
            continue
        row = {'framework': key[0], 'workload': key[1], 'method': key[2],
               'median_ms': _median([r['median_ms'] for r in ok]),
               'min_ms': min(r['min_ms'] for r in ok),
               'steps': sum(r['steps'] for r in ok), 'repeats': len(ok),
               'peak_rss_mb': max(r['peak_rss_mb'] for r in ok),
               'value': ok[0].get('value'), 'version': ok[0].get('version')}
        inter = [r['interleaved_ratio'] for r in ok if 'interleaved_ratio' in r]
        if inter:
            row['interleaved_ratio'] = _median(inter)
        out.append(row)
    return out


# the peers' methods compared with mxgradlayer's `layer`, per workload
PEERS = [('torch', 'layer', 'PyTorch, double backward'),
         ('jax', 'layer', 'JAX: folx forward Laplacian (W2, LAP), jax.grad (W1), jvp of grad (W3)'),
         ('jax', 'hessian_trace', 'JAX, double backward (jvp of grad along each coordinate)')]


def side_by_side(runs):
    """MXNet's derivative step over each peer's, per repeat (they ran back to back).

    The machine's speed drifts by up to 1.5x within a minute, hence the repeats.  Two live
    processes taking one step each in turn were tried and dropped: steps then ran up to
    4x slower than alone (caches and idle threads of the other process), MXNet's more,
    which measures the interference, not the frameworks.
    """
    lines = []
    for peer, method, title in PEERS:
        rows = []
        for w in sorted({r['workload'] for r in runs}):
            ratios = side_ratios(runs, w, peer, method)
            if ratios:
                rows.append(f'  {w:6s} ' + ' '.join(f'{x:.2f}' for x in ratios)
                            + f'   median {_median(ratios):.2f}')
        if rows:
            lines += [f'side by side: mxnet layer step / {peer} {method} step ({title}; '
                      'median step times of back-to-back processes, one figure per repeat)']
            lines += rows
    return '\n'.join(lines) if lines else 'side by side: (run with --torch or --jax-python)'


def side_ratios(runs, workload, peer='torch', method='layer'):
    """MXNet's derivative step over the peer's for ``workload``, one ratio per repeat in
    which both were measured, in repeat order."""
    by = {(r['framework'], r['workload'], r['method'], r['repeat']): r['median_ms']
          for r in runs if 'error' not in r}
    keys = [(('mxnet', workload, 'layer', k), (peer, workload, method, k))
            for k in sorted({r['repeat'] for r in runs})]
    return [by[a] / by[b] for a, b in keys if a in by and b in by]


def value_differences(runs):
    """Each peer's first loss (before any update) against mxgradlayer's for the same
    workload and method, relative to the larger: the frameworks start from the same
    weights and points, so a fast wrong number shows here."""
    first = {}
    for r in runs:
        if 'error' not in r and r.get('value') is not None:
            first.setdefault((r['framework'], r['workload'], r['method']), r['value'])
    lines = []
    for (fw, w, m), v in sorted(first.items()):
        ref = first.get(('mxnet', w, m))
        if fw == 'mxnet' or ref is None:
            continue
        diff = abs(v - ref) / max(abs(v), abs(ref), 1e-30)
        lines.append(f'  {w:6s} {m:14s} {fw:6s} {v:14.7g}  mxnet {ref:14.7g}  '
                     f'relative difference {diff:.1e}')
    if not lines:
        return 'values: (no peer ran)'
    return '\n'.join(['values: the loss before the first update (W3: the sum of the result), '
                      "peers against mxgradlayer's"] + lines)


# The targets of the performance issue; each figure is a ratio measured in this run.
TARGETS = [
    ('W1 overhead (interleaved)', 1.15,
     lambda g, s: g('mxnet', 'W1', 'layer', 'interleaved_ratio')),
    ('W2 overhead (interleaved)', 3.5,
     lambda g, s: g('mxnet', 'W2', 'layer', 'interleaved_ratio')),
    ('W2 step, mxnet / torch (median over repeats)', 0.6, lambda g, s: s('W2', 'torch')),
    ('W2 step, mxnet / folx (median over repeats)', 0.6, lambda g, s: s('W2', 'jax')),
    ('Laplacian step d=32 / d=2', 8.0,
     lambda g, s: g('mxnet', 'LAP32', 'layer', 'median_ms') / g('mxnet', 'LAP2', 'layer', 'median_ms')),
    ('Laplacian d=32 step, mxnet / folx', 0.6, lambda g, s: s('LAP32', 'jax')),
    ('W3 HVP / forward+backward (interleaved)', 1.3,
     lambda g, s: g('mxnet', 'W3', 'layer', 'interleaved_ratio')),
    ('W3 HVP, mxnet / torch (median over repeats)', 1.0, lambda g, s: s('W3', 'torch')),
    ('W4 gradient penalty / plain (interleaved)', 3.0,
     lambda g, s: g('mxnet', 'W4', 'layer', 'interleaved_ratio')),
    ('W4 step, mxnet / torch (median over repeats)', 1.0, lambda g, s: s('W4', 'torch')),
    ('W4MEAN step (pooling as a mean), mxnet / torch', 1.0, lambda g, s: s('W4MEAN', 'torch')),
    ('W2 peak memory, layer / plain', 2.0,
     lambda g, s: g('mxnet', 'W2', 'layer', 'peak_rss_mb') / g('mxnet', 'W2', 'plain', 'peak_rss_mb')),
]


def targets(results, runs):
    rows = {(r['framework'], r['workload'], r['method']): r for r in results if 'error' not in r}

    def get(fw, w, m, field):
        return rows[(fw, w, m)][field]

    def side(w, peer):
        ratios = side_ratios(runs, w, peer)
        if not ratios:
            raise KeyError(w)
        return _median(ratios)
    lines = ['targets']
    for name, limit, figure in TARGETS:
        try:
            value = figure(get, side)
        except KeyError:
            lines.append(f'  {name:46s} not measured in this run')
            continue
        verdict = 'met' if value <= limit else 'MISSED'
        lines.append(f'  {name:46s} {value:7.3f}  (<= {limit:g})  {verdict}')
    return '\n'.join(lines)


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


def _cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--child', nargs=3, metavar=('FRAMEWORK', 'WORKLOAD', 'METHOD'),
                   help=argparse.SUPPRESS)
    p.add_argument('--steps', type=int, default=30, help='timed steps (at least 20)')
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--repeat', type=int, default=1,
                   help='measure everything this many times, alternating the frameworks; '
                        'the table shows medians over the repeats')
    p.add_argument('--environment', choices=('defaults', 'tuned'), default='defaults',
                   help="defaults: no thread or tuning variable set (MXNet's defaults, "
                        'with mxgradlayer imported first); tuned: the --threads settings')
    p.add_argument('--threads', type=int, default=2,
                   help='OMP_NUM_THREADS for every run with --environment tuned')
    p.add_argument('--operator-tuning', action='store_true',
                   help="keep MXNet's operator tuning (MXNET_USE_OPERATOR_TUNING=1, its "
                        'default), which on two cores runs most elementwise kernels on one '
                        'thread; by default it is turned off so that they use OMP_NUM_THREADS')
    p.add_argument('--only', default='', help='comma-separated workloads (W1,W2,LAP2,...)')
    p.add_argument('--torch', action='store_true', help='also run the PyTorch workloads')
    p.add_argument('--jax-python', metavar='PYTHON',
                   help='also run the JAX workloads (folx forward Laplacian) with this Python')
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
    # no framework is imported here: a child's peak RSS starts from its parent's
    # (getrusage's maxrss survives fork and exec)
    settings = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'MXNET_CPU_WORKER_NTHREADS',
                'MXNET_USE_OPERATOR_TUNING', 'MXNET_OMP_MAX_THREADS')
    env = {k: v for k, v in os.environ.items() if k not in settings}
    if args.environment == 'tuned':
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
                   MXNET_CPU_WORKER_NTHREADS='1',
                   MXNET_USE_OPERATOR_TUNING='1' if args.operator_tuning else '0')
    env['PYTHONPATH'] = os.pathsep.join([ROOT, env.get('PYTHONPATH', '')])
    wanted = [w for w in workload_methods('mxnet') if not args.only or w in args.only.split(',')]
    frameworks = (['mxnet'] + (['torch'] if args.torch else [])
                  + (['jax'] if args.jax_python else []))
    runs = []  # every measurement; repeats alternate the frameworks to share the drift
    for rep in range(args.repeat):
        for w in wanted:
            for fw in frameworks:
                for m in workload_methods(fw).get(w, []):
                    r = run_one(fw, w, m, args, env)
                    r['repeat'] = rep
                    runs.append(r)
                    print(f'  [{rep + 1}/{args.repeat}] {fw} {w} {m}: '
                          + (f"{r['median_ms']:.2f} ms" if 'error' not in r else r['error']),
                          file=sys.stderr, flush=True)
    results = combine(runs)
    text = '\n\n'.join([table(results), side_by_side(runs), value_differences(runs),
                         targets(results, runs)])
    machine = {'platform': platform.platform(), 'processor': _cpu_model(),
               'cpus': os.cpu_count(), 'python': platform.python_version(),
               'environment': args.environment,
               'set': {k: env[k] for k in settings if k in env},
               'repeats': args.repeat, 'date': time.strftime('%Y-%m-%d %H:%M')}
    try:
        import mxnet
        machine['mxnet'] = mxnet.__version__
    except ImportError:
        pass
    with open(args.out, 'w') as f:
        json.dump({'machine': machine, 'results': results, 'runs': runs}, f, indent=1)
    text = json.dumps(machine) + '\n' + text
    with open(os.path.splitext(args.out)[0] + '.txt', 'w') as f:  # the table, as printed
        f.write(text + '\n')
    print(text)


if __name__ == '__main__':
    main()
