"""Random real-shaped convolutional networks through the derivative blocks in float32 on
MXNet's default CPU path (oneDNN on), against float64 twins and central differences.

Run by tests/test_float32.py in a process of its own, so that a crash in an MXNet kernel
fails one named test instead of killing the suite.  Each case is written to stdout
before it runs (the last one printed is the one that crashed).

The networks are what users train: 3 input channels, 16 to 64 filters, a strided stem,
residual blocks with BatchNorm (inference or training mode), depthwise convolutions,
squeeze-and-excitation, max pooling, global average pooling and a Dense head.

usage: python tests/float32_properties.py [--examples 12] [--seed 0]
       python tests/float32_properties.py --critic {imperative,hybridized} [--steps 150]
"""
import argparse
import sys

import numpy as np
import mxnet as mx
from hypothesis import HealthCheck, given, settings, strategies as st
from mxnet import autograd, gluon, nd

import mxgradlayer as mg

# float32 against float64 (relative L2): ReLU masks that flip under float32 rounding
# move a derivative by up to a few 1e-3 in these networks (seen: 2.6e-3, mobilenet0.25)
FLOAT32_TOLERANCE = 2e-2
# float64 against central differences: the best of three steps (a step that crosses a
# ReLU kink is no oracle), relative to sum |g v| so that cancellation does not count.
# One network of the 400-case soak (batch 1, training BatchNorm) has a kink within
# 1e-7 of its point: 1.1e-3 off at 1e-6 and 1e-7, 1e-7 at 1e-8, where MXNet's own
# first-order gradient and the block's agree to 5e-16.
FD_TOLERANCE = 1e-6
STEPS = (1e-6, 1e-7, 1e-8)


