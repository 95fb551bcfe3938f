"""Small builders shared by the tests."""
import numpy as np
import mxnet as mx
from mxnet import gluon, nd


class Lambda(gluon.HybridBlock):
    """A block from ``fn(F, *inputs)``, for testing one operator at a time."""

    def __init__(self, fn, **kwargs):
        super().__init__(**kwargs)
        self._fn = fn

    def hybrid_forward(self, F, *args):
        return self._fn(F, *args)


def array(shape, low=-2.0, high=2.0, seed=0, dtype='float64', away_from_zero=False):
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, size=shape)
    if away_from_zero:
        x = np.sign(x) * (0.2 + np.abs(x))
    return nd.array(x, dtype=dtype)


def mlp(widths, activation='tanh', in_units=None, dtype='float64', seed=0, flatten=True):
    """Dense layers with the given widths; the last one is linear."""
    mx.random.seed(seed)
    net = gluon.nn.HybridSequential()
    units = in_units
    for i, w in enumerate(widths):
        act = activation if i < len(widths) - 1 else None
        net.add(gluon.nn.Dense(w, activation=act, in_units=units or 0, flatten=flatten))
        units = w
    net.initialize(mx.init.Normal(0.5))
    if dtype != 'float32':
        net.cast(dtype)
    return net
