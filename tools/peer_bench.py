#!/usr/bin/env python3
"""Peer benchmark: MnistNet in PyTorch and ONNX Runtime on the CPU.

Measures the figures that Rotor is compared against (DESIGN.md section 3):

* inference images/s of the dense MnistNet and of its "keep 50%" variant, for each batch
  size, in PyTorch (eval mode, ``torch.inference_mode``) and in ONNX Runtime (the same
  weights exported with the TorchScript exporter, dynamic batch axis, all graph
  optimisations, CPUExecutionProvider);
* training images/s of the dense MnistNet in PyTorch at batch 64 (SGD with momentum 0.9,
  lr 0.01, cross-entropy on seeded random data, learnable slopes).

Both engines use the same number of threads (``--threads``, default ``RAYON_NUM_THREADS``
or 2): ``torch.set_num_threads`` with one inter-op thread, and ONNX Runtime with
``intra_op_num_threads`` = threads, ``inter_op_num_threads`` = 1.

Timing: every cell is warmed up, its iteration count is calibrated so that one timed run
takes about ``--seconds``, then ``--repeats`` timed runs are made; the table shows the
median and the min-max range of images/s over those runs. The machines are shared and
noisy: only figures measured minutes apart on the same machine compare. For each cell the
share of the CPUs used by *other* processes during its timed runs is measured from
/proc/stat; cells above ``--max-foreign`` are marked ``!`` and should be rerun.

Usage (see tools/README.md for the environment)::

    RAYON_NUM_THREADS=2 /tmp/peer/bin/python tools/peer_bench.py [--only all|torch|ort]
        [--batches 1,64,256] [--seconds 1.0] [--repeats 5] [--threads 2] [--json FILE]
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 1234
NUM_CLASSES = 10

# name -> (conv1 channels, conv2 channels, hidden units)
NETS = {
    "dense": (32, 64, 128),
    "keep50": (16, 32, 64),
}


class RotatedReLU(nn.Module):
    """y = a_c * max(0, x), one learnable slope a_c per channel (dim 1) or feature."""

    def __init__(self, channels, spatial):
        super().__init__()
        shape = (1, channels, 1, 1) if spatial else (1, channels)
        # Slopes around 1 but not exactly 1, so no exporter or optimiser can drop the Mul.
        self.slope = nn.Parameter(torch.empty(shape).uniform_(0.5, 1.5))

    def forward(self, x):
        return F.relu(x) * self.slope


class MnistNet(nn.Module):
    """conv c1 3x3 -> rrelu -> conv c2 3x3 -> rrelu -> maxpool 2 -> flatten -> linear
    hidden -> rrelu -> linear 10, on [N, 1, 28, 28] input."""

    def __init__(self, c1, c2, hidden):
        super().__init__()
        self.c1, self.c2, self.hidden = c1, c2, hidden
        self.conv1 = nn.Conv2d(1, c1, 3)
        self.act1 = RotatedReLU(c1, spatial=True)
        self.conv2 = nn.Conv2d(c1, c2, 3)
        self.act2 = RotatedReLU(c2, spatial=True)
        self.fc1 = nn.Linear(c2 * 12 * 12, hidden)
        self.act3 = RotatedReLU(hidden, spatial=False)
        self.fc2 = nn.Linear(hidden, NUM_CLASSES)

    def forward(self, x):
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = torch.flatten(x, 1)
        x = self.act3(self.fc1(x))
        return self.fc2(x)

    def flops_per_image(self):
        """Multiply-adds x 2 of the convolutions and linear layers (forward pass)."""
        conv1 = 26 * 26 * self.c1 * 1 * 9 * 2
        conv2 = 24 * 24 * self.c2 * self.c1 * 9 * 2
        fc1 = self.c2 * 12 * 12 * self.hidden * 2
        fc2 = self.hidden * NUM_CLASSES * 2
        return conv1 + conv2 + fc1 + fc2


def make_net(name):
    """A freshly initialised network, seeded by its name so runs are repeatable."""
    torch.manual_seed(SEED + sum(map(ord, name)))
    return MnistNet(*NETS[name])


def make_input(batch):
    """Seeded random images [batch, 1, 28, 28], float32."""
    gen = torch.Generator().manual_seed(SEED + batch)
    return torch.randn(batch, 1, 28, 28, generator=gen)


# --------------------------------------------------------------------------- timing


def measure(step, batch, seconds, repeats):
    """Warm ``step`` up, calibrate, and time it ``repeats`` times.

    Returns a dict with the median/min/max images/s, every run's figure and the number
    of iterations per run.
    """
    # Warm-up: at least 3 calls and at least a quarter of a measurement.
    t0 = time.perf_counter()
    calls = 0
    while calls < 3 or time.perf_counter() - t0 < 0.25 * seconds:
        step()
        calls += 1
    # Calibrate: time a short burst to estimate the cost of one call.
    probe = max(1, calls // 2)
    t0 = time.perf_counter()
    for _ in range(probe):
        step()
    per_call = (time.perf_counter() - t0) / probe
    iters = max(1, math.ceil(seconds / max(per_call, 1e-9)))

    rates = []
    busy0, own0, wall0 = system_busy_seconds(), own_cpu_seconds(), time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        elapsed = time.perf_counter() - t0
        rates.append(iters * batch / elapsed)
    busy1, own1, wall1 = system_busy_seconds(), own_cpu_seconds(), time.perf_counter()
    foreign = None
    if busy0 is not None and busy1 is not None:
        cpus = os.cpu_count() or 1
        foreign = max(0.0, ((busy1 - busy0) - (own1 - own0)) / ((wall1 - wall0) * cpus))
    return {
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "runs": rates,
        "iters_per_run": iters,
        "foreign_cpu": foreign,
    }


def system_busy_seconds():
    """CPU seconds spent busy by all CPUs since boot (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds():
    """User + system CPU seconds of this process, all threads."""
    t = os.times()
    return t.user + t.system


# --------------------------------------------------------------------------- engines


def bench_torch_inference(net_name, batches, args):
    """PyTorch eval-mode inference under torch.inference_mode, one cell per batch."""
    model = make_net(net_name).eval()
    results = []
    for batch in batches:
        x = make_input(batch)
        with torch.inference_mode():
            def step():
                model(x)

            stats = measure(step, batch, args.seconds, args.repeats)
        results.append(cell("pytorch", "inference", net_name, batch, model, stats))
    return results


def export_onnx(model, path, opset):
    """TorchScript-based ONNX export with a dynamic batch axis.

    The legacy exporter (dynamo=False) is chosen on purpose; its DeprecationWarning is
    silenced.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (make_input(1),),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )


def ort_session(path, threads):
    """An ONNX Runtime CPU session with ORT_ENABLE_ALL and the given intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def bench_ort_inference(net_name, batches, args, tmpdir):
    """ONNX Runtime inference of the exported net, one cell per batch.

    The ORT output is checked against PyTorch's before timing.
    """
    model = make_net(net_name).eval()
    path = os.path.join(tmpdir, f"mnistnet_{net_name}.onnx")
    export_onnx(model, path, args.opset)
    sess = ort_session(path, args.threads)
    input_name = sess.get_inputs()[0].name
    results = []
    for batch in batches:
        x = make_input(batch)
        feed = {input_name: x.numpy()}
        with torch.inference_mode():
            expected = model(x).numpy()
        got = sess.run(None, feed)[0]
        if not np.allclose(got, expected, rtol=1e-3, atol=1e-4):
            err = float(np.max(np.abs(got - expected)))
            sys.exit(f"ONNX Runtime disagrees with PyTorch on {net_name} b{batch}: {err}")

        def step():
            sess.run(None, feed)

        stats = measure(step, batch, args.seconds, args.repeats)
        results.append(cell("onnxruntime", "inference", net_name, batch, model, stats))
    return results


def bench_torch_training(args, batch=64):
    """PyTorch training of the dense net: SGD(lr 0.01, momentum 0.9), cross-entropy."""
    model = make_net("dense").train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x = make_input(batch)
    gen = torch.Generator().manual_seed(SEED)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    stats = measure(step, batch, args.seconds, args.repeats)
    return [cell("pytorch", "training", "dense", batch, model, stats, train=True)]


def cell(engine, mode, net, batch, model, stats, train=False):
    """One result row; GFLOP/s counts the forward pass only (x3 for a training step)."""
    flops = model.flops_per_image() * (3 if train else 1)
    return {
        "engine": engine,
        "mode": mode,
        "net": net,
        "batch": batch,
        "mflop_per_image": flops / 1e6,
        "gflops_median": stats["median"] * flops / 1e9,
        **stats,
    }


# --------------------------------------------------------------------------- report


def cpu_model():
    """The CPU model name and the relevant SIMD flags from /proc/cpuinfo."""
    name, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and name is None:
                    name = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    name = name or platform.processor() or "unknown"
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile") if f in flags]
    return name, simd


def cpu_busy_fraction(interval=0.5):
    """Share of all CPUs busy over ``interval`` seconds (from /proc/stat), or None."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return None if total <= 0 else 1.0 - (idle1 - idle0) / total


def environment(args):
    """Versions, CPU and thread settings, printed above the table and kept in the JSON."""
    import onnxruntime as ort

    name, simd = cpu_model()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "cpu": name,
        "simd": simd,
        "logical_cpus": os.cpu_count(),
        "threads": args.threads,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "onnx_opset": args.opset,
        "seconds_per_run": args.seconds,
        "repeats": args.repeats,
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "cpu_busy_before_start": cpu_busy_fraction(),
    }


def print_table(env, results, max_foreign):
    """A Markdown table: one row per cell, images/s median and min-max."""
    print(f"torch {env['torch']}, onnxruntime {env['onnxruntime']}, numpy {env['numpy']}, "
          f"python {env['python']}")
    print(f"CPU: {env['cpu']} ({', '.join(env['simd']) or 'no AVX2'}), "
          f"{env['logical_cpus']} logical CPUs; threads {env['threads']} "
          f"(torch {env['torch_threads']}+{env['torch_interop_threads']} inter-op, "
          f"ORT intra {env['threads']} inter 1)")
    print(f"{env['repeats']} runs of ~{env['seconds_per_run']} s per cell; images/s, "
          f"median and min-max")
    print(f"load average (1/5/15 min) at start {env['load_average_start']}, at end "
          f"{env['load_average_end']}")
    busy = env["cpu_busy_before_start"]
    if busy is not None and busy > 0.2:
        print(f"WARNING: the CPUs were {busy:.0%} busy just before the start; other work "
              "is running and the figures understate the engines")
    print()
    header = ["engine", "mode", "net", "batch", "img/s median", "img/s min-max", "GFLOP/s",
              "other CPU"]

    def foreign(r):
        f = r["foreign_cpu"]
        if f is None:
            return "?"
        return f"{f:.0%}" + (" !" if f > max_foreign else "")

    rows = [[r["engine"], r["mode"], r["net"], str(r["batch"]), f"{r['median']:,.0f}",
             f"{r['min']:,.0f} - {r['max']:,.0f}", f"{r['gflops_median']:.1f}", foreign(r)]
            for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    right = {3, 4, 5, 6, 7}

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    print(line(header))
    print("|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2))
                         for i, w in enumerate(widths)) + "|")
    for row in rows:
        print(line(row))
    print("\nGFLOP/s counts the forward pass (dense 24.0, keep50 6.1 MFLOP per image); "
          "training counts 3x forward.")
    print("other CPU: share of the CPUs used by other processes during the cell's timed "
          "runs.")
    noisy = sum(1 for r in results
                if r["foreign_cpu"] is not None and r["foreign_cpu"] > max_foreign)
    if noisy:
        print(f"WARNING: {noisy} cell(s) marked ! ran while other processes used more than "
              f"{max_foreign:.0%} of the CPUs; rerun on an idle machine.")


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    default_threads = int(os.environ.get("RAYON_NUM_THREADS", "2"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="1,64,256",
                   help="comma-separated inference batch sizes (default 1,64,256)")
    p.add_argument("--seconds", type=float, default=1.0,
                   help="target duration of one timed run (default 1.0)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per cell (default 5)")
    p.add_argument("--only", choices=["all", "torch", "ort", "training"], default="all",
                   help="which engine(s) to measure; torch includes training, training is "
                        "PyTorch's training step alone")
    p.add_argument("--threads", type=int, default=default_threads,
                   help="threads for both engines (default RAYON_NUM_THREADS or 2)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--max-foreign", type=float, default=0.1,
                   help="flag cells during which other processes used more than this "
                        "share of the CPUs (default 0.1)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    if not args.batches or min(args.batches) < 1 or args.repeats < 1 or args.seconds <= 0:
        p.error("batches, repeats and seconds must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    # Thread settings must come before any parallel work in torch.
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    env = environment(args)
    started = time.perf_counter()
    results = []
    if args.only in ("all", "ort"):
        with tempfile.TemporaryDirectory(prefix="peer_bench_") as tmpdir:
            for net in NETS:
                results += bench_ort_inference(net, args.batches, args, tmpdir)
    if args.only in ("all", "torch"):
        for net in NETS:
            results += bench_torch_inference(net, args.batches, args)
    if args.only in ("all", "torch", "training"):
        results += bench_torch_training(args)
    env["wall_seconds"] = round(time.perf_counter() - started, 1)
    env["load_average_end"] = [round(v, 2) for v in os.getloadavg()]

    print_table(env, results, args.max_foreign)
    print(f"total {env['wall_seconds']} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": results}, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
