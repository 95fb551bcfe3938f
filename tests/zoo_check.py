"""One network of mxnet.gluon.model_zoo.vision through the derivative blocks, float32 with
MXNet's default CPU path (oneDNN on), against a float64 twin and central differences.

Run by tests/test_model_zoo.py in a process of its own (a crash then fails one test with
a name).  Prints ``stage <name>`` before each stage, so that a crash names where it
happened, and one ``result <json>`` line with every measured figure; the assertions are
the test's.

usage: python tests/zoo_check.py NETWORK [--hvp-jvp] [--thorough] [--batch 2]
"""
import argparse
import gc
import json
import resource
import sys
import time

import numpy as np
import mxnet as mx
from mxnet import autograd, nd
from mxnet.gluon.model_zoo import vision

import mxgradlayer as mg
from mxnet.gluon import HybridBlock

# A difference quotient across a kink is no oracle.  The network's output is continuous
# and piecewise linear in its input (ReLU, max pooling: millions of kinks), so a
# one-sided difference that reaches no kink is exact up to rounding, and a wrong
# derivative matches neither side at any step: the check takes the better of the
# forward and backward quotients at each step, and the best step.  Central differences
# at one step missed often: mobilenet0.25, float64, error relative to sum |w J v|, 4e-4
# at 1e-6 and 1e-7, 5e-8 at 1e-8, 3e-7 at 1e-9 (rounding).  The input gradient, and so
# the gradient penalty as a function of the parameters, jumps where a mask flips, and a
# step that reaches a jump costs jump / h (mobilenet0.25's penalty: 0.16 at 1e-4, 16 at
# 1e-7, 9e-11 at 1e-8).
# (taken in turn until one side reaches no kink: a correct derivative usually stops at
# the first; resnet152_v2's penalty, with tens of millions of units, crossed jumps on
# both sides at 1e-8 and 1e-9)
KINKED_STEPS = (1e-7, 1e-8, 1e-9)
JUMPING_STEPS = (1e-8, 1e-9, 1e-10, 1e-11)
# along a last Dense layer alone the penalty is exactly quadratic (the features and
# their masks do not move), so a central difference is exact at any step, and a large
# one keeps rounding out: at 1e-4, resnet152_v2's was off by 4.9e-6.  Where a ReLU
# follows the last layer (squeezenet's classifier convolution) it is not, and 1e-2 was
# off by 3.7e-3: the kinked steps are tried too, the best counts.
SMOOTH_STEPS = (1e-2,)
EPS64 = np.finfo(np.float64).eps


_START = time.perf_counter()


def stage(name):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(f'stage {name} ({time.perf_counter() - _START:.1f} s, peak {peak:.1f} GB so far)',
          flush=True)


def input_size(name):
    return 299 if name.startswith('inception') else 224


def build(name, batch, seed=0):
    mx.random.seed(seed)
    net = vision.get_model(name, classes=10)
    # He initialisation, for which these ReLU networks are made: with Xavier's, the
    # logits of mobilenet0.25 are 4e-16 and those of squeezenet 3e-4
    net.initialize(mx.init.MSRAPrelu('in', 0.0))
    rng = np.random.default_rng(seed)
    size = input_size(name)
    x = rng.uniform(-1, 1, size=(batch, 3, size, size))
    net(nd.array(x, dtype='float32'))  # deferred initialisation, as a user's first call
    return net, x, rng


def one_sided_error(exact, f, steps, scale, f0=None, enough=1e-7):
    """The best one-sided difference's distance to ``exact`` relative to ``scale``, the
    forward and then the backward one at each step, stopping at the first below
    ``enough`` (a correct derivative stops at the first side that reaches no kink; a
    wrong one is tried on both sides of every step); and the rounding allowance of the
    quotients (a few eps |f| / h relative to scale)."""
    f0 = f(0.0) if f0 is None else f0
    scale = max(scale, 1e-30)
    best, h = float('inf'), steps[0]
    for h in steps:
        for side in (1.0, -1.0):
            quotient = (f(side * h) - f0) / (side * h)
            best = min(best, abs(exact - quotient) / scale)
            if best < enough:
                return best, 8 * EPS64 * abs(f0) / h / scale
    return best, 8 * EPS64 * abs(f0) / h / scale


