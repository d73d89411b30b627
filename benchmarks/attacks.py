"""PGD-10 speed: `methods.attacks.PGD` against the textbook PGD loop, measured in one run.

The reference is the loop a researcher writes by hand: `x.requires_grad_(True)`,
`F.cross_entropy(model(x), y)`, `model.zero_grad()`, `loss.backward()`, a sign
step, then projection with `clamp(x - images, -eps, eps)` and `clamp(0, 1)`.
Both get the same model (eval mode, seeded random weights: speed does not depend
on training), the same seeded inputs, eps, step size (2.5 * eps / steps), random
start, steps and batch. They run interleaved in n rounds of one call each,
flipping the order every round, so machine noise hits both; the table gives the
median over the rounds of each one's images/s and the ratio of those medians.
"fwd+bwd limit": one forward + input-gradient pass, in images/s divided by
steps, i.e. what PGD-`steps` would reach with zero overhead.
"max |diff|": the largest gap between the two implementations' adversarial
images (same start noise): float rounding (~1e-8) when they do the same work,
about 2 * step size where a gradient sign differs.

Measured on the shared 2-core AMD EPYC dev machine (torch 2.14.1 CPU, batch 128),
library vs reference images/s (load ~2 rows: an earlier version that timed 0.3 s
blocks of calls instead of single calls):
  load ~2, 2 threads:  small_cnn 1x8x8    1,160 vs 856: ratio 1.36 (median of 5)
                       small_cnn 3x32x32     63 vs 48:  ratio 1.30 (median of 5)
  load ~4, 1 thread:   small_cnn 1x8x8      676 vs 487: ratio 1.39 (median of 21)
                       small_cnn 3x32x32     25 vs 20:  ratio 1.28 (median of 5)
At load 4-5 with 2 threads the 1x8x8 ratio swung from 1.1 to 1.9 between runs (0.4
once with the block version; 3x32x32 stayed at 1.25-1.6): both threads fight other
processes for the cores, so read that case on a quiet machine or with --threads 1.
The gain is the weight gradients that `loss.backward()` computes and the library
skips (`autograd.grad` with respect to the input alone); the library runs at about
the fwd+bwd limit. A default run takes ~50 s at load ~2 (estimated from per-call
times), 90-150 s at load 4-5.

Usage: python benchmarks/attacks.py [--model small_cnn|resnet18|airbench|sgt_mnist_cnn]
       [--dataset-shape 3x32x32] [--batch 128] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from methods.attacks import PGD
from methods.models import MODELS, build_model

# Shapes each model is meant for, used when --model is given without --dataset-shape.
NATURAL_SHAPE = {
    "small_cnn": (1, 8, 8),  # digits
    "sgt_mnist_cnn": (1, 28, 28),  # MNIST
    "resnet18": (3, 32, 32),  # CIFAR
    "airbench": (3, 32, 32),  # CIFAR
}
# The default run: digits' small_cnn, and small_cnn built for CIFAR's shape
# (resnet18: ~0.5 GFLOP an image, so tens of seconds per PGD-10 call at batch 128 on 2
# CPU cores; ask for it by flag).
DEFAULT_CASES = (("small_cnn", (1, 8, 8)), ("small_cnn", (3, 32, 32)))


# Reference


def reference_pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    start_noise: torch.Tensor,
) -> torch.Tensor:
    """The textbook loop (Madry et al. 2018), as written in most research code."""
    x = (images + start_noise).clamp(0, 1)
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), labels)
        model.zero_grad()
        loss.backward()
        x = x + alpha * x.grad.sign()
        x = images + torch.clamp(x - images, -eps, eps)
        x = x.clamp(0, 1)
    return x.detach()


def forward_backward(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    """One forward + input-gradient pass: the unit of work of every PGD step."""
    x = images.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels, reduction="sum")
    torch.autograd.grad(loss, x)


# Timing


def timed(fn: Callable[[], object], calls: int) -> float:
    """Seconds for ``calls`` calls of ``fn``."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - start


def default_eps(shape: tuple[int, int, int]) -> float:
    if shape[0] == 3:
        return 8 / 255  # CIFAR convention
    return 0.1 if shape[1] <= 8 else 0.3  # digits / MNIST conventions


