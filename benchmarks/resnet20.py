# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The W4 critic's architecture and weights in NumPy alone, so that the MXNet and the
PyTorch runs (separate processes; a torch run imports no MXNet) train the same network
from the same weights.

CIFAR-style ResNet-20 (He et al. 2016, section 4.2): a 3x3 convolution with 16 filters,
three stages of three basic blocks with 16, 32 and 64 filters (the first block of
stages 2 and 3 strides by 2 and projects its shortcut with a 1x1 convolution), BatchNorm
after every convolution, global average pooling, and one linear unit (a critic's score).
"""
import numpy as np

STAGES = (16, 32, 64)
BLOCKS = 3


def layout():
    """(name, kind, shape) of every weight in order: conv kernels (out, in, kh, kw),
    BatchNorm gamma and beta (channels,), the dense layer's weight (1, 64) and bias."""
    spec = [('stem.conv', 'conv', (16, 3, 3, 3))] + _bn('stem.bn', 16)
    channels = 16
    for s, width in enumerate(STAGES):
        for b in range(BLOCKS):
            stride = 2 if s > 0 and b == 0 else 1
            p = f'stage{s}.block{b}'
            spec += [(f'{p}.conv1', 'conv', (width, channels, 3, 3))] + _bn(f'{p}.bn1', width)
            spec += [(f'{p}.conv2', 'conv', (width, width, 3, 3))] + _bn(f'{p}.bn2', width)
            if stride != 1 or channels != width:
                spec += [(f'{p}.proj', 'conv', (width, channels, 1, 1))] + _bn(f'{p}.bnp', width)
            channels = width
    return spec + [('head.weight', 'dense', (1, 64)), ('head.bias', 'bias', (1,))]


def _bn(name, c):
    return [(f'{name}.gamma', 'gamma', (c,)), (f'{name}.beta', 'beta', (c,))]


def weights(seed=0):
    """name -> float32 array: He-normal kernels, gamma 1, beta 0."""
    rng = np.random.RandomState(seed)
    out = {}
    for name, kind, shape in layout():
        if kind in ('conv', 'dense'):
            fan_in = int(np.prod(shape[1:]))
            out[name] = (rng.randn(*shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        elif kind == 'gamma':
            out[name] = np.ones(shape, np.float32)
        else:
            out[name] = np.zeros(shape, np.float32)
    return out


def batch(seed=1, size=64):
    """Real and generated images (64, 3, 32, 32) and the interpolation weights (64, 1, 1, 1)."""
    rng = np.random.RandomState(seed)
    return (rng.randn(size, 3, 32, 32).astype(np.float32),
            rng.randn(size, 3, 32, 32).astype(np.float32),
            rng.rand(size, 1, 1, 1).astype(np.float32))
