# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The MLP workloads' weights and points in NumPy alone, so that the MXNet, PyTorch and
JAX runs (separate processes: each imports one framework) train the same networks from
the same weights on the same points.  The W4 critic has its own, `resnet20.py`."""
import numpy as np


def mlp_weights(widths, in_units, seed=0):
    """[(W (out, in), b (out,))] per layer, float32: Glorot-uniform weights (MXNet's
    Xavier default, magnitude 3 over the average fan), zero biases."""
    rng = np.random.RandomState(seed)
    out, units = [], in_units
    for w in widths:
        a = np.sqrt(6.0 / (units + w))
        out.append((rng.uniform(-a, a, size=(w, units)).astype(np.float32),
                    np.zeros(w, np.float32)))
        units = w
    return out


def uniform(shape, low, high, seed):
    return np.random.RandomState(seed).uniform(low, high, size=shape).astype(np.float32)


def normal(shape, seed):
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


# the networks and points of each workload: (widths, activation, input dimension)
W1_NET = ([32, 32, 1], 'sigmoid', 1)
W2_NET = ([64, 64, 64, 1], 'tanh', 2)
W3_NET = ([256, 256, 1], 'tanh', 100)


def lap_net(d):
    return ([64, 64, 64, 1], 'tanh', d)


def w1_points():
    return uniform((64, 1), -1, 1, seed=11)


def w2_points(interior=4096, boundary=512):
    return uniform((interior, 2), 0, 1, seed=21), uniform((boundary, 2), 0, 1, seed=22)


def lap_points(d, batch=1024):
    return uniform((batch, d), 0, 1, seed=30 + d)


def w3_points():
    return normal((256, 100), seed=31), normal((256, 100), seed=32)
