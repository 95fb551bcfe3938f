#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""High-order derivatives side by side: Taylor mode against nesting, and against peers.

Cases (float32, an MLP d -> 64 -> 64 -> 64 -> 1 with tanh, the same weights and points
in every framework):

  U4        u'''' of a scalar input, 1024 points: ``Taylor(net, order=4)`` against four
            nested ``InputGradient``s, PyTorch's four nested ``autograd.grad`` and
            ``jax.experimental.jet``
  BIH2/4/8  the biharmonic for d = 2, 4, 8, 256 points: ``DifferentialOperator(net,
            'biharmonic')`` (collapsed Taylor mode) against ``Laplacian(Laplacian(net))``,
            PyTorch's nested Laplacians (autograd.grad) and ``jax.experimental.jet`` along
            the same interpolation directions (vmapped, summed after the sweep)
  LAP2/8/32 the Laplacian, 1024 points: ``DifferentialOperator(net, 'laplacian')``
            against the existing forward ``Laplacian``

Two measures per method: ``eval``, the derivative alone (hybridized / jit), and
``train``, a training step on the loss mean((L u)^2) (forward, backward, Adam; not for
jet, whose reverse mode is not what is compared).  Each (framework, case, method) runs in
a fresh subprocess with OMP_NUM_THREADS threads under MXNet's default environment (no
variable set but the thread counts), times at least ``--steps`` calls and two seconds,
and reports the median; ``--repeat`` runs everything again, alternating frameworks, and
the table gives the median over the repeats and their range.  Each child also prints
its first 64 values of L u, and the table shows their largest difference to mxgradlayer's
first method's (relative to the largest value), so a wrong number cannot pass as a fast one.

PyTorch (``pip install torch==2.13.0``) and JAX (``jax[cpu]==0.10.2``, which needs NumPy 2
and so lives in a virtual environment of its own, ``--jax-python``) are for benchmarking
only, never dependencies: ``make bench-taylor`` installs both.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WIDTHS = (64, 64, 64)
CASES = {  # name: (dimension, points, operator)
    'U4': (1, 1024, 'u4'), 'BIH2': (2, 256, 'biharmonic'), 'BIH4': (4, 256, 'biharmonic'),
    'BIH8': (8, 256, 'biharmonic'), 'LAP2': (2, 1024, 'laplacian'),
    'LAP8': (8, 1024, 'laplacian'), 'LAP32': (32, 1024, 'laplacian'),
}
METHODS = {  # framework: {operator: methods}; mxgradlayer's first is the reference
    'mxnet': {'u4': ('taylor', 'nested'), 'biharmonic': ('collapsed', 'nested'),
              'laplacian': ('collapsed', 'forward')},
    'torch': {'u4': ('nested',), 'biharmonic': ('nested',)},
    'jax': {'u4': ('jet',), 'biharmonic': ('jet',)},
}
MEASURES = ('eval', 'train')
SAMPLE = 64  # values of L u compared across methods


def weights(d, seed=0):
    """Glorot-uniform weights (out, in) and zero biases, the same for every framework."""
    import numpy as np
    rng = np.random.default_rng(seed)
    out, units = [], d
    for w in WIDTHS + (1,):
        a = (6.0 / (units + w)) ** 0.5
        out.append((rng.uniform(-a, a, size=(w, units)).astype('float32'),
                    rng.uniform(-0.1, 0.1, size=(w,)).astype('float32')))
        units = w
    return out


def points(d, n, seed=1):
    import numpy as np
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, d)).astype('float32')


def biharmonic_directions(d):
    """Directions and derivative weights with sum_k c_k (v_k . grad)^4 u = Delta^2 u (the
    ones DifferentialOperator uses): e_i with 1 - (d-1)/3, e_i +- e_j (i < j) with 1/6."""
    import numpy as np
    rows, coef = [], []
    if d - 1 != 3:
        rows += list(np.eye(d))
        coef += [1.0 - (d - 1) / 3.0] * d
    for i in range(d):
        for j in range(i + 1, d):
            for s in (1.0, -1.0):
                v = np.zeros(d)
                v[i], v[j] = 1.0, s
                rows.append(v)
                coef.append(1.0 / 6.0)
    return np.array(rows, dtype='float32'), np.array(coef, dtype='float32')


# ----- the frameworks: each returns (eval, train) zero-argument callables and the value -----
def mxnet_case(case, method):
    from mxnet import autograd, gluon, nd
    import mxgradlayer as mg
    d, n, op = CASES[case]

    class FourthDerivative(gluon.HybridBlock):
        def __init__(self, taylor):
            super().__init__()
            with self.name_scope():
                self.taylor = taylor

        def hybrid_forward(self, F, x, v):
            return F.squeeze(F.slice_axis(self.taylor(x, v), axis=0, begin=4, end=5), axis=0)

    net = gluon.nn.HybridSequential()
    units = d
    for i, (W, b) in enumerate(weights(d)):
        net.add(gluon.nn.Dense(W.shape[0], activation='tanh' if i < len(WIDTHS) else None,
                               in_units=units))
        units = W.shape[0]
    net.initialize()
    for layer, (W, b) in zip(net, weights(d)):
        layer.weight.set_data(nd.array(W))
        layer.bias.set_data(nd.array(b))
    x = nd.array(points(d, n))
    if op == 'u4':
        if method == 'taylor':
            block = FourthDerivative(mg.Taylor(net, order=4))
            ones = nd.ones_like(x)
            args = (x, ones)
        else:
            block = net
            for _ in range(4):
                block = mg.InputGradient(block)
            args = (x,)
    elif method in ('collapsed',):
        block, args = mg.DifferentialOperator(net, op), (x,)
    elif op == 'biharmonic':
        block, args = mg.Laplacian(mg.Laplacian(net)), (x,)
    else:
        block, args = mg.Laplacian(net), (x,)
    block.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-4})

    def evaluate():
        block(*args).wait_to_read()

    def train():
        with autograd.record():
            loss = nd.mean(nd.square(block(*args)))
        loss.backward()
        trainer.step(1, ignore_stale_grad=True)
        nd.waitall()
    return evaluate, train, block(*args).asnumpy()


def torch_case(case, method):
    import torch
    d, n, op = CASES[case]
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '2')))
    layers = []
    for i, (W, b) in enumerate(weights(d)):
        lin = torch.nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
        layers += [lin] + ([torch.nn.Tanh()] if i < len(WIDTHS) else [])
    net = torch.nn.Sequential(*layers)
    x0 = torch.from_numpy(points(d, n))

    def grad(y, x):
        return torch.autograd.grad(y.sum(), x, create_graph=True)[0]

    def laplacian(f, x):
        g = grad(f, x)
        return sum(grad(g[:, i], x)[:, i:i + 1] for i in range(x.shape[1]))

    def operator():
        x = x0.clone().requires_grad_(True)
        if op == 'u4':
            y = net(x)
            for _ in range(4):
                y = grad(y, x)
            return y
        return laplacian(laplacian(net(x), x), x)

    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def evaluate():
        operator()

    def train():
        opt.zero_grad(set_to_none=True)
        torch.mean(torch.square(operator())).backward()
        opt.step()
    return evaluate, train, operator().detach().numpy()


def jax_case(case, method):
    import jax
    import jax.numpy as jnp
    from jax.experimental.jet import jet
    d, n, op = CASES[case]
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in weights(d)]
    x = jnp.asarray(points(d, n))

    def net(x):
        for i, (W, b) in enumerate(params):
            x = x @ W.T + b
            if i < len(WIDTHS):
                x = jnp.tanh(x)
        return x

    def fourth(v):  # (v . grad)^4 u at every point, by one jet of order 4
        zero = jnp.zeros_like(x)
        _, series = jet(net, (x,), ((jnp.broadcast_to(v, x.shape), zero, zero, zero),))
        return series[3]

    if op == 'u4':
        fn = jax.jit(lambda: fourth(jnp.ones((d,), 'float32')))
    else:
        V, c = biharmonic_directions(d)
        V, c = jnp.asarray(V), jnp.asarray(c)
        fn = jax.jit(lambda: jnp.tensordot(c, jax.vmap(fourth)(V), axes=1))

    def evaluate():
        fn().block_until_ready()
    return evaluate, None, fn()


def measure(framework, case, method, measure_name, steps, warmup):
    sys.path.insert(0, ROOT)
    build = {'mxnet': mxnet_case, 'torch': torch_case, 'jax': jax_case}[framework]
    evaluate, train, value = build(case, method)
    step = evaluate if measure_name == 'eval' else train
    for _ in range(warmup):
        step()
    times, begin = [], time.perf_counter()
    while len(times) < steps or time.perf_counter() - begin < 2.0:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    import numpy as np
    sample = np.asarray(value, dtype='float64').ravel()[:SAMPLE].tolist()
    print(json.dumps({'median_ms': 1e3 * times[len(times) // 2], 'min_ms': 1e3 * times[0],
                      'steps': len(times), 'value': sample}))


def run_one(framework, case, method, measure_name, args, env):
    python = args.jax_python if framework == 'jax' else sys.executable
    cmd = [python, os.path.abspath(__file__), '--child', framework, case, method,
           measure_name, '--steps', str(args.steps), '--warmup', str(args.warmup)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        return {'error': (res.stderr.strip().splitlines() or ['?'])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def available(framework, args, env):
    if framework == 'mxnet':
        return True
    python = args.jax_python if framework == 'jax' else sys.executable
    if not python:
        return False
    res = subprocess.run([python, '-c', f'import {framework}'], env=env, capture_output=True)
    return res.returncode == 0


def _median(values):
    values = sorted(values)
    k = len(values)
    return values[k // 2] if k % 2 else 0.5 * (values[k // 2 - 1] + values[k // 2])


def summarize(runs):
    """Median over the repeats of every (framework, case, method, measure)."""
    rows = {}
    for r in runs:
        rows.setdefault((r['framework'], r['case'], r['method'], r['measure']), []).append(r)
    out = []
    for (fw, case, method, meas), rs in rows.items():
        ok = [r for r in rs if 'median_ms' in r]
        row = {'framework': fw, 'case': case, 'method': method, 'measure': meas}
        if ok:
            ms = [r['median_ms'] for r in ok]
            row.update(median_ms=_median(ms), low_ms=min(ms), high_ms=max(ms),
                       value=ok[0]['value'], repeats=len(ok))
        else:
            row['error'] = rs[0].get('error', '?')
        out.append(row)
    return out


def _difference(a, b):
    """max |a - b| / max |b| over the compared values."""
    return max(abs(x - y) for x, y in zip(a, b)) / max(max(abs(y) for y in b), 1e-30)


def table(rows):
    """One line per method: time, range over repeats, speed-up of mxgradlayer's first
    method over it, and the relative difference of its value to that method's."""
    find = {(r['framework'], r['case'], r['method'], r['measure']): r for r in rows}
    lines = [f"{'case':6s} {'measure':7s} {'framework':9s} {'method':10s} {'median ms':>10s} "
             f"{'range over repeats':>20s} {'t / t_ref':>9s} {'value diff':>11s}"]
    for r in rows:
        op = CASES[r['case']][2]
        ref = find.get(('mxnet', r['case'], METHODS['mxnet'][op][0], r['measure']))
        head = f"{r['case']:6s} {r['measure']:7s} {r['framework']:9s} {r['method']:10s}"
        if 'error' in r:
            lines.append(f"{head} failed: {r['error']}")
            continue
        speed = (f"{r['median_ms'] / ref['median_ms']:8.2f}x"
                 if ref and 'median_ms' in ref else f"{'-':>9s}")
        diff = (f"{_difference(r['value'], ref['value']):11.1e}"
                if ref and 'value' in ref else f"{'-':>11s}")
        spread = f"{r['low_ms']:.2f}-{r['high_ms']:.2f}"
        lines.append(f"{head} {r['median_ms']:10.2f} {spread:>20s} {speed} {diff}")
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--child', nargs=4, help=argparse.SUPPRESS)
    p.add_argument('--steps', type=int, default=20, help='timed calls (at least 10)')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--repeat', type=int, default=1)
    p.add_argument('--threads', type=int, default=2, help='OMP_NUM_THREADS for every run')
    p.add_argument('--only', default='', help='comma-separated cases (U4,BIH8,LAP32,...)')
    p.add_argument('--jax-python', default='',
                   help='the Python of a virtual environment with jax[cpu]==0.10.2')
    p.add_argument('--out', default=os.path.join(HERE, 'taylor_results.json'))
    args = p.parse_args(argv)
    if args.child:
        measure(*args.child, steps=args.steps, warmup=args.warmup)
        return
    if args.steps < 10:
        p.error('--steps must be at least 10')
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
               XLA_FLAGS=f'--xla_cpu_multi_thread_eigen=true '
                         f'intra_op_parallelism_threads={threads}')
    env['PYTHONPATH'] = os.pathsep.join([ROOT, env.get('PYTHONPATH', '')])
    frameworks = [fw for fw in METHODS if available(fw, args, env)]
    missing = sorted(set(METHODS) - set(frameworks))
    if missing:
        print(f'not installed, left out: {", ".join(missing)} (make bench-taylor installs '
              f'them)', file=sys.stderr)
    cases = [c for c in CASES if not args.only or c in args.only.split(',')]
    runs = []
    for rep in range(args.repeat):
        for case in cases:
            for fw in frameworks:
                for method in METHODS[fw].get(CASES[case][2], ()):
                    for meas in MEASURES:
                        if meas == 'train' and fw == 'jax':
                            continue
                        r = run_one(fw, case, method, meas, args, env)
                        r.update(framework=fw, case=case, method=method, measure=meas,
                                 repeat=rep)
                        runs.append(r)
                        print(f"  [{rep + 1}/{args.repeat}] {case} {meas} {fw} {method}: "
                              + (f"{r['median_ms']:.2f} ms" if 'median_ms' in r
                                 else r['error']), file=sys.stderr, flush=True)
    rows = summarize(runs)
    rows.sort(key=lambda r: (list(CASES).index(r['case']), MEASURES.index(r['measure'])))
    machine = {'platform': platform.platform(), 'processor': platform.processor(),
               'cpus': os.cpu_count(), 'python': platform.python_version(),
               'threads': args.threads, 'repeats': args.repeat,
               'date': time.strftime('%Y-%m-%d %H:%M')}
    with open(args.out, 'w') as f:
        json.dump({'machine': machine, 'results': rows, 'runs': runs}, f, indent=1)
    text = json.dumps(machine) + '\n' + table(rows) + '\n'
    with open(os.path.splitext(args.out)[0] + '.txt', 'w') as f:
        f.write(text)
    print(text, end='')


if __name__ == '__main__':
    main()
