#!/usr/bin/env python3
"""Write the golden fixtures in fixtures/golden/ from PyTorch.

Usage: python tools/golden.py   (needs `pip install torch numpy`)

Every case draws its inputs from a generator seeded by the case's name, so rerunning the
script with the same PyTorch version rewrites identical files, and adding a case leaves
the others untouched.

Each fixture is one JSON file:

    {"meta": {"op": ..., parameters ...},
     "tensors": {"name": {"shape": [...], "data": [...]}, ...}}

with `data` flattened in row-major order. Inputs are float32 values (written as the
shortest decimal that reads back as that float32 through a float64 parse); the operator
cases are then evaluated by PyTorch in float64, so their outputs and gradients are the
exact-arithmetic answer to within float64 rounding and are written as full float64
decimals. Integer tensors (targets, argmax positions) are written as integers. Every
backward pass starts from a random upstream gradient `grad_output`, i.e. the gradients
are those of `loss = (out * grad_output).sum()`.

The optimizer trajectories run in float32, as training does; the learning-rate schedules
are plain Python floats.
"""

import json
import math
import pathlib
import zlib

import numpy as np
import torch
import torch.nn.functional as F

OUT_DIR = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "golden"
LINE_WIDTH = 100
OPTIMIZER_KEYS = ("lr", "momentum", "dampening", "nesterov", "weight_decay", "betas", "eps",
                  "amsgrad", "maximize", "decoupled_weight_decay")


class Case:
    """One fixture file: its seeded generator, metadata and tensors."""

    def __init__(self, name, op, **meta):
        self.name = name
        self.gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        self.meta = {"op": op, **meta}
        self.tensors = {}

    # -- random inputs, all exactly representable in float32, returned as float64 ------

    def randn(self, *shape, scale=1.0, shift=0.0, grad=False):
        """Normal values (times scale, plus shift) rounded to float32, as float64."""
        t = torch.randn(shape, generator=self.gen, dtype=torch.float32) * scale + shift
        return self._leaf(t, grad)

    def uniform(self, *shape, low, high, grad=False):
        """Uniform values in [low, high) rounded to float32, as float64."""
        t = torch.rand(shape, generator=self.gen, dtype=torch.float32) * (high - low) + low
        return self._leaf(t, grad)

    def distinct(self, *shape, grad=False):
        """A random arrangement of distinct multiples of 1/8, so no window has a tie."""
        n = math.prod(shape)
        perm = torch.randperm(n, generator=self.gen).to(torch.float32)
        t = ((perm - n / 2) / 8).reshape(shape)
        return self._leaf(t, grad)

    def slopes(self, channels, grad=False):
        """Rotated-activation slopes: |a| in [tan 35deg, tan 55deg], random sign."""
        mag = torch.rand(channels, generator=self.gen, dtype=torch.float32) * 0.728 + 0.7
        sign = torch.randint(0, 2, (channels,), generator=self.gen).to(torch.float32) * 2 - 1
        return self._leaf(mag * sign, grad)

    @staticmethod
    def _leaf(t32, grad):
        t = t32.to(torch.float32).to(torch.float64)
        return t.requires_grad_(grad)

    # -- recording -----------------------------------------------------------------

    def input(self, name, t):
        """Record a float32-valued input (or an integer tensor)."""
        self.tensors[name] = ("input", t.detach().clone())

    def output(self, name, t):
        """Record a computed result, written with full float64 precision."""
        self.tensors[name] = ("output", t.detach().clone())

    def write(self):
        lines = ["{", '  "meta": ' + json.dumps(self.meta) + ",", '  "tensors": {']
        entries = []
        for name, (role, t) in self.tensors.items():
            numbers = encode(t, role)
            entries.append(
                f'    "{name}": {{"shape": {json.dumps(list(t.shape))}, "data": [\n'
                + wrap(numbers)
                + "\n    ]}"
            )
        lines.append(",\n".join(entries))
        lines += ["  }", "}", ""]
        text = "\n".join(lines)
        verify(text, self.tensors)
        (OUT_DIR / f"{self.name}.json").write_text(text)


