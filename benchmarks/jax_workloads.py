# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The MLP workloads in JAX under ``jax.jit``, for side-by-side figures: the Laplacian
workloads by folx's forward Laplacian (the strongest Laplacian peer) and by the double
backward (forward over reverse along each coordinate), W1 by ``jax.grad`` and W3 by forward
over reverse (``jax.jvp`` of ``jax.grad``).

Only used by ``benchmarks/run.py --jax-python``; JAX needs NumPy 2 and MXNet NumPy < 1.24,
so they live in a virtual environment of their own (``make bench-peers`` installs
``jax[cpu]==0.10.2`` and ``folx==0.2.30`` there).  Never a dependency of the library.
Weights and points are benchmarks/data.py's, the same as MXNet's and PyTorch's.
"""
import math

import jax
import jax.numpy as jnp

import data

ACTIVATIONS = {'tanh': jnp.tanh, 'sigmoid': jax.nn.sigmoid}


def _mlp(spec):
    widths, act, d = spec
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in data.mlp_weights(widths, d)]
    f = ACTIVATIONS[act]

    def apply(params, x):
        for i, (W, b) in enumerate(params):
            x = x @ W.T + b
            if i < len(params) - 1:
                x = f(x)
        return x
    return params, apply


def _train_step(params, loss, *args, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """A jitted step: the gradient of ``loss(params, *args)`` and an Adam update (written
    out: optax is not installed, and the update is a few elementwise operations)."""
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)

    @jax.jit
    def update(params, m, v, t):
        value, g = jax.value_and_grad(loss)(params, *args)
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        scale = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + eps),
                                        params, m, v)
        return params, m, v, value
    state = {'params': params, 'm': zeros, 'v': zeros, 't': 1.0}

    def step(report=False):
        p, m, v, value = update(state['params'], state['m'], state['v'], state['t'])
        jax.block_until_ready(p)
        state.update(params=p, m=m, v=v, t=state['t'] + 1.0)
        return float(value) if report else None
    return step


def _laplacian(apply, method):
    """The Laplacian of a scalar network at a batch of points: ``layer`` is folx's forward
    Laplacian of each point (vmapped); ``hessian_trace`` the double backward, the
    Hessian's diagonal by forward over reverse (``jax.jvp`` of ``jax.grad``) along each
    coordinate for all points at once.  (That batched form trained W2 in 28 ms here,
    the trace of a vmapped ``jax.hessian`` in 119 ms, folx's in 39 ms.)"""
    if method == 'layer':
        import folx

        def one(params, x):
            return folx.forward_laplacian(lambda z: apply(params, z[None])[0, 0])(x).laplacian
        return jax.vmap(one, in_axes=(None, 0))

    def batched(params, x):
        grad = jax.grad(lambda z: jnp.sum(apply(params, z)))
        total = 0.0
        for i in range(x.shape[1]):
            e = jnp.zeros_like(x).at[:, i].set(1.0)
            total = total + jax.jvp(grad, (x,), (e,))[1][:, i]
        return total
    return batched


def w1(method):
    params, g = _mlp(data.W1_NET)
    x = jnp.asarray(data.w1_points())

    def u(params, x):
        return x * g(params, x) + 1

    def loss(params, x):
        if method == 'plain':
            return jnp.mean((u(params, x) - x ** 2 - 1) ** 2)
        if method == 'fd':
            return jnp.mean(((u(params, x + 1e-4) - u(params, x)) / 1e-4 - 2 * x) ** 2)
        du = jax.grad(lambda z: jnp.sum(u(params, z)))(x)
        return jnp.mean((du - 2 * x) ** 2)
    return _train_step(params, loss, x)


def _f(x):
    return 2 * math.pi ** 2 * jnp.sin(math.pi * x[:, :1]) * jnp.sin(math.pi * x[:, 1:2])


def w2(method):
    params, u = _mlp(data.W2_NET)
    a, b = (jnp.asarray(p) for p in data.w2_points())
    lap = None if method == 'plain' else _laplacian(u, method)

    def loss(params, a, b):
        boundary = jnp.mean(u(params, b) ** 2)
        if method == 'plain':
            return jnp.mean((u(params, a) - _f(a)) ** 2) + boundary
        return jnp.mean((-lap(params, a)[:, None] - _f(a)) ** 2) + boundary
    return _train_step(params, loss, a, b)


def laplacian_cost(method, d):
    params, u = _mlp(data.lap_net(d))
    x = jnp.asarray(data.lap_points(d))
    lap = None if method == 'plain' else _laplacian(u, method)

    def loss(params, x):
        if method == 'plain':
            return jnp.mean(u(params, x) ** 2)
        return jnp.mean(lap(params, x) ** 2)
    return _train_step(params, loss, x)


def w3(method):
    """HVP against one forward and backward pass (parameter gradients), as in MXNet's W3."""
    params, u = _mlp(data.W3_NET)
    x, v = (jnp.asarray(p) for p in data.w3_points())
    if method == 'plain':  # the value and the parameter gradients
        fn = jax.jit(jax.value_and_grad(lambda p, x: jnp.sum(u(p, x))))
    else:
        grad_x = jax.grad(lambda x, p: jnp.sum(u(p, x)))
        fn = jax.jit(lambda p, x: jax.jvp(lambda z: grad_x(z, p), (x,), (v,))[1])

    def step(report=False):
        out = jax.block_until_ready(fn(params, x))
        if report:
            return float(out[0] if method == 'plain' else jnp.sum(out))
    return step


WORKLOADS = {'W1': ['plain', 'layer', 'fd'], 'W2': ['plain', 'layer', 'hessian_trace'],
             'LAP2': ['plain', 'layer'], 'LAP8': ['plain', 'layer'],
             'LAP32': ['plain', 'layer'], 'W3': ['plain', 'layer']}
