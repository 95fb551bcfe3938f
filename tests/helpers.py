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


def exact_primal(net):
    """``net`` evaluated as derivative blocks evaluate it: MXNet's float32-accurate
    LeakyReLU kernels replaced by float64-exact primitives.  A reference for finite
    differences of networks with those layers."""
    from mxgradlayer.blocks import DerivativeBlock
    from mxgradlayer.transform import evaluate_primal

    class ExactPrimal(DerivativeBlock):
        def _compute(self, F, graph, inputs, vectors, params):
            vals = evaluate_primal(F, graph, inputs, params)
            outs = [vals[n][k] for n, k in graph.heads]
            return outs[0] if len(outs) == 1 else tuple(outs)
    return ExactPrimal(net)


ACTIVATIONS = {
    'relu': lambda: gluon.nn.Activation('relu'),
    'sigmoid': lambda: gluon.nn.Activation('sigmoid'),
    'tanh': lambda: gluon.nn.Activation('tanh'),
    'softrelu': lambda: gluon.nn.Activation('softrelu'),
    'softsign': lambda: gluon.nn.Activation('softsign'),
    'leakyrelu': lambda: gluon.nn.LeakyReLU(0.1),
    'elu': lambda: gluon.nn.ELU(0.8),
    'selu': lambda: gluon.nn.SELU(),
    'gelu': lambda: gluon.nn.GELU(),
    'swish': lambda: gluon.nn.Swish(),
    'prelu': lambda: gluon.nn.PReLU(alpha_initializer=mx.init.Constant(0.3)),
}


def activation_net(name, in_units=3, hidden=5, out=2, flatten=True, dtype='float64', seed=0):
    mx.random.seed(seed)
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(hidden, in_units=in_units, flatten=flatten),
            ACTIVATIONS[name](),
            gluon.nn.Dense(out, in_units=hidden, flatten=flatten))
    net.initialize(mx.init.Normal(0.7))
    if dtype != 'float32':
        net.cast(dtype)
    return net


class D2LResidual(gluon.HybridBlock):
    """d2l.Residual (chapter 8.6, MXNet edition) in NumPy mode, as a HybridBlock.
    ``smooth``: softrelu inside and tanh after the addition instead of relu, for checks
    whose second derivatives must not vanish."""

    def __init__(self, channels, use_1x1conv=False, strides=1, smooth=False, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = gluon.nn.Conv2D(channels, kernel_size=3, padding=1, strides=strides)
        self.conv2 = gluon.nn.Conv2D(channels, kernel_size=3, padding=1)
        self.conv3 = gluon.nn.Conv2D(channels, kernel_size=1, strides=strides) \
            if use_1x1conv else None
        self.bn1, self.bn2 = gluon.nn.BatchNorm(), gluon.nn.BatchNorm()
        self._smooth = smooth

    def hybrid_forward(self, F, X):
        Y = self.bn1(self.conv1(X))
        Y = F.npx.activation(Y, act_type='softrelu') if self._smooth else F.npx.relu(Y)
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return F.np.tanh(Y + X) if self._smooth else F.npx.relu(Y + X)


def d2l_resnet(stem, widths, outputs, smooth=False):
    """A stem convolution with BatchNorm, two D2L residual blocks (the second with a 1x1
    convolution and stride 2), global average pooling and a Dense head."""
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(stem, kernel_size=3, padding=1), gluon.nn.BatchNorm(),
            gluon.nn.Activation('tanh'), D2LResidual(widths[0], smooth=smooth),
            D2LResidual(widths[1], use_1x1conv=True, strides=2, smooth=smooth),
            gluon.nn.GlobalAvgPool2D(), gluon.nn.Dense(outputs))
    return net


class OutputSum(gluon.HybridBlock):
    """The sum of a network's outputs per sample, (B, 1), in either front end."""

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        self.net = net

    def hybrid_forward(self, F, x):
        P = F.np if mx.util.is_np_array() else F
        return P.sum(self.net(x), axis=1, keepdims=True)