def encode(t, role):
    """The JSON number texts of a tensor's values, flattened row-major."""
    if not t.dtype.is_floating_point:
        return [str(int(v)) for v in t.reshape(-1).tolist()]
    values = t.to(torch.float64).reshape(-1).numpy()
    if not np.all(np.isfinite(values)):
        raise ValueError("fixtures hold finite values only")
    if role == "output":
        return [repr(float(v)) for v in values]
    as32 = values.astype(np.float32)
    if not np.array_equal(as32.astype(np.float64), values):
        raise ValueError("an input is not exactly representable in float32")
    texts = [str(v) for v in as32]
    for text, v in zip(texts, as32):
        # NOTE: readers parse the decimal into a float64 and then round to float32. Check
        # that this lands on the same float32 even if the parser is one float64 ulp off.
        d = float(text)
        for near in (np.nextafter(d, -np.inf), d, np.nextafter(d, np.inf)):
            if np.float32(near) != v:
                raise ValueError(f"{text} does not read back as float32 {v!r}")
    return texts


def wrap(numbers):
    """Numbers joined by commas, broken into lines of at most LINE_WIDTH characters."""
    lines, current = [], "      "
    for i, text in enumerate(numbers):
        piece = text + ("," if i + 1 < len(numbers) else "")
        if len(current) + len(piece) + 1 > LINE_WIDTH and current.strip():
            lines.append(current.rstrip())
            current = "      "
        current += piece + " "
    lines.append(current.rstrip())
    return "\n".join(lines)


def verify(text, tensors):
    """Parse the written JSON back and compare it with what was recorded."""
    parsed = json.loads(text)["tensors"]
    for name, (role, t) in tensors.items():
        data = parsed[name]["data"]
        assert parsed[name]["shape"] == list(t.shape), name
        assert len(data) == t.numel(), name
        want = t.to(torch.float64).reshape(-1).numpy()
        got = np.array(data, dtype=np.float64)
        if role == "input" and t.dtype.is_floating_point:
            got = got.astype(np.float32).astype(np.float64)
        assert np.array_equal(got, want), name


def backward(case, out, *leaves):
    """Backpropagate a random upstream gradient through out; record it."""
    g = case.randn(*out.shape)
    case.input("grad_output", g)
    (out * g).sum().backward()
    return [leaf.grad for leaf in leaves]


# -- convolution and linear ---------------------------------------------------------------


def conv2d(name, batch, cin, cout, in_hw, kernel, stride, pad):
    case = Case(
        name,
        "conv2d",
        description="output = conv2d(input, weight, bias) as torch.nn.functional.conv2d",
        batch=batch,
        in_channels=cin,
        out_channels=cout,
        in_h=in_hw[0],
        in_w=in_hw[1],
        kernel_h=kernel[0],
        kernel_w=kernel[1],
        stride_h=stride[0],
        stride_w=stride[1],
        pad_h=pad[0],
        pad_w=pad[1],
    )
    x = case.randn(batch, cin, *in_hw, grad=True)
    w = case.randn(cout, cin, *kernel, scale=0.5, grad=True)
    b = case.randn(cout, grad=True)
    out = F.conv2d(x, w, b, stride=stride, padding=pad)
    for key, value in [("input", x), ("weight", w), ("bias", b)]:
        case.input(key, value)
    case.output("output", out)
    gx, gw, gb = backward(case, out, x, w, b)
    case.output("grad_input", gx)
    case.output("grad_weight", gw)
    case.output("grad_bias", gb)
    case.write()


