# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The same workloads in PyTorch (eager, double backward), for side-by-side ratios.

Only used by ``benchmarks/run.py --torch``; install with ``pip install torch==2.13.0``.
"""
import math

import torch

import data

ACTIVATIONS = {'tanh': torch.nn.Tanh, 'sigmoid': torch.nn.Sigmoid}


def mlp(widths, act, d):
    """The MLP with benchmarks/data.py's weights (MXNet and JAX use the same)."""
    layers, units = [], d
    for i, w in enumerate(widths):
        layers.append(torch.nn.Linear(units, w))
        if i < len(widths) - 1:
            layers.append(ACTIVATIONS[act]())
        units = w
    linears = [m for m in layers if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for layer, (W, b) in zip(linears, data.mlp_weights(widths, d)):
            layer.weight.copy_(torch.from_numpy(W))
            layer.bias.copy_(torch.from_numpy(b))
    return torch.nn.Sequential(*layers)


def _train_step(params, loss_fn):
    opt = torch.optim.Adam(params, lr=1e-3)

    def step(report=False):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return float(loss.item()) if report else None
    return step


def w1(method):
    g = mlp(*data.W1_NET)
    u = lambda x: x * g(x) + 1  # noqa: E731
    x0 = torch.from_numpy(data.w1_points())

    def loss():
        if method == 'plain':
            return ((u(x0) - x0 ** 2 - 1) ** 2).mean()
        if method == 'fd':
            return (((u(x0 + 1e-4) - u(x0)) / 1e-4 - 2 * x0) ** 2).mean()
        x = x0.clone().requires_grad_(True)
        du, = torch.autograd.grad(u(x).sum(), x, create_graph=True)
        return ((du - 2 * x) ** 2).mean()
    return _train_step(g.parameters(), loss)


def _laplacian(net, x):
    x = x.clone().requires_grad_(True)
    y = net(x)
    g, = torch.autograd.grad(y.sum(), x, create_graph=True)
    lap = 0
    for i in range(x.shape[1]):
        gi, = torch.autograd.grad(g[:, i].sum(), x, create_graph=True)
        lap = lap + gi[:, i:i + 1]
    return lap


def _f(x):
    return 2 * math.pi ** 2 * torch.sin(math.pi * x[:, :1]) * torch.sin(math.pi * x[:, 1:2])


def w2(method):
    net = mlp(*data.W2_NET)
    a, b = (torch.from_numpy(p) for p in data.w2_points())

    def loss():
        if method == 'plain':
            return ((net(a) - _f(a)) ** 2).mean() + (net(b) ** 2).mean()
        return ((-_laplacian(net, a) - _f(a)) ** 2).mean() + (net(b) ** 2).mean()
    return _train_step(net.parameters(), loss)


def laplacian_cost(method, d):
    net = mlp(*data.lap_net(d))
    x = torch.from_numpy(data.lap_points(d))

    def loss():
        if method == 'plain':
            return (net(x) ** 2).mean()
        return (_laplacian(net, x) ** 2).mean()
    return _train_step(net.parameters(), loss)


def w3(method):
    net = mlp(*data.W3_NET)
    x0, v = (torch.from_numpy(p) for p in data.w3_points())

    def step(report=False):
        if method == 'plain':
            net.zero_grad(set_to_none=True)
            y = net(x0).sum()
            y.backward()
            return float(y.item()) if report else None
        x = x0.clone().requires_grad_(True)
        g, = torch.autograd.grad(net(x).sum(), x, create_graph=True)
        hv, = torch.autograd.grad((g * v).sum(), x)
        return float(hv.sum().item()) if report else None
    return step


class _Residual(torch.nn.Module):
    def __init__(self, channels, width, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, width, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        self.conv2 = torch.nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(width)
        project = stride != 1 or channels != width
        self.proj = torch.nn.Conv2d(channels, width, 1, stride, bias=False) if project else None
        self.bnp = torch.nn.BatchNorm2d(width) if project else None

    def forward(self, x):
        h = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(h + (self.bnp(self.proj(x)) if self.proj is not None else x))


def resnet20():
    """The W4 critic (benchmarks/resnet20.py), with the same NumPy weights as MXNet's."""
    import resnet20 as spec
    values = {k: torch.from_numpy(v) for k, v in spec.weights().items()}
    stem = [torch.nn.Conv2d(3, 16, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(16),
            torch.nn.ReLU()]
    layers = [('stem.conv', stem[0], 'stem.bn', stem[1])]
    blocks, channels = [], 16
    for s, width in enumerate(spec.STAGES):
        for b in range(spec.BLOCKS):
            block = _Residual(channels, width, 2 if s > 0 and b == 0 else 1)
            p = f'stage{s}.block{b}'
            layers += [(f'{p}.conv1', block.conv1, f'{p}.bn1', block.bn1),
                       (f'{p}.conv2', block.conv2, f'{p}.bn2', block.bn2)]
            if block.proj is not None:
                layers.append((f'{p}.proj', block.proj, f'{p}.bnp', block.bnp))
            blocks.append(block)
            channels = width
    head = torch.nn.Linear(64, 1)
    with torch.no_grad():
        for conv_name, conv, bn_name, bn in layers:
            conv.weight.copy_(values[conv_name])
            bn.weight.copy_(values[bn_name + '.gamma'])
            bn.bias.copy_(values[bn_name + '.beta'])
        head.weight.copy_(values['head.weight'])
        head.bias.copy_(values['head.bias'])
    return torch.nn.Sequential(*stem, *blocks, torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), head)


def w4(method):
    import resnet20 as spec
    net = resnet20()
    real, fake, eps = (torch.from_numpy(a) for a in spec.batch())

    def loss():
        value = net(fake).mean() - net(real).mean()
        if method == 'plain':
            return value
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        g, = torch.autograd.grad(net(x_hat).sum(), x_hat, create_graph=True)
        norm = torch.sqrt((g.flatten(1) ** 2).sum(dim=1) + 1e-12)
        return value + 10 * ((norm - 1) ** 2).mean()
    return _train_step(net.parameters(), loss)


def w4mean(method):
    """W4MEAN is W4 here: AdaptiveAvgPool2d(1) is a mean over space on PyTorch's
    kernels, which have no fallback to avoid (its pairing for the side-by-side)."""
    return w4(method)


WORKLOADS = {'W1': ['plain', 'layer', 'fd'], 'W2': ['plain', 'layer'],
             'LAP2': ['plain', 'layer'], 'LAP8': ['plain', 'layer'],
             'LAP32': ['plain', 'layer'], 'W3': ['plain', 'layer'],
             'W4': ['plain', 'layer'], 'W4MEAN': ['plain', 'layer']}