def central_error(exact, f, steps, scale):
    """The best central difference's distance to ``exact`` (for smooth functions)."""
    return min(abs(exact - (f(h) - f(-h)) / (2 * h)) for h in steps) / max(scale, 1e-30)


class HalfSquaredNorm(HybridBlock):
    """|net(x)|^2 / 2 per sample: its input Hessian J^T J is not zero, where the model-zoo
    networks themselves are piecewise linear (ReLU, clip, max pooling) and have H = 0."""

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        self.net = net

    def hybrid_forward(self, F, x):
        return F.sum(F.square(self.net(x)), axis=1, keepdims=True) * 0.5


def l2_error(got, ref):
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


def trainable(net):
    return [p for p in net.collect_params().values() if p.grad_req != 'null']


def penalty_loss(blk, x):
    return nd.mean(nd.square(blk(x)))


def penalty_grads(net, blk, x):
    """Parameter gradients of the gradient penalty mean(|InputGradient(net)(x)|^2)."""
    with autograd.record(train_mode=False):
        loss = penalty_loss(blk, x)
    loss.backward()
    return float(loss.asscalar()), [p.grad().asnumpy() for p in trainable(net)]


def l2_error_of(got, ref):
    """``l2_error`` over lists of arrays (parameter gradients, float32 or float64), in
    float64 but without float64 copies: VGG's 133 million gradients made those a fifth
    of its run."""
    diff = norm = 0.0
    for g, r in zip(got, ref):
        d = np.subtract(g, r, dtype=np.float64).ravel()
        r = r.astype(np.float64, copy=False).ravel()
        diff, norm = diff + float(d @ d), norm + float(r @ r)
    return float(np.sqrt(diff / max(norm, 1e-300)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('network')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--hvp-jvp', action='store_true', help='also check HVP and JVP')
    parser.add_argument('--thorough', action='store_true',
                        help="also differentiate along the last layer's parameters alone")
    args = parser.parse_args()
    res = {'network': args.network}
    net, x, rng = build(args.network, args.batch)
    x32 = nd.array(x, dtype='float32')
    v = rng.standard_normal(x.shape)
    w = rng.standard_normal((args.batch, 10))  # pairs with the logits

    stage('float32 InputGradient imperative')
    g32 = mg.InputGradient(net)(x32).asnumpy()
    stage('float32 InputGradient hybridized')
    hyb = mg.InputGradient(net)
    hyb.hybridize(static_alloc=True, static_shape=True)
    g32h = hyb(x32).asnumpy()
    res['hybridized_vs_imperative'] = l2_error(g32h, g32)
    del hyb  # (each block frees its graph and buffers before the next stage: VGG's
    gc.collect()  # hybridized gradient-penalty step alone takes 3.2 GB)

    stage('float32 gradient penalty imperative')
    blk = mg.InputGradient(net)
    _, pg32 = penalty_grads(net, blk, x32)
    del blk
    gc.collect()
    stage('float32 gradient penalty hybridized')
    hblk = mg.InputGradient(net)
    hblk.hybridize()
    _, pg32h = penalty_grads(net, hblk, x32)
    res['penalty_hybridized_vs_imperative'] = l2_error_of(pg32h, pg32)
    del hblk, pg32h
    gc.collect()
    if args.hvp_jvp:
        stage('float32 JVP and HVP')
        head = HalfSquaredNorm(net)
        v32 = nd.array(v, dtype='float32')
        jvp32 = mg.JVP(net)(x32, v32).asnumpy()
        hvp_blk = mg.HVP(head)
        hvp_blk.hybridize()
        hvp32 = hvp_blk(x32, v32).asnumpy()
        hvp32_rr = mg.HVP(head, mode='rev_rev')(x32, v32).asnumpy()
        del hvp_blk
        gc.collect()

    stage('float64 twin')
    net.cast('float64')
    x64 = nd.array(x, dtype='float64')
    g64 = mg.InputGradient(net)(x64).asnumpy()
    res['float32_vs_float64'] = l2_error(g32, g64)
    res['float32_hybridized_vs_float64'] = l2_error(g32h, g64)

    stage('float64 differences of the network')
    v64 = nd.array(v, dtype='float64')
    net.hybridize()  # the differences evaluate it many times

    def along(t):
        return float(net(x64 + t * v64).sum().asscalar())
    res['float64_vs_fd'], res['float64_vs_fd_rounding'] = one_sided_error(
        float((g64 * v).sum()), along, KINKED_STEPS, float(np.abs(g64 * v).sum()))

    stage('float64 gradient penalty')
    blk64 = mg.InputGradient(net)
    blk64.hybridize()  # traced once for the differences below
    loss64, pg64 = penalty_grads(net, blk64, x64)
    res['penalty_float32_vs_float64'] = l2_error_of(pg32, pg64)
    del pg32
    gc.collect()

    stage('float64 gradient penalty differences')
    params = trainable(net)
    originals = [p.data().copy() for p in params]
    # the last layer's own parameters (its weight, and its bias if it has one)
    layer = params[-1].name.rsplit('_', 1)[0]
    last = {id(p) for p in params if p.name.rsplit('_', 1)[0] == layer}
    grads = {id(p): g for p, g in zip(params, pg64)}  # float64 numpy
    del pg64

    def direction(only_last):
        """(parameter, its value, its direction as NDArray), <grad, d> and sum |grad d|.
        In numpy: MXNet's float64 random and reductions took 17 s of VGG's 133 million."""
        moved, exact, scale = [], 0.0, 0.0
        for p, o in zip(params, originals):
            if only_last and id(p) not in last:
                continue
            d = rng.standard_normal(p.shape, dtype=np.float32).astype(np.float64)
            d *= float(nd.abs(o).mean().asscalar()) + 1e-2
            g = grads[id(p)]
            exact += float(g.ravel() @ d.ravel())
            scale += float(np.abs(g * d).sum())
            moved.append((p, o, nd.array(d, dtype='float64')))
        return moved, exact, scale

    def penalty_along(moved):
        def f(t):
            for p, o, d in moved:
                p.set_data(o + t * d)
            return float(penalty_loss(blk64, x64).asscalar())
        return f
    try:
        moved, exact, scale = direction(False)
        res['penalty_float64_vs_fd_all'], res['penalty_float64_vs_fd_all_rounding'] = \
            one_sided_error(exact, penalty_along(moved), JUMPING_STEPS, scale, f0=loss64)
        if args.thorough:
            moved, exact, scale = direction(True)
            res['penalty_float64_vs_fd_last'] = central_error(
                exact, penalty_along(moved), SMOOTH_STEPS + KINKED_STEPS, scale)
    finally:
        for p, o in zip(params, originals):
            p.set_data(o)

    if args.hvp_jvp:
        stage('float64 JVP and HVP')
        jvp64 = mg.JVP(net)(x64, v64).asnumpy()
        hvp64 = mg.HVP(head)(x64, v64).asnumpy()
        res['jvp_float32_vs_float64'] = l2_error(jvp32, jvp64)
        res['hvp_float32_vs_float64'] = l2_error(hvp32, hvp64)
        res['hvp_rev_rev_vs_fwd_rev'] = l2_error(hvp32_rr, hvp32)
        wd = nd.array(w, dtype='float64')
        res['jvp_float64_vs_fd'], res['jvp_float64_vs_fd_rounding'] = one_sided_error(
            float((jvp64 * w).sum()),
            lambda t: float((net(x64 + t * v64) * wd).sum().asscalar()),
            KINKED_STEPS, float(np.abs(jvp64 * w).sum()))
        grad_blk = mg.InputGradient(head)
        grad_blk.hybridize()

        def grad_along(t):
            return float((grad_blk(x64 + t * v64) * v64).sum().asscalar())
        res['hvp_float64_vs_fd'], res['hvp_float64_vs_fd_rounding'] = one_sided_error(
            float((hvp64 * v).sum()), grad_along, JUMPING_STEPS,
            float(np.abs(hvp64 * v).sum()))
    stage('done')
    print('result', json.dumps(res), flush=True)


if __name__ == '__main__':
    sys.exit(main())