def linear():
    rows, fin, fout = 5, 7, 4
    case = Case(
        "linear",
        "linear",
        description="output = input weight^T + bias, weight stored [out_features, in_features]",
        rows=rows,
        in_features=fin,
        out_features=fout,
    )
    x = case.randn(rows, fin, grad=True)
    w = case.randn(fout, fin, scale=0.5, grad=True)
    b = case.randn(fout, grad=True)
    out = F.linear(x, w, b)
    for key, value in [("input", x), ("weight", w), ("bias", b)]:
        case.input(key, value)
    case.output("output", out)
    gx, gw, gb = backward(case, out, x, w, b)
    case.output("grad_input", gx)
    case.output("grad_weight", gw)
    case.output("grad_bias", gb)
    case.write()


# -- pooling ------------------------------------------------------------------------------


def pool_meta(batch, channels, in_hw, kernel, stride, pad):
    return dict(
        batch=batch,
        channels=channels,
        in_h=in_hw[0],
        in_w=in_hw[1],
        kernel_h=kernel,
        kernel_w=kernel,
        stride_h=stride,
        stride_w=stride,
        pad_h=pad,
        pad_w=pad,
    )


def max_pool2d(name, batch, channels, in_hw, kernel, stride, pad):
    case = Case(
        name,
        "max_pool2d",
        description="torch.nn.functional.max_pool2d (floor mode); inputs are tie-free; "
        "argmax is the index iy * in_w + ix within the input plane",
        **pool_meta(batch, channels, in_hw, kernel, stride, pad),
    )
    x = case.distinct(batch, channels, *in_hw, grad=True)
    out, idx = F.max_pool2d(x, kernel, stride, pad, return_indices=True)
    case.input("input", x)
    case.output("output", out)
    case.input("argmax", idx)
    (gx,) = backward(case, out, x)
    case.output("grad_input", gx)
    case.write()


def avg_pool2d(name, batch, channels, in_hw, kernel, stride, pad):
    case = Case(
        name,
        "avg_pool2d",
        description="torch.nn.functional.avg_pool2d, count_include_pad=True (floor mode)",
        **pool_meta(batch, channels, in_hw, kernel, stride, pad),
    )
    x = case.randn(batch, channels, *in_hw, grad=True)
    out = F.avg_pool2d(x, kernel, stride, pad, count_include_pad=True)
    case.input("input", x)
    case.output("output", out)
    (gx,) = backward(case, out, x)
    case.output("grad_input", gx)
    case.write()


def global_avg_pool2d():
    batch, channels, h, w = 2, 3, 4, 5
    case = Case(
        "global_avg_pool2d",
        "global_avg_pool2d",
        description="output[n, c] = mean of input[n, c, :, :]",
        batch=batch,
        channels=channels,
        in_h=h,
        in_w=w,
    )
    x = case.randn(batch, channels, h, w, grad=True)
    out = x.mean(dim=(2, 3))
    case.input("input", x)
    case.output("output", out)
    (gx,) = backward(case, out, x)
    case.output("grad_input", gx)
    case.write()


# -- batch normalisation ------------------------------------------------------------------


def batch_norm_train(name, shape):
    eps, momentum = 1e-5, 0.1
    batch, channels = shape[0], shape[1]
    plane = math.prod(shape[2:])
    case = Case(
        name,
        "batch_norm_train",
        description="torch.nn.functional.batch_norm, training=True: batch statistics per "
        "channel (biased variance for the output, unbiased for running_var); "
        "save_invstd = 1 / sqrt(biased var + eps)",
        input_shape=list(shape),
        batch=batch,
        channels=channels,
        plane=plane,
        eps=eps,
        momentum=momentum,
    )
    x = case.randn(*shape, scale=2.0, shift=0.5, grad=True)
    gamma = case.uniform(channels, low=0.5, high=1.5, grad=True)
    beta = case.randn(channels, grad=True)
    running_mean = case.randn(channels, scale=0.5)
    running_var = case.uniform(channels, low=0.5, high=2.0)
    for key, value in [
        ("input", x),
        ("gamma", gamma),
        ("beta", beta),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ]:
        case.input(key, value)
    rm, rv = running_mean.clone(), running_var.clone()
    out = F.batch_norm(x, rm, rv, gamma, beta, training=True, momentum=momentum, eps=eps)
    dims = [0] + list(range(2, len(shape)))
    case.output("output", out)
    case.output("save_mean", x.mean(dim=dims))
    case.output("save_invstd", 1 / torch.sqrt(x.var(dim=dims, unbiased=False) + eps))
    case.output("running_mean_after", rm)
    case.output("running_var_after", rv)
    gx, gg, gb = backward(case, out, x, gamma, beta)
    case.output("grad_input", gx)
    case.output("grad_gamma", gg)
    case.output("grad_beta", gb)
    case.write()