class ResidualBlock(gluon.HybridBlock):
    """BN-ReLU-conv-BN-ReLU-conv plus the input (projected by a strided 1x1 conv when
    the block downsamples); optionally depthwise, optionally squeeze-and-excitation."""

    def __init__(self, filters, stride, depthwise, squeeze, **kwargs):
        super().__init__(**kwargs)
        self._squeeze = squeeze
        with self.name_scope():
            self.bn1, self.bn2 = gluon.nn.BatchNorm(), gluon.nn.BatchNorm()
            self.conv1 = gluon.nn.Conv2D(filters, 3, strides=stride, padding=1,
                                         groups=filters if depthwise else 1, use_bias=False)
            self.conv2 = gluon.nn.Conv2D(filters, 3, padding=1, use_bias=False)
            self.project = gluon.nn.Conv2D(filters, 1, strides=stride) if stride > 1 else None
            if squeeze:
                self.fc1 = gluon.nn.Dense(max(filters // 8, 2), activation='relu')
                self.fc2 = gluon.nn.Dense(filters, activation='sigmoid')

    def hybrid_forward(self, F, x):
        h = self.conv1(F.relu(self.bn1(x)))
        h = self.conv2(F.relu(self.bn2(h)))
        if self._squeeze:
            s = self.fc2(self.fc1(F.contrib.AdaptiveAvgPooling2D(h, output_size=1)))
            h = F.broadcast_mul(h, F.reshape(s, shape=(0, 0, 1, 1)))
        return h + (self.project(x) if self.project is not None else x)


@st.composite
def networks(draw):
    filters = draw(st.sampled_from([16, 32, 64]))
    blocks = [(draw(st.sampled_from([1, 2])), draw(st.booleans()), draw(st.booleans()))
              for _ in range(draw(st.integers(1, 2)))]
    return dict(filters=filters, blocks=blocks, stem_stride=draw(st.sampled_from([1, 2])),
                maxpool=draw(st.booleans()), size=draw(st.integers(8, 16)),
                batch=draw(st.integers(1, 3)), training=draw(st.booleans()),
                block=draw(st.sampled_from(['InputGradient', 'JVP', 'VJP', 'HVP'])),
                hybridize=draw(st.booleans()), seed=draw(st.integers(0, 10 ** 6)))


def build(case):
    mx.random.seed(case['seed'])
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(case['filters'], 3, strides=case['stem_stride'], padding=1))
    if case['maxpool']:
        net.add(gluon.nn.MaxPool2D(3, 2, 1))
    for stride, depthwise, squeeze in case['blocks']:
        net.add(ResidualBlock(case['filters'], stride, depthwise, squeeze))
    net.add(gluon.nn.BatchNorm(), gluon.nn.Activation('relu'), gluon.nn.GlobalAvgPool2D(),
            gluon.nn.Dense(3))
    net.initialize(mx.init.MSRAPrelu('in', 0.0))
    rng = np.random.default_rng(case['seed'])
    x = rng.uniform(-1, 1, size=(case['batch'], 3, case['size'], case['size']))
    net(nd.array(x, dtype='float32'))
    for name, p in net.collect_params().items():  # statistics as a trained net has them
        if name.endswith('running_mean') or name.endswith('beta'):
            p.set_data(nd.array(rng.uniform(-0.3, 0.3, p.shape), dtype='float32'))
        elif name.endswith('running_var') or name.endswith('gamma'):
            p.set_data(nd.array(rng.uniform(0.5, 1.5, p.shape), dtype='float32'))
    return net, x, rng


def derivative_block(case, net):
    blk = {'InputGradient': mg.InputGradient, 'JVP': mg.JVP, 'VJP': mg.VJP,
           'HVP': mg.HVP}[case['block']](HalfSquaredNorm(net) if case['block'] == 'HVP'
                                         else net)
    if case['hybridize']:
        blk.hybridize()
    return blk


class HalfSquaredNorm(gluon.HybridBlock):
    """|net(x)|^2 / 2 per sample: a head with a Hessian that is not zero."""

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        self.net = net

    def hybrid_forward(self, F, x):
        return F.sum(F.square(self.net(x)), axis=1, keepdims=True) * 0.5


def run(case, net, x, v, w, dtype):
    """The block's output and the parameter gradients of a loss on it, in ``dtype``."""
    X, V, W = (nd.array(a, dtype=dtype) for a in (x, v, w))
    blk = derivative_block(case, net)
    extra = {'InputGradient': [], 'JVP': [V], 'VJP': [W], 'HVP': [V]}[case['block']]
    params = [p for p in net.collect_params().values() if p.grad_req != 'null']
    with autograd.record(train_mode=case['training']):
        out = blk(X, *extra)
        loss = nd.mean(nd.square(out))  # a gradient penalty when out is a gradient
    loss.backward()
    return out.asnumpy().astype(np.float64), [p.grad().asnumpy().astype(np.float64)
                                              for p in params]


def flat(arrays):
    return np.concatenate([a.ravel() for a in arrays])


def l2_error(got, ref):
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


def best_pairing(exact, f, scale):
    return min(abs(exact - (f(h) - f(-h)) / (2 * h)) for h in STEPS) / max(scale, 1e-30)


def near_a_kink(case, net, x, v, w, out64, grads64, relative=1e-6):
    """Whether the float64 results move by the float32 tolerance when x moves by a
    relative 1e-6 (some tens of float32 roundings) either way: a kink (a ReLU input, a
    max-pooling tie) lies that close."""
    noise = np.random.default_rng(1).standard_normal(x.shape)
    for sign in (1.0, -1.0):
        out, grads = run(case, net, x * (1.0 + sign * relative * noise), v, w, 'float64')
        if max(l2_error(out, out64), l2_error(flat(grads), flat(grads64))) >= \
                FLOAT32_TOLERANCE / 2:
            return True
    return False


def check(case):
    print('case', case, flush=True)
    net, x, rng = build(case)
    v = rng.standard_normal(x.shape)
    out_shape = (case['batch'], 3)
    w = rng.standard_normal(out_shape)
    out32, grads32 = run(case, net, x, v, w, 'float32')
    net.cast('float64')
    out64, grads64 = run(case, net, x, v, w, 'float64')
    errors = (l2_error(out32, out64), l2_error(flat(grads32), flat(grads64)))
    if max(errors) >= FLOAT32_TOLERANCE and near_a_kink(case, net, x, v, w, out64, grads64):
        # float64's own derivative jumps within float32 rounding of x: which side float32
        # lands on is rounding, and the comparison is no oracle here (the soak found a
        # ReLU input of 4.5e-9 in float64 that MXNet's float32 BatchNorm made -1.6e-8,
        # moving MXNet's own float32 gradient by 4.9 %); differences check the point
        print('float32 vs float64 not compared: a kink within rounding', errors, flush=True)
    else:
        assert errors[0] < FLOAT32_TOLERANCE, \
            f'{case["block"]} float32 vs float64: {errors[0]:.3g}'
        assert errors[1] < FLOAT32_TOLERANCE, \
            f'parameter gradients float32 vs float64: {errors[1]:.3g}'

    # float64 against central differences of what the block differentiates, in its mode
    X, V = nd.array(x, dtype='float64'), nd.array(v, dtype='float64')
    target = HalfSquaredNorm(net) if case['block'] == 'HVP' else net
    if case['block'] == 'HVP':  # the HVP is the derivative of the input gradient along v
        grad = mg.InputGradient(target)

        def f(t):
            with autograd.record(train_mode=case['training']):
                return float((grad(X + t * V) * V).sum().asscalar())
        exact, scale = float((out64 * v).sum()), float(np.abs(out64 * v).sum())
    else:
        weights = nd.array(w, dtype='float64')

        def f(t):
            with autograd.record(train_mode=case['training']):
                return float((target(X + t * V) * weights).sum().asscalar())
        if case['block'] == 'InputGradient':  # of sum(net): weights of one
            weights = nd.ones(out_shape, dtype='float64')
            exact, scale = float((out64 * v).sum()), float(np.abs(out64 * v).sum())
        elif case['block'] == 'JVP':
            exact, scale = float((out64 * w).sum()), float(np.abs(out64 * w).sum())
        else:  # VJP: w^T J pairs with v
            exact, scale = float((out64 * v).sum()), float(np.abs(out64 * v).sum())
    err = best_pairing(exact, f, scale)
    assert err < FD_TOLERANCE, f'{case["block"]} float64 vs central differences: {err:.3g}'
    print(f'ok {case["block"]} float32 vs float64 {l2_error(out32, out64):.2g}, '
          f'fd {err:.2g}', flush=True)


def train_critic(hybridize, steps, batch=16, size=16, penalty_weight=10.0):
    """A WGAN-GP critic with BatchNorm in training mode (as WGAN-GP trains it), float32,
    Adam: real images are smooth blobs, fakes are noise.  Returns the Wasserstein
    estimates mean D(real) - mean D(fake) before and after training and the last mean
    gradient norm on the interpolates."""
    mx.random.seed(0)
    rng = np.random.default_rng(0)
    critic = gluon.nn.HybridSequential()
    critic.add(gluon.nn.Conv2D(16, 3, padding=1), gluon.nn.BatchNorm(),
               gluon.nn.LeakyReLU(0.2), gluon.nn.Conv2D(32, 3, strides=2, padding=1),
               gluon.nn.BatchNorm(), gluon.nn.LeakyReLU(0.2), gluon.nn.GlobalAvgPool2D(),
               gluon.nn.Dense(1))
    critic.initialize(mx.init.Xavier())
    penalty = mg.InputGradient(critic)
    if hybridize:
        critic.hybridize()
        penalty.hybridize()
    trainer = gluon.Trainer(critic.collect_params(), 'adam',
                            {'learning_rate': 1e-3, 'beta1': 0.5, 'beta2': 0.9})
    grid = np.linspace(-1, 1, size)

    def real():
        centres = rng.uniform(-0.5, 0.5, size=(batch, 3, 2))
        d2 = (grid[None, None, :, None] - centres[..., :1, None]) ** 2 + \
            (grid[None, None, None, :] - centres[..., 1:, None]) ** 2
        return nd.array(np.exp(-4 * d2), dtype='float32')

    def fake():
        return nd.array(rng.uniform(0, 1, size=(batch, 3, size, size)), dtype='float32')

    def estimate():
        with autograd.train_mode():  # batch statistics, as in training
            return float((critic(real()).mean() - critic(fake()).mean()).asscalar())
    before, norm = estimate(), float('nan')
    for _ in range(steps):
        r, f = real(), fake()
        eps = nd.array(rng.uniform(size=(batch, 1, 1, 1)), dtype='float32')
        mixed = eps * r + (1 - eps) * f
        with autograd.record():
            g = penalty(mixed)
            grad_norm = nd.sqrt(nd.sum(nd.square(g), axis=(1, 2, 3)) + 1e-12)
            loss = critic(f).mean() - critic(r).mean() + \
                penalty_weight * nd.mean(nd.square(grad_norm - 1))
        loss.backward()
        trainer.step(1)
        norm = float(grad_norm.mean().asscalar())
        assert np.isfinite(float(loss.asscalar())), 'the critic loss is not finite'
    return before, estimate(), norm


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--examples', type=int, default=12)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--critic', choices=['imperative', 'hybridized'],
                        help='train a WGAN-GP critic with BatchNorm instead')
    parser.add_argument('--steps', type=int, default=150)
    args = parser.parse_args()
    if args.critic:
        before, after, norm = train_critic(args.critic == 'hybridized', args.steps)
        print(f'critic {args.critic}: Wasserstein estimate {before:.3g} -> {after:.3g}, '
              f'mean gradient norm {norm:.3g}', flush=True)
        assert after > before + 0.5, 'the critic did not learn to separate real from fake'
        assert 0.3 < norm < 3.0, 'the penalty did not hold the gradient norm near 1'
        return

    @settings(max_examples=args.examples, deadline=None, derandomize=args.seed == 0,
              database=None, suppress_health_check=list(HealthCheck))
    @given(networks())
    def property_holds(case):
        check(case)
    property_holds()
    print('passed', args.examples, flush=True)


if __name__ == '__main__':
    sys.exit(main())