def bench_case(
    name: str, shape: tuple[int, int, int], args: argparse.Namespace
) -> dict[str, float | str]:
    torch.manual_seed(args.seed)
    channels = shape[0]
    model = build_model(name, shape, args.classes, (0.5,) * channels, (0.25,) * channels).eval()
    images = torch.rand(args.batch, *shape)
    labels = torch.randint(0, args.classes, (args.batch,))
    eps = args.eps if args.eps is not None else default_eps(shape)
    attack = PGD(eps, steps=args.steps)
    alpha = attack.step_size
    noise_seed = args.seed + 1

    def library() -> torch.Tensor:
        generator = torch.Generator().manual_seed(noise_seed)
        return attack(model, images, labels, generator=generator)

    def reference() -> torch.Tensor:
        # The same uniform start as the library draws (same generator, same call).
        generator = torch.Generator().manual_seed(noise_seed)
        noise = torch.empty_like(images).uniform_(-eps, eps, generator=generator)
        return reference_pgd(model, images, labels, eps, alpha, args.steps, noise)

    def fwd_bwd() -> None:
        forward_backward(model, images, labels)

    # Warm-up (allocator, oneDNN primitives), then one timed call of each: it sizes the
    # rounds, and its outputs check that both implementations do the same work.
    fwd_bwd()
    once = {"fwd_bwd": timed(fwd_bwd, 1)}
    start = time.perf_counter()
    adv_library = library()
    once["library"] = time.perf_counter() - start
    start = time.perf_counter()
    adv_reference = reference()
    once["reference"] = time.perf_counter() - start
    max_diff = (adv_library - adv_reference).abs().max().item()

    # Each round is one library call, one reference call and a few forward+backward
    # passes, the order flipping every round, so a burst of load from other processes
    # lands on both within a second or so; every round gives one rate sample of each.
    # Fast cases get more rounds (at least `min_time` seconds of library calls).
    fns = {"library": library, "reference": reference, "fwd_bwd": fwd_bwd}
    calls = {"library": 1, "reference": 1}
    calls["fwd_bwd"] = max(1, round(0.25 * once["library"] / once["fwd_bwd"]))
    rounds = max(args.repeats, math.ceil(args.min_time / once["library"]))
    rates: dict[str, list[float]] = {key: [] for key in fns}
    order = list(fns)
    for _ in range(rounds):
        for key in order:
            rates[key].append(args.batch * calls[key] / timed(fns[key], calls[key]))
        order.reverse()
    lib = statistics.median(rates["library"])
    ref = statistics.median(rates["reference"])
    limit = statistics.median(rates["fwd_bwd"]) / args.steps
    return {
        "case": f"{name} {'x'.join(map(str, shape))}",
        "eps": eps,
        "library": lib,
        "reference": ref,
        "ratio": lib / ref,
        "limit": limit,
        "max_diff": max_diff,
        "rounds": rounds,
    }


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(part) for part in text.lower().split("x"))
    except ValueError as err:
        message = f"shape must be CxHxW such as 3x32x32, got {text!r}"
        raise argparse.ArgumentTypeError(message) from err
    return c, h, w


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=(
            "PGD images/s of methods.attacks.PGD against a textbook PGD loop (forward, "
            "loss.backward(), sign step, clamp projection), measured interleaved in one run "
            "on the same model, inputs, eps and steps. Prints the median images/s of each, "
            "the ratio of medians (>= 1.0 expected) and the forward+backward limit. With no "
            "--model/--dataset-shape it runs small_cnn on 1x8x8 (digits) and on 3x32x32."
        ),
    )
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        help="model to attack (default: small_cnn on 1x8x8 and 3x32x32; resnet18 is slow on CPU)",
    )
    parser.add_argument(
        "--dataset-shape",
        type=parse_shape,
        metavar="CxHxW",
        help="input shape CxHxW (default: the model's own, e.g. 3x32x32 for resnet18)",
    )
    parser.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    parser.add_argument(
        "--batch", type=int, default=128, help="images per attack call (default 128)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="interleaved timed rounds, at least (default 5; fast cases get more, see --min-time)",
    )
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    parser.add_argument(
        "--eps", type=float, help="L-inf radius on [0,1] (default: 8/255 RGB, 0.1 8x8, 0.3 28x28)"
    )
    parser.add_argument(
        "--threads", type=int, help="torch.set_num_threads (default: leave torch's own)"
    )
    parser.add_argument(
        "--min-time",
        type=float,
        default=4.0,
        help="at least this many seconds of library calls per case (default 4)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds weights, inputs, start noise (default 0)"
    )
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.model is None and args.dataset_shape is None:
        cases = list(DEFAULT_CASES)
    else:
        name = args.model or "small_cnn"
        cases = [(name, args.dataset_shape or NATURAL_SHAPE[name])]

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"PGD-{args.steps}, medians over n interleaved rounds"
    )
    header = (
        f"{'case':<22} {'eps':>7} {'library':>10} {'reference':>10} {'ratio':>6} "
        f"{'fwd+bwd limit':>14} {'max |diff|':>10} {'n':>4}"
    )
    print(header)
    print("-" * len(header))
    for name, shape in cases:
        row = bench_case(name, shape, args)
        print(
            f"{row['case']:<22} {row['eps']:>7.4f} {row['library']:>10,.0f} "
            f"{row['reference']:>10,.0f} {row['ratio']:>6.2f} {row['limit']:>14,.0f} "
            f"{row['max_diff']:>10.1e} {row['rounds']:>4}",
            flush=True,
        )
    print("(library, reference, limit in images/s; ratio = library / reference)")


if __name__ == "__main__":
    main()