def batch_norm_eval(name, shape):
    eps = 1e-5
    batch, channels = shape[0], shape[1]
    plane = math.prod(shape[2:])
    case = Case(
        name,
        "batch_norm_eval",
        description="torch.nn.functional.batch_norm, training=False: running statistics "
        "are constants",
        input_shape=list(shape),
        batch=batch,
        channels=channels,
        plane=plane,
        eps=eps,
    )
    x = case.randn(*shape, scale=2.0, shift=0.5, grad=True)
    gamma = case.uniform(channels, low=0.5, high=1.5, grad=True)
    beta = case.randn(channels, grad=True)
    running_mean = case.randn(channels, scale=0.5)
    running_var = case.uniform(channels, low=0.5, high=2.0)
    for key, value in [
        ("input", x),
        ("gamma", gamma),
        ("beta", beta),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ]:
        case.input(key, value)
    out = F.batch_norm(x, running_mean, running_var, gamma, beta, training=False, eps=eps)
    case.output("output", out)
    gx, gg, gb = backward(case, out, x, gamma, beta)
    case.output("grad_input", gx)
    case.output("grad_gamma", gg)
    case.output("grad_beta", gb)
    case.write()


# -- activations --------------------------------------------------------------------------


def rotated(name, activation, shape):
    batch, channels = shape[0], shape[1]
    plane = math.prod(shape[2:])
    case = Case(
        name,
        f"rotated_{activation}",
        description=f"output = slope.view(1, C, 1...) * {activation}(input); "
        + ("gelu is the exact erf form" if activation == "gelu" else "relu = max(0, x)"),
        input_shape=list(shape),
        batch=batch,
        channels=channels,
        plane=plane,
    )
    x = case.randn(*shape, scale=1.5, grad=True)
    a = case.slopes(channels, grad=True)
    f = F.relu if activation == "relu" else F.gelu
    out = a.view(1, channels, *([1] * (len(shape) - 2))) * f(x)
    case.input("input", x)
    case.input("slope", a)
    case.output("output", out)
    gx, ga = backward(case, out, x, a)
    case.output("grad_input", gx)
    case.output("grad_slope", ga)
    case.write()


def gelu():
    case = Case(
        "gelu",
        "gelu",
        description="output = x * 0.5 * (1 + erf(x / sqrt 2)), torch.nn.functional.gelu "
        "with approximate='none'; inputs span -8..8 on a grid of 0.5 plus random values",
    )
    grid = torch.linspace(-8, 8, 33, dtype=torch.float32)
    rand = torch.randn(31, generator=case.gen, dtype=torch.float32) * 3
    x = torch.cat([grid, rand]).reshape(4, 16).to(torch.float64).requires_grad_(True)
    out = F.gelu(x)
    case.input("input", x)
    case.output("output", out)
    (gx,) = backward(case, out, x)
    case.output("grad_input", gx)
    case.write()


# -- softmax and cross-entropy ------------------------------------------------------------


def softmax_input(case, cols):
    """Rows at several scales and offsets, including a constant row."""
    rows = [
        case.randn(cols),
        case.randn(cols, scale=10.0),
        case.randn(cols, shift=80.0),
        case.randn(cols, shift=-80.0),
        torch.full((cols,), 3.0, dtype=torch.float64),
    ]
    return torch.stack(rows).requires_grad_(True)


