#!/usr/bin/env python
# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Serve the force field trained by force_field.py in onnxruntime, without MXNet.

    python examples/force_field.py --onnx forces.onnx
    python examples/serve_forces.py forces.onnx

The model holds the energy network and its input gradient (F = -dE/dx) as ONNX
operators.  This script imports neither MXNet nor mxgradlayer: it loads the model in
onnxruntime, evaluates forces on the held-out points force_field.py kept, prints their
error against the exact Müller-Brown forces, and the time per batch of 10,000 points
next to MXNet's (measured by force_field.py on the same machine when it exported).
A PNG maps the force error over the held-out points.
"""
import argparse
import json
import sys
import time

import numpy as np

from muller_brown import force


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='the .onnx file force_field.py --onnx wrote')
    p.add_argument('--repeats', type=int, default=20, help='timed batches (median reported)')
    p.add_argument('--threads', type=int, default=0,
                   help='onnxruntime intra-op threads (default: its own choice)')
    p.add_argument('--plot', default='serve_forces.png', help='PNG path ("" for none)')
    args = p.parse_args(argv)
    import onnxruntime

    with open(args.model + '.json') as f:
        side = json.load(f)
    points = np.asarray(side['held_out_points'], dtype=np.float32)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if args.threads:
        options.intra_op_num_threads = args.threads
    session = onnxruntime.InferenceSession(args.model, options,
                                           providers=['CPUExecutionProvider'])
    print('inputs:', [(i.name, i.shape) for i in session.get_inputs()],
          ' outputs:', [(o.name, o.shape) for o in session.get_outputs()])
    _, forces = session.run(['energy', 'forces'], {'positions': points})
    true = force(points.astype(np.float64))
    error = np.sqrt(((forces - true) ** 2).sum(axis=1))
    spread = np.sqrt(((true - true.mean(0)) ** 2).sum(axis=1).mean())
    rmse = float(np.sqrt((error ** 2).mean()))
    print(f'held-out force RMSE {rmse:.4f} ({100 * rmse / spread:.2f}% of the forces\' spread) '
          f'on {len(points)} points')

    rng = np.random.default_rng(1)
    batch = np.column_stack([rng.uniform(-1.5, 1.2, 10000),
                             rng.uniform(-0.2, 2.0, 10000)]).astype(np.float32)
    times = []
    for _ in range(args.repeats + 3):
        start = time.perf_counter()
        session.run(None, {'positions': batch})
        times.append(time.perf_counter() - start)
    ms = 1000 * float(np.median(times[3:]))
    print(f'time per batch of 10,000 points: onnxruntime {ms:.2f} ms, MXNet (hybridized, '
          f'at export) {side["mxnet_ms_per_10000"]:.2f} ms')
    if 'mxnet' in sys.modules:
        raise SystemExit('serve_forces.py imported mxnet, which it must not')
    if args.plot:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4.5))
        sc = ax.scatter(points[:, 0], points[:, 1], c=error, s=6, cmap='magma')
        ax.quiver(points[::8, 0], points[::8, 1], forces[::8, 0], forces[::8, 1], alpha=0.5)
        fig.colorbar(sc, label='|F_onnx - F_true|')
        ax.set_title(f'forces served by onnxruntime: RMSE {rmse:.3f}')
        ax.set_xlabel('x'); ax.set_ylabel('y')
        fig.savefig(args.plot, dpi=110, bbox_inches='tight')
        print(f'plot written to {args.plot}')
    return {'force_rmse': rmse, 'relative_percent': 100 * rmse / spread, 'onnx_ms': ms,
            'mxnet_ms': side['mxnet_ms_per_10000']}


if __name__ == '__main__':
    main()
