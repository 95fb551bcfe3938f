# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The Müller-Brown potential in NumPy alone: shared by force_field.py (training, with
MXNet) and serve_forces.py (serving, without it)."""
import numpy as np

# Müller & Brown (1979): E = sum_k A_k exp(a_k dx^2 + b_k dx dy + c_k dy^2), in units of 100
A = np.array([-200.0, -100.0, -170.0, 15.0]) / 100.0
a = np.array([-1.0, -1.0, -6.5, 0.7])
b = np.array([0.0, 0.0, 11.0, 0.6])
c = np.array([-10.0, -10.0, -6.5, 0.7])
X0 = np.array([1.0, 0.0, -0.5, -1.0])
Y0 = np.array([0.0, 0.5, 1.5, 1.0])
BOX = ((-1.5, 1.2), (-0.2, 2.0))


def energy(p):
    dx, dy = p[:, :1] - X0, p[:, 1:] - Y0
    return (A * np.exp(a * dx ** 2 + b * dx * dy + c * dy ** 2)).sum(axis=1, keepdims=True)


def force(p):
    """-grad E, in closed form."""
    dx, dy = p[:, :1] - X0, p[:, 1:] - Y0
    terms = A * np.exp(a * dx ** 2 + b * dx * dy + c * dy ** 2)
    return -np.stack([(terms * (2 * a * dx + b * dy)).sum(axis=1),
                      (terms * (b * dx + 2 * c * dy)).sum(axis=1)], axis=1)


def sample(rng, n, cutoff):
    """n points of the box with E below ``cutoff`` (the physically visited region)."""
    out = []
    while sum(len(o) for o in out) < n:
        p = np.column_stack([rng.uniform(*BOX[0], size=4 * n), rng.uniform(*BOX[1], size=4 * n)])
        out.append(p[energy(p)[:, 0] < cutoff])
    return np.concatenate(out)[:n]