def softmax(name, log):
    rows, cols = 5, 7
    case = Case(
        name,
        "log_softmax" if log else "softmax",
        description=("log_softmax" if log else "softmax") + " over the last axis of a "
        "rows x cols matrix; row 2 is offset by +80, row 3 by -80, row 4 is constant",
        rows=rows,
        cols=cols,
    )
    x = softmax_input(case, cols)
    out = F.log_softmax(x, dim=1) if log else F.softmax(x, dim=1)
    case.input("input", x)
    case.output("output", out)
    (gx,) = backward(case, out, x)
    case.output("grad_input", gx)
    case.write()


def cross_entropy():
    rows, cols = 6, 5
    case = Case(
        "cross_entropy",
        "cross_entropy",
        description="loss = mean over rows of -log_softmax(logits)[r, targets[r]] "
        "(torch.nn.functional.cross_entropy, reduction='mean'); probs = softmax(logits); "
        "grad_output is the upstream gradient of the scalar loss",
        rows=rows,
        cols=cols,
    )
    logits = case.randn(rows, cols, scale=2.0, grad=True)
    targets = torch.randint(0, cols, (rows,), generator=case.gen)
    loss = F.cross_entropy(logits, targets, reduction="mean")
    case.input("logits", logits)
    case.input("targets", targets)
    case.output("probs", F.softmax(logits, dim=1))
    case.output("loss", loss)
    (gl,) = backward(case, loss, logits)
    case.output("grad_logits", gl)
    case.write()


# -- adversarial attacks ------------------------------------------------------------------


def input_gradient():
    batch, classes, eps, low, high = 3, 4, 0.25, -0.5, 2.5
    case = Case(
        "input_gradient",
        "input_gradient",
        description="loss = cross_entropy(linear(flatten(max_pool2d(slope * relu(conv2d(input, "
        "conv_weight, conv_bias)), 2)), linear_weight, linear_bias), targets), mean over rows; "
        "grad_input = d loss / d input; fgsm = clamp(input + epsilon * sign(grad_input), low, high)",
        batch=batch,
        classes=classes,
        epsilon=eps,
        low=low,
        high=high,
    )
    x = case.uniform(batch, 1, 6, 6, low=low, high=high, grad=True)
    w = case.randn(3, 1, 3, 3, scale=0.5)
    b = case.randn(3, scale=0.1)
    a = case.slopes(3)
    lw = case.randn(classes, 12, scale=0.5)
    lb = case.randn(classes, scale=0.1)
    targets = torch.randint(0, classes, (batch,), generator=case.gen)
    hidden = a.view(1, 3, 1, 1) * F.relu(F.conv2d(x, w, b))
    logits = F.linear(F.max_pool2d(hidden, 2).flatten(1), lw, lb)
    loss = F.cross_entropy(logits, targets, reduction="mean")
    for key, value in [("input", x), ("conv_weight", w), ("conv_bias", b), ("slope", a),
                       ("linear_weight", lw), ("linear_bias", lb), ("targets", targets)]:
        case.input(key, value)
    case.output("loss", loss)
    (gx,) = torch.autograd.grad(loss, x)
    case.output("grad_input", gx)
    case.output("fgsm", torch.clamp(x + eps * torch.sign(gx), low, high))
    case.write()


# -- optimizers and schedules -------------------------------------------------------------


def optimizer(name, make, **hyper):
    steps, size = 5, 6
    case = Case(
        name,
        "optimizer",
        description="parameters after each step of torch.optim, in float32: step t uses "
        "grads[t]; params[t] is the vector after that step",
        optimizer=make.__name__,
        steps=steps,
    )
    p0 = torch.randn(size, generator=case.gen, dtype=torch.float32)
    grads = torch.randn(steps, size, generator=case.gen, dtype=torch.float32)
    p = p0.clone().requires_grad_(True)
    opt = make([p], **hyper)
    # NOTE: record every hyperparameter in effect, defaults included, so the fixture
    # does not depend on PyTorch's defaults staying the same.
    used = {k: v for k, v in opt.defaults.items() if k in OPTIMIZER_KEYS}
    case.meta.update({k: list(v) if isinstance(v, tuple) else v for k, v in used.items()})
    after = []
    for t in range(steps):
        p.grad = grads[t].clone()
        opt.step()
        after.append(p.detach().clone())
    case.input("initial_params", p0)
    case.input("grads", grads)
    case.output("params", torch.stack(after))
    case.write()


