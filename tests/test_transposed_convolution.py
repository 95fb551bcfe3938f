"""`rules.conv.transposed_convolution` (polyphase, pointwise and zero-spread forms)
against MXNet's own Convolution backward with respect to the data, which is right in
float64, over a grid of convolution geometries: 1-D, 2-D and 3-D, strides, dilations,
padding, groups and depthwise, sizes that do and do not fill the last window."""
import itertools

import numpy as np
import pytest
from mxnet import autograd, nd

from mxgradlayer.rules.conv import transposed_convolution


def _geometries():
    for n, k, s, d, p, (c, f, groups) in itertools.product(
            (1, 2), (1, 2, 3), (1, 2, 3), (1, 2), (0, 1, 2),
            ((2, 3, 1), (4, 6, 2), (3, 3, 3))):
        if p > d * (k - 1) // 2 + 1:
            continue
        yield n, (k,) * n, (s,) * n, (d,) * n, (p,) * n, c, f, groups
    # mixed per-axis geometries and 3-D
    yield 2, (3, 2), (2, 3), (1, 2), (1, 0), 2, 4, 1
    yield 2, (1, 3), (3, 1), (2, 1), (0, 1), 4, 4, 4
    yield 3, (2, 3, 1), (2, 1, 2), (1, 2, 1), (1, 1, 0), 2, 4, 2
    yield 3, (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), 3, 3, 3


CASES = list(_geometries())


def _check(n, kernel, stride, dilate, pad, channels, filters, groups, size):
    rng = np.random.default_rng(hash((kernel, stride, dilate, pad, size)) % 2 ** 32)
    spatial = (size,) * n
    x = nd.array(rng.standard_normal((2, channels) + spatial), dtype='float64')
    w = nd.array(rng.standard_normal((filters, channels // groups) + kernel), dtype='float64')
    x.attach_grad()
    conv = dict(kernel=kernel, stride=stride, dilate=dilate, pad=pad, num_filter=filters,
                num_group=groups, no_bias=True)
    with autograd.record():
        y = nd.Convolution(x, w, **conv)
    if 0 in y.shape:
        return
    g = nd.array(rng.standard_normal(y.shape), dtype='float64')
    y.backward(g)
    ours = transposed_convolution(nd, g, w, kernel, stride, dilate, pad, groups, filters,
                                  channels, spatial, tuple(y.shape[2:]))
    ref = x.grad.asnumpy()
    assert ours.shape == ref.shape
    err = np.max(np.abs(ours.asnumpy() - ref)) / max(np.max(np.abs(ref)), 1e-30)
    assert err < 1e-12, (kernel, stride, dilate, pad, channels, filters, groups, size, err)


@pytest.mark.parametrize('n,kernel,stride,dilate,pad,channels,filters,groups', CASES)
def test_transposed_convolution_is_the_convolution_backward(n, kernel, stride, dilate, pad,
                                                            channels, filters, groups):
    for size in (5, 8) if n < 3 else (5,):
        _check(n, kernel, stride, dilate, pad, channels, filters, groups, size)


@pytest.mark.parametrize('kernel,stride,pad', [(3, 2, 1), (1, 2, 0), (2, 3, 0)])
@pytest.mark.parametrize('size', [60, 200])
def test_wide_last_axis_both_interleaves(kernel, stride, pad, size):
    """The phases (and the zero spread) are interleaved along the last axis by a
    permutation-matrix product up to 128 columns and by stack beyond: both forms, in 1-D
    and 2-D, against MXNet's backward."""
    _check(1, (kernel,), (stride,), (1,), (pad,), 2, 3, 1, size)
    _check(2, (kernel, kernel), (stride, stride), (1, 1), (pad, pad), 2, 3, 1, size)
