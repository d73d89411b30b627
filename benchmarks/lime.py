"""LIME speed: `methods.lime` against the `lime` package, the forward-pass limit, Ray
actor scaling, and a projection for CIFAR-10 on GPUs, measured in one run.

1. Explanations/s of `methods.lime.LimeExplainer` against
   `lime.lime_image.LimeImageExplainer().explain_instance` (lime 0.2.0.1, its tqdm bar
   disabled), on the same model (eval mode, seeded random weights: speed does not
   depend on training), the same images, the same target class, the same SLIC
   segments (computed once with `methods.lime.segment` and handed to both), 1,000
   samples and the mean-colour fill (`hide_color=None`). Segmentation is outside the
   timing for both. Each side runs at several batch sizes; the ratio is taken against
   lime at its best batch size.
2. The forward-pass limit: the best images/s of `softmax(model(x))` under
   `torch.no_grad()` over batch sizes 25-1,000, divided by the samples per
   explanation, where x are exactly the perturbed images `methods.lime` feeds the
   model (CPU max-pooling speed depends on the data: on uniform noise tiny_cnn ran
   ~1.5x slower, which would flatter the ratio). "/ bound" is how close each side
   gets to a LIME whose only cost is the model.
3. Ray actor scaling: a local Ray with 2 CPUs, the model shipped as an in-memory
   checkpoint through the object store, `orchestrator.explain.start_workers` actors
   (1 CPU, 1 torch thread each). Actor start-up is excluded: both actors are started
   and warmed up first, then 64 images are explained in chunks of 8, two chunks in
   flight per actor, once with actor 0 alone and once with both. Here the actors
   segment the images themselves (SLIC is inside the timing), and use fewer samples
   (200) to keep the run short.
4. A projection (arithmetic, not a run): CIFAR-10's 50,000 training images x 1,000
   samples forward passes of ResNet-18 on 1, 4 and 8 GPUs at an ASSUMED per-GPU
   throughput (--gpu-throughput), next to this machine's measured ResNet-18 CPU
   throughput, plus the measured CPU-side cost per image (segmentation, mask
   sampling and perturbation, ridge fit).

Parts 1 and 2 interleave every configuration call by call, reversing the order every
round, so load from other processes lands on all of them; tables give the median over
repeats and ratios of medians. Part 3 alternates 1-actor and 2-actor runs the same way.

Measured on a 2-core AMD EPYC CPU, 2026-11-23 (torch 2.14.1, ray 2.60, lime 0.2.0.1,
glibc 2.36), ~50 SLIC segments, 1,000 samples, medians of 5 interleaved repeats, runs
started with the machine idle (load < 0.7; other jobs came and went on the same 2
cores, so single runs vary by ~10-20%):
  tiny_cnn (34k parameters, the default), as users run it:
    ours 5.9 explanations/s at batch 200 (0.58 of the 10,106 img/s bound), lime 5.1/s
    at its best batch 200 (0.50): 1.17x; 1.69x over lime's default batch_size 10
    (1.29x and 1.92x in another run).
  tiny_cnn with --blas-threads 1: ours 7.8/s (0.86 of the bound), lime 4.1/s: 1.91x;
    2.60x over lime's default batch size.
  small_cnn (2.1M parameters), as users run it: ours 1.71/s at batch 50 (0.83), only
    1.22/s at batch 200 (0.59; 19.7M minor page faults in 115 s), lime 1.62/s at
    batch 50: 1.06x; a heavy model hides everything but the forward passes.
  small_cnn with --blas-threads 1 --tune-malloc: batch size stops mattering (ours
    1.87-2.01/s at 25-200, 0.87-0.94 of the bound), lime 1.57/s: 1.28x.
  Ray actors (tiny_cnn, 200 samples, 64 images, SLIC inside): 1 actor 15.9 images/s,
    2 actors 28.9: 1.82x (1.76x-1.88x over three runs).
Two costs of the environment, not of LIME, dominate CPU runs here:
  - numpy's OpenBLAS keeps a thread per core; the ridge fits wake it between forward
    passes and its threads compete with torch's OpenMP threads (ours 0.58-0.64 of the
    bound with them, 0.86-0.89 with BLAS capped at 1 thread). Ray actors with 1 CPU
    get OMP_NUM_THREADS=1, which OpenBLAS also obeys, so they are not hit.
  - glibc mmaps every allocation over its mmap threshold (32 MiB at most: small_cnn's
    conv activations at batch 200 are 52 MB) and trims freed heap, so big activations
    fault in fresh zeroed pages on every batch: that, not cache size, is why large
    batches looked slow on CPU here (--tune-malloc makes batch 25-1,000 within ~10%).

Usage: python benchmarks/lime.py [--model tiny_cnn] [--repeats 5] [--skip-scaling]
       [--blas-threads 1] [--tune-malloc] [--gpu-throughput 25000] [--images 50000]
       [--samples 1000] [--gpus 1,4,8]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from methods.lime import (
    LimeExplainer,
    LimeSettings,
    _perturb,
    default_batch_size,
    fit_surrogate,
    segment,
)
from methods.lime_sampling import iid_masks
from methods.models import build_model, parameter_count

HERE = Path(__file__).resolve().parent
SHAPE = (3, 32, 32)
CLASSES = 10
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)  # CIFAR-10-like statistics


def lime_image_module():
    """`lime.lime_image` from the installed package, with its progress bar disabled.

    Run as a script, this file's folder comes first on sys.path and this very file
    (benchmarks/lime.py) would be imported as `lime`: drop that folder first.
    """
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]
    import lime.lime_image as lime_image
    from tqdm.auto import tqdm

    if Path(lime_image.__file__).resolve().parent.parent == HERE:
        raise SystemExit("benchmarks/lime.py shadows the lime package; run it from elsewhere")
    # lime 0.2.0.1 wraps its sample loop in tqdm and has no switch for it.
    lime_image.tqdm = functools.partial(tqdm, disable=True)
    return lime_image


# ----------------------------------------------------------------------------- inputs


def blocky_images(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3, 32, 32) in [0,1]: random 4x4-pixel blocks plus mild noise, so that SLIC
    finds ~50 segments (on white noise it finds few and odd ones)."""
    coarse = torch.rand(n, SHAPE[0], SHAPE[1] // 4, SHAPE[2] // 4, generator=generator)
    images = F.interpolate(coarse, scale_factor=4, mode="nearest")
    return (images + 0.05 * torch.randn(images.shape, generator=generator)).clamp(0, 1)


def make_model(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, SHAPE, CLASSES, MEAN, STD).eval()


# ----------------------------------------------------------------------------- timing


def interleaved(
    fns: dict[str, Callable[[], object]],
    work: dict[str, float],
    repeats: int,
    warmup: list[str],
) -> dict[str, float]:
    """Median over ``repeats`` of work/s for each fn; one call of each per repeat, the
    order reversed every repeat. One untimed call of each ``warmup`` fn first."""
    for key in warmup:
        fns[key]()
    rates: dict[str, list[float]] = {key: [] for key in fns}
    order = list(fns)
    for _ in range(repeats):
        for key in order:
            start = time.perf_counter()
            fns[key]()
            rates[key].append(work[key] / (time.perf_counter() - start))
        order.reverse()
    return {key: statistics.median(values) for key, values in rates.items()}


def per_call_seconds(fn: Callable[[], object], calls: int) -> float:
    """Median seconds of one call of ``fn`` over ``calls`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def section(title: str) -> Iterator[None]:
    print(f"\n== {title}", flush=True)
    start, faults = time.perf_counter(), page_faults()
    yield
    print(
        f"   ({time.perf_counter() - start:.0f} s; {page_faults() - faults:,} minor page "
        f"faults in this process; load average {load()})",
        flush=True,
    )


# ----------------------------------------------------------------------------- parts 1-2


def compare(args: argparse.Namespace) -> dict[str, float]:
    lime_image = lime_image_module()
    generator = torch.Generator().manual_seed(args.seed)
    model = make_model(args.model, args.seed)
    images = blocky_images(args.compare_images, generator)
    settings = LimeSettings(num_samples=args.num_samples, seed=args.seed, sampler="iid")
    # Equal fidelity: the default sampler at fewer samples reaches the median correlation
    # (with a 10,000-sample reference) that i.i.d. masks reach at --num-samples
    # (benchmarks/lime_efficiency.py: orthogonal at 500 matches i.i.d. at 1,000).
    fidelity = LimeSettings(
        num_samples=args.fidelity_samples or args.num_samples // 2,
        seed=args.seed,
        sampler="orthogonal",
    )
    segments = [segment(image.numpy(), settings) for image in images]
    with torch.no_grad():
        targets = [int(t) for t in model(images).argmax(1)]
    hwc = [np.ascontiguousarray(image.permute(1, 2, 0).numpy()) for image in images]
    # The bound runs exactly the forward passes methods.lime makes: every image's
    # perturbed samples, from the same seeded masks. Not uniform noise: CPU max-pooling
    # speed depends on the data (tiny_cnn ran ~1.5x slower on noise here).
    forward_input = torch.cat(
        [
            _perturb(
                image,
                torch.from_numpy(seg),
                iid_masks(int(seg.max()) + 1, args.num_samples, args.seed, index),
                "mean",
            )
            for index, (image, seg) in enumerate(zip(images, segments, strict=True))
        ]
    )
    print(
        f"model {args.model} {'x'.join(map(str, SHAPE))}, "
        f"{parameter_count(model):,} parameters; {args.compare_images} images, "
        f"segments {[int(s.max()) + 1 for s in segments]}, {args.num_samples} samples, "
        f"{torch.get_num_threads()} torch threads"
    )

    def forward(batch: int) -> None:
        with torch.no_grad():
            for i in range(0, len(forward_input), batch):
                torch.softmax(model(forward_input[i : i + batch]).float(), dim=1)

    def ours(batch: int, chosen: LimeSettings = settings) -> None:
        explainer = LimeExplainer(model, batch_size=batch)
        explainer.explain(images, targets, chosen, segments=segments)

    def classifier(batch_hwc: np.ndarray) -> np.ndarray:
        # .contiguous(): the model sees the same NCHW layout as in ours and the bound.
        x = torch.from_numpy(batch_hwc).permute(0, 3, 1, 2).float().contiguous()
        with torch.no_grad():
            return torch.softmax(model(x), dim=1).numpy()

    def reference(batch: int) -> None:
        explainer = lime_image.LimeImageExplainer(random_state=args.seed)
        for image, seg, target in zip(hwc, segments, targets, strict=True):
            explainer.explain_instance(
                image,
                classifier,
                labels=(target,),
                top_labels=None,
                num_samples=args.num_samples,
                batch_size=batch,
                segmentation_fn=lambda _, seg=seg: seg,
                hide_color=None,
                random_seed=args.seed,
            )

    fns: dict[str, Callable[[], object]] = {}
    work: dict[str, float] = {}
    for batch in args.forward_batches:
        fns[f"forward@{batch}"] = functools.partial(forward, batch)
        work[f"forward@{batch}"] = args.compare_images  # those explanations' forwards
    for batch in args.our_batches:
        fns[f"ours@{batch}"] = functools.partial(ours, batch)
        work[f"ours@{batch}"] = args.compare_images
    for batch in args.our_batches:
        fns[f"orth{fidelity.num_samples}@{batch}"] = functools.partial(ours, batch, fidelity)
        work[f"orth{fidelity.num_samples}@{batch}"] = args.compare_images
    for batch in args.lime_batches:
        fns[f"lime@{batch}"] = functools.partial(reference, batch)
        work[f"lime@{batch}"] = args.compare_images
    # Warming the forward passes at every batch size readies the oneDNN kernels that
    # ours and lime use too (1,000 is a multiple of every default batch size).
    warmup = [key for key in fns if key.startswith("forward@")]
    rates = interleaved(fns, work, args.repeats, warmup)

    bound_key = max((k for k in rates if k.startswith("forward@")), key=rates.get)
    ours_key = max((k for k in rates if k.startswith("ours@")), key=rates.get)
    lime_key = max((k for k in rates if k.startswith("lime@")), key=rates.get)
    bound = rates[bound_key]
    default_key = f"ours@{default_batch_size(torch.device('cpu'))}"

    header = f"{'config':<14} {'expl/s':>8} {'images/s':>9} {'/ bound':>8}"
    print(header)
    print("-" * len(header))
    for key, rate in rates.items():
        mark = " <- best" if key in (bound_key, ours_key, lime_key) else ""
        if key == default_key:
            mark += " (default)"
        samples = fidelity.num_samples if key.startswith("orth") else args.num_samples
        passes = rate * samples  # forward passes/s, what the bound limits
        print(
            f"{key:<14} {rate:>8.3f} {passes:>9,.0f} "
            f"{passes / (bound * args.num_samples):>8.2f}{mark}"
        )
    print(
        "(expl/s: explanations/s; a forward row's expl/s is its images/s / samples, "
        "the bound on LIME at that batch size)"
    )

    ours_best, lime_best = rates[ours_key], rates[lime_key]
    ours_default = rates.get(default_key)
    lime_default = rates.get("lime@10")  # lime's own default batch_size
    print("ratios of explanations/s:")
    print(f"  ours best ({ours_key}) / lime best ({lime_key}): {ours_best / lime_best:.2f}x")
    fidelity_key = max((k for k in rates if k.startswith("orth")), key=rates.get)
    print(
        f"  at equal fidelity: ours, orthogonal at {fidelity.num_samples} samples "
        f"({fidelity_key}) / lime best at {args.num_samples}: "
        f"{rates[fidelity_key] / lime_best:.2f}x"
    )
    if ours_default:
        print(f"  ours default ({default_key}) / lime best: {ours_default / lime_best:.2f}x")
        if lime_default:
            print(f"  ours default / lime default (lime@10): {ours_default / lime_default:.2f}x")
    print(
        f"  / forward bound ({bound_key}, {bound * args.num_samples:,.0f} img/s): "
        f"ours best {ours_best / bound:.2f}, "
        + (f"ours default {ours_default / bound:.2f}, " if ours_default else "")
        + f"lime best {lime_best / bound:.2f}"
    )
    if ours_default:
        print(
            f"  fastest LimeExplainer batch_size here: {ours_key[5:]}; the default "
            f"({default_key[5:]}) runs at {ours_default / ours_best:.2f} of it"
        )
    return {
        "forward_images_per_s": bound * args.num_samples,
        "ours": rates[ours_key],
    }


# ----------------------------------------------------------------------------- part 3


def scaling(args: argparse.Namespace) -> None:
    import ray

    from orchestrator.explain.actors import connect, start_workers

    generator = torch.Generator().manual_seed(args.seed)
    model = make_model(args.model, args.seed)
    state = {
        "model": model.state_dict(),
        "meta": {
            "dataset": "benchmark",
            "model": args.model,
            "input_shape": list(SHAPE),
            "num_classes": CLASSES,
            "mean": list(MEAN),
            "std": list(STD),
            "config": {},
        },
    }
    images = blocky_images(args.scaling_images, generator).numpy()
    labels = np.arange(args.scaling_images, dtype=np.int64) % CLASSES
    settings = LimeSettings(num_samples=args.scaling_samples, seed=args.seed).resolved(SHAPE[1])
    chunks = [
        np.arange(i, min(i + args.chunk, args.scaling_images), dtype=np.int64)
        for i in range(0, args.scaling_images, args.chunk)
    ]

    started = time.perf_counter()
    connect(num_cpus=2)
    state_ref = ray.put(state)
    workers = start_workers(state_ref, settings, actors=2, cpus_per_actor=1)
    ray.get([w.explain.remote(chunks[0][:1], images[:1], labels[:1]) for w in workers])
    print(f"Ray up and 2 actors warm in {time.perf_counter() - started:.1f} s (not timed below)")

    def run(pool: list) -> float:
        """Seconds to explain every chunk: round-robin, two in flight per actor."""
        pending = list(range(len(chunks)))[::-1]
        in_flight: dict = {}

        def submit(slot: int) -> None:
            if pending:
                ids = chunks[pending.pop()]
                in_flight[pool[slot].explain.remote(ids, images[ids], labels[ids])] = slot

        start = time.perf_counter()
        for _ in range(2):
            for slot in range(len(pool)):
                submit(slot)
        rows = 0
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            slot = in_flight.pop(ready[0])
            rows += ray.get(ready[0]).num_rows
            submit(slot)
        seconds = time.perf_counter() - start
        assert rows == args.scaling_images, rows
        return seconds

    pools = {"1 actor": workers[:1], "2 actors": workers}
    seconds: dict[str, list[float]] = {key: [] for key in pools}
    order = list(pools)
    for _ in range(args.scaling_repeats):
        for key in order:
            seconds[key].append(run(pools[key]))
        order.reverse()
    for worker in workers:
        ray.kill(worker)
    ray.shutdown()

    one, two = (statistics.median(seconds[key]) for key in pools)
    n = args.scaling_images
    print(
        f"{n} images, {args.scaling_samples} samples, chunks of {args.chunk}, "
        f"2 in flight per actor, 1 CPU / 1 torch thread per actor, "
        f"median of {args.scaling_repeats}"
    )
    print(f"{'actors':<9} {'seconds':>8} {'images/s':>9}")
    for key, value in (("1 actor", one), ("2 actors", two)):
        print(f"{key:<9} {value:>8.2f} {n / value:>9.2f}")
    print(f"speed-up 2 actors / 1 actor: {one / two:.2f}x")


# ----------------------------------------------------------------------------- part 4


def cpu_side_ms(args: argparse.Namespace) -> dict[str, float]:
    """Milliseconds per image of the non-model work of `methods.lime`, on this CPU."""
    generator = torch.Generator().manual_seed(args.seed + 1)
    image = blocky_images(1, generator)[0]
    settings = LimeSettings(num_samples=args.samples, seed=args.seed)
    seg = segment(image.numpy(), settings)
    masks = iid_masks(int(seg.max()) + 1, args.samples, args.seed, 0)
    probs = torch.rand(args.samples, dtype=torch.float64, generator=generator).numpy()
    z = masks.double().numpy()
    return {
        "SLIC": 1e3 * per_call_seconds(lambda: segment(image.numpy(), settings), 5),
        "masks+perturb": 1e3
        * per_call_seconds(
            lambda: _perturb(
                image,
                torch.from_numpy(seg),
                iid_masks(masks.shape[1], args.samples, args.seed, 0),
                "mean",
            ),
            5,
        ),
        "ridge fit": 1e3 * per_call_seconds(lambda: fit_surrogate(z, probs, settings), 5),
    }


def resnet_cpu_images_per_s(args: argparse.Namespace) -> float:
    model = build_model("resnet18", SHAPE, CLASSES, MEAN, STD).eval()
    x = torch.rand(args.resnet_batch, *SHAPE)

    def forward() -> None:
        with torch.no_grad():
            torch.softmax(model(x), dim=1)

    return args.resnet_batch / per_call_seconds(forward, 2)


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def projection(args: argparse.Namespace, model_images_per_s: float) -> None:
    passes = args.images * args.samples
    print(
        f"{args.images:,} images x {args.samples:,} samples = {passes:.2e} forward passes "
        f"(resnet18, 3x32x32)"
    )
    print(
        f"ASSUMED GPU throughput: {args.gpu_throughput:,.0f} images/s per GPU (ResNet-18 "
        "32x32 inference in fp16/bf16 at large batch on an A100/H100; an assumption, "
        "not measured here)"
    )
    print(f"{'where':<34} {'images/s':>10} {'time':>10}")
    for gpus in args.gpus:
        rate = gpus * args.gpu_throughput
        label = f"{gpus} GPU{'s' if gpus > 1 else ''} (assumed)"
        print(f"{label:<34} {rate:>10,.0f} {duration(passes / rate):>10}")
    resnet_cpu = resnet_cpu_images_per_s(args)
    cores = torch.get_num_threads()
    label = f"this CPU, resnet18 ({cores} threads)"
    print(f"{label:<34} {resnet_cpu:>10,.1f} {duration(passes / resnet_cpu):>10}  measured")
    label = f"this CPU, {args.model} instead"
    rate = model_images_per_s
    print(f"{label:<34} {rate:>10,.0f} {duration(passes / rate):>10}  measured (part 2)")
    costs = cpu_side_ms(args)
    per_image = sum(costs.values())
    per_gpu = args.gpu_throughput / args.samples  # explanations/s one GPU can feed
    text = ", ".join(f"{key} {value:.1f} ms" for key, value in costs.items())
    print(
        f"CPU-side work per image (measured, 1 image, {args.samples} samples): {text}; "
        f"{per_image:.1f} ms in all -> {per_image * 1e-3 * per_gpu:.2f} CPU cores per GPU "
        f"to keep up ({per_gpu:.0f} explanations/s per GPU), "
        f"{duration(per_image * 1e-3 * args.images)} of one core for {args.images:,} images"
    )


# ----------------------------------------------------------------------------- main


def tune_malloc() -> str:
    """Keep glibc from handing freed memory back to the OS, so that large tensors reuse
    pages instead of faulting in fresh zeroed ones on every allocation.

    With glibc's defaults, a tensor over the dynamic mmap threshold (at most 32 MiB:
    small_cnn's conv activations at batch 200 are 52 MB) is mmapped and unmapped on every
    call, and the heap top is trimmed when a large block is freed: measured here, one
    1,000-image pass of small_cnn took 200k-380k minor page faults and ~1.5-2x the time
    it takes without them. Linux/glibc only; process-wide; the driver only (not Ray
    actors)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return "not glibc: unchanged"
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    ok = libc.mallopt(m_trim_threshold, 1 << 30) and libc.mallopt(m_mmap_threshold, 1 << 30)
    return "trim and mmap thresholds 1 GiB" if ok else "mallopt refused: unchanged"


def page_faults() -> int:
    """Minor page faults of this process so far."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def load() -> str:
    """1/5/15-minute load averages: above the core count, something else competes."""
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from err
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=(
            "LIME speed in one run: (1) explanations/s of methods.lime against the lime "
            "package on the same model, images, segments and samples (ratio, lime at its "
            "best batch size); (2) against the forward-pass limit (best forward images/s "
            "/ samples) and which LimeExplainer batch_size is fastest; (3) 1 vs 2 Ray actors "
            "on a local 2-CPU Ray, start-up excluded; (4) a projection of CIFAR-10 x "
            "ResNet-18 on GPUs at an assumed throughput, against this CPU's measured one. "
            "Default run: ~2-3 minutes on 2 cores."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    group = parser.add_argument_group("parts 1-2: methods.lime, the lime package, the bound")
    group.add_argument(
        "--model",
        default="tiny_cnn",
        choices=("tiny_cnn", "small_cnn", "sgt_mnist_cnn", "airbench", "resnet18"),
        help="model built for 3x32x32, 10 classes, seeded random weights (resnet18 is slow)",
    )
    group.add_argument(
        "--compare-images", type=int, default=2, help="images per timed explain call"
    )
    group.add_argument("--num-samples", type=int, default=1000, help="LIME samples per image")
    group.add_argument(
        "--our-batches",
        type=int_list,
        default=[25, 50, 100, 200],
        help="LimeExplainer batch sizes to try",
    )
    group.add_argument(
        "--lime-batches",
        type=int_list,
        default=[10, 50, 100, 200],
        help="lime explain_instance batch sizes to try (10 is lime's default)",
    )
    group.add_argument(
        "--forward-batches",
        type=int_list,
        default=[25, 50, 100, 200, 500, 1000],
        help="batch sizes for the forward-pass bound",
    )
    group.add_argument("--repeats", type=int, default=5, help="interleaved timed repeats")
    group.add_argument(
        "--fidelity-samples",
        type=int,
        help="samples of the orthogonal sampler for the equal-fidelity ratio (default: "
        "--num-samples / 2, which matches i.i.d.'s median fidelity at --num-samples)",
    )
    group = parser.add_argument_group("part 3: Ray actor scaling")
    group.add_argument("--skip-scaling", action="store_true", help="skip part 3 (no Ray)")
    group.add_argument("--scaling-images", type=int, default=64, help="images explained")
    group.add_argument(
        "--scaling-samples", type=int, default=200, help="LIME samples per image in part 3"
    )
    group.add_argument("--chunk", type=int, default=8, help="images per actor call")
    group.add_argument(
        "--scaling-repeats", type=int, default=2, help="alternating 1-actor/2-actor repeats"
    )
    group = parser.add_argument_group("part 4: projection (CIFAR-10 x ResNet-18)")
    group.add_argument(
        "--images", type=int, default=50_000, help="images to explain (CIFAR-10 train)"
    )
    group.add_argument("--samples", type=int, default=1000, help="LIME samples per image")
    group.add_argument(
        "--gpu-throughput",
        type=float,
        default=25_000,
        help="ASSUMED ResNet-18 32x32 inference images/s per GPU",
    )
    group.add_argument("--gpus", type=int_list, default=[1, 4, 8], help="GPU counts")
    group.add_argument(
        "--resnet-batch", type=int, default=100, help="batch for the CPU resnet18 measurement"
    )
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--blas-threads",
        type=int,
        help="cap numpy/scipy BLAS (OpenBLAS) threads via threadpoolctl; default: leave "
        "them at one per core, as users run (they then compete with torch's OpenMP "
        "threads: the ridge fits wake them between forward passes)",
    )
    parser.add_argument(
        "--tune-malloc",
        action="store_true",
        help="raise glibc's mmap and trim thresholds in this process (parts 1, 2, 4) so that "
        "big activations stop page-faulting; default: glibc's defaults, as users run",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds weights, images, masks")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    malloc = tune_malloc() if args.tune_malloc else "glibc defaults"
    blas = "BLAS threads: library defaults"
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        lime_image_module()  # loads scipy's and sklearn's BLAS too, so the cap covers them
        threadpool_limits(limits=args.blas_threads, user_api="blas")
        blas = f"BLAS threads capped at {args.blas_threads}"

    started = time.perf_counter()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians of "
        f"{args.repeats} interleaved repeats; {blas}; malloc: {malloc}; load average {load()} "
        "(other work on the machine slows everything and skews the Ray scaling most)"
    )
    with section("1-2. methods.lime vs the lime package vs the forward-pass bound"):
        measured = compare(args)
    if not args.skip_scaling:
        with section("3. Ray actor scaling (local Ray, 2 CPUs)"):
            scaling(args)
    with section("4. Projection"):
        projection(args, measured["forward_images_per_s"])
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average {load()}")
    cores = os.cpu_count() or 1
    if os.getloadavg()[1] > cores + 1:
        print(
            f"note: the 5-minute load average exceeds the {cores} cores: other processes "
            "competed with this run; absolute rates are low and the 2-actor speed-up is "
            "understated. Rerun on a quiet machine."
        )


if __name__ == "__main__":
    main()