def schedule(name, make, **hyper):
    epochs, base_lr = 13, 0.1
    case = Case(
        name,
        "lr_schedule",
        description="learning rate at epochs 0..12 (before any step, then after each "
        "scheduler.step()) of torch.optim.lr_scheduler with base_lr 0.1",
        scheduler=make.__name__,
        base_lr=base_lr,
        **hyper,
    )
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    sched = make(opt, **hyper)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(1, epochs):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    case.output("lr", torch.tensor(lrs, dtype=torch.float64))
    case.write()


def main():
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)

    conv2d("conv2d_k3_s1_p0", 2, 3, 4, (6, 7), (3, 3), (1, 1), (0, 0))
    conv2d("conv2d_k3_s2_p1", 2, 3, 4, (7, 8), (3, 3), (2, 2), (1, 1))
    conv2d("conv2d_k2x3_s1x2_p1x0", 2, 2, 3, (5, 7), (2, 3), (1, 2), (1, 0))
    conv2d("conv2d_k1_s1_p0", 1, 4, 5, (3, 4), (1, 1), (1, 1), (0, 0))
    linear()

    max_pool2d("max_pool2d_k2_s2", 2, 3, (7, 6), 2, 2, 0)
    max_pool2d("max_pool2d_k3_s2_p1", 2, 2, (7, 7), 3, 2, 1)
    avg_pool2d("avg_pool2d_k3_s2_p1", 2, 2, (7, 6), 3, 2, 1)
    global_avg_pool2d()

    batch_norm_train("batch_norm2d_train", (4, 3, 5, 5))
    batch_norm_train("batch_norm1d_train", (8, 5))
    batch_norm_eval("batch_norm2d_eval", (3, 3, 4, 4))

    rotated("rotated_relu_4d", "relu", (2, 3, 4, 5))
    rotated("rotated_relu_2d", "relu", (6, 5))
    rotated("rotated_gelu_4d", "gelu", (2, 3, 4, 5))
    rotated("rotated_gelu_2d", "gelu", (6, 5))
    gelu()

    softmax("softmax", log=False)
    softmax("log_softmax", log=True)
    cross_entropy()
    input_gradient()

    optim = torch.optim
    optimizer("optim_sgd", optim.SGD, lr=0.1)
    optimizer("optim_sgd_momentum", optim.SGD, lr=0.1, momentum=0.9)
    optimizer("optim_sgd_nesterov", optim.SGD, lr=0.1, momentum=0.9, nesterov=True)
    optimizer("optim_sgd_momentum_weight_decay", optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-2)
    optimizer("optim_adam", optim.Adam, lr=1e-2, betas=[0.9, 0.999], eps=1e-8)
    optimizer(
        "optim_adam_weight_decay", optim.Adam, lr=1e-2, betas=[0.9, 0.999], eps=1e-8, weight_decay=1e-2
    )
    optimizer("optim_adamw", optim.AdamW, lr=1e-2, betas=[0.9, 0.999], eps=1e-8, weight_decay=1e-2)

    sched = optim.lr_scheduler
    schedule("schedule_step_lr", sched.StepLR, step_size=3, gamma=0.1)
    schedule("schedule_multi_step_lr", sched.MultiStepLR, milestones=[2, 5], gamma=0.1)
    schedule("schedule_cosine_annealing_lr", sched.CosineAnnealingLR, T_max=10, eta_min=0.0)

    total = sum(f.stat().st_size for f in OUT_DIR.glob("*.json"))
    print(f"wrote {len(list(OUT_DIR.glob('*.json')))} fixtures, {total} bytes, to {OUT_DIR}")


if __name__ == "__main__":
    main()
