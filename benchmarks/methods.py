"""Training-method cost and Ray Train overhead on `digits`, measured in one run.

1. Epoch seconds of each training method as a ratio of ERM's, on `digits`' train split
   (1,437 images, 11 steps of batch 128; the ragged tail is dropped), `small_cnn`,
   SGD + cosine, training attack eps 0.1 (the data set's default), PGD-10 with random
   start for every PGD-based method, SGT/ASGT `mask_ratio` 0.5, `reg_weight` 1.
   Methods: erm, adversarial (pgd), adversarial (fgsm_rs), sgt, asgt, lgr (feature
   masking + input-gradient penalty via double back-propagation + PGD-10 CE, i.e. the
   full LGR refinement loss). LGR needs a per-image pixel mask: every method trains on
   the same split carrying a random 20% mask per image (exactly 13 of 64 pixels,
   seeded), so all pay the same data-loading cost and only LGR reads the mask.
   Timed: `methods.loop.fit` directly, `EpochMetrics.seconds` (the training part of
   an epoch; no test split is passed, so there is no monitoring at all). Each method
   first runs two warm-up epochs (discarded); the second's time sets how many epochs
   its timed calls run (enough for ~`--min-time` s, so ERM's ~0.15 s epochs are sampled
   ~6x per call); then each repeat calls `fit` once per method (fresh seeded model),
   the method order reversing every repeat, so load from other processes lands on all
   of them. The table gives the median epoch seconds over all timed epochs, images/s,
   the ratio of medians to ERM, and the ratio of fastest epochs to ERM's fastest.
2. Per-job overhead of the Ray Train path: `orchestrator.run.job.train_job` on the
   same small ERM job (digits, small_cnn, 2 epochs, batch 128, per-epoch monitoring
   on the test split as the CLI does, then `EvalConfig(eps=(0.1,), attacks=("pgd",),
   pgd_steps=2, limit=50)`), inline (workers=1) and as a 2-worker `TorchTrainer`
   (gloo DDP) on a local Ray started by the script
   (`ray.init(address="local", num_cpus=2, include_dashboard=False,
   log_to_driver=False)`, its start-up timed separately and excluded), each into a
   fresh temp dir, alternating inline/Ray, `--job-repeats` times, after one untimed
   inline job (TensorBoard's import and other one-time costs of the process).
   Wall seconds are measured around the `train_job` call (data set loaded once
   beforehand); "training s" sums the jobs' `EpochMetrics.seconds` (rank 0's). The
   difference is what a Train job costs beyond the work itself: controller and
   worker-group start-up, process group, per-worker imports and data loading,
   per-epoch reporting and checkpoint upload, copying the result back. On 2 cores
   two DDP workers cannot be faster than one process: this is overhead, not speed.

Measured on a 2-core AMD EPYC (torch 2.14.1 CPU, default 2 threads, ray 2.60),
2026-11-23, default run (~2.5 min wall, in a quiet spell of a shared machine):
  method                 epoch s (median)   x ERM   x ERM (fastest epochs)
  erm                         0.162          1.00      1.00   (30 epochs)
  adversarial (pgd)           1.323          8.16      7.88   (5)
  adversarial (fgsm_rs)       0.277          1.71      1.66   (15)
  sgt                         0.393          2.43      2.47   (10)
  asgt                        1.527          9.42      9.51   (5)
  lgr                         1.683         10.38      9.36   (5)
  train_job, ERM 2 epochs: inline 1.0 s (0.9, 1.0), TorchTrainer with 2 workers
  24.3 s (25.9, 22.7), 0.3-0.5 s of either spent in training epochs: +23.3 s of
  overhead per job (25x; ray.init, excluded, 4.0 s).
PGD-10 sets the cost: PGD-AT, ASGT and LGR each run 11 forward+backward passes a
step or more (~8-10x ERM); FGSM-RS is the cheap adversarial option (~1.7x), SGT
(one saliency pass + two forwards) ~2.4x. A TorchTrainer job pays ~20-25 s before and
after its work on 2 cores, so jobs shorter than a few minutes belong inline.
Under load from other processes (torch's 2 threads competing for 2 cores) every
number here rises several-fold and erratically (ERM epochs up to 2-5 s were seen):
read the ratios only from a run where min and median stay close.

Usage: python benchmarks/methods.py [--repeats 5] [--min-time 1.0] [--epochs 1]
       [--job-repeats 2] [--job-epochs 2] [--skip-ray | --skip-methods] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from methods.data import Dataset, ImageSplit, load_dataset
from methods.loop import LoopConfig, fit
from methods.models import build_model
from methods.training import METHODS, TrainingMethod, build_method

DATASET = "digits"
MODEL = "small_cnn"
MASK_SHARE = 0.2  # fraction of pixels in LGR's random per-image mask

# (row label, registry name, extra options)
METHOD_CASES: tuple[tuple[str, str, dict[str, object]], ...] = (
    ("erm", "erm", {}),
    ("adversarial (pgd)", "adversarial", {"training_attack": "pgd"}),
    ("adversarial (fgsm_rs)", "adversarial", {"training_attack": "fgsm_rs"}),
    ("sgt", "sgt", {}),
    ("asgt", "asgt", {}),
    ("lgr", "lgr", {}),
)


# Part 1: epoch time per method


def random_masks(n: int, shape: tuple[int, int], share: float, seed: int) -> torch.Tensor:
    """(n, 1, H, W) bool masks, each marking exactly round(share * H * W) random pixels."""
    h, w = shape
    k = round(share * h * w)
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(n, h * w, generator=generator)
    masks = torch.zeros(n, h * w, dtype=torch.bool)
    masks.scatter_(1, scores.topk(k, dim=1).indices, True)
    return masks.view(n, 1, h, w)


def build_methods(args: argparse.Namespace, eps: float) -> dict[str, TrainingMethod]:
    common = {
        "attack_eps": eps,
        "attack_steps": args.attack_steps,
        "mask_ratio": args.mask_ratio,
        "reg_weight": args.reg_weight,
    }
    methods = {}
    for label, name, extra in METHOD_CASES:
        known = METHODS[name].Options.field_names()
        options = {k: v for k, v in {**common, **extra}.items() if k in known}
        methods[label] = build_method(name, **options)
    return methods


def time_epochs(
    method: TrainingMethod, train: ImageSplit, dataset: Dataset, epochs: int, seed: int
) -> list[float]:
    """Epoch seconds of one `fit` call on a fresh seeded model (no test split: no monitoring)."""
    torch.manual_seed(seed)
    model = build_model(MODEL, dataset.input_shape, dataset.num_classes, dataset.mean, dataset.std)
    config = LoopConfig(epochs=epochs, batch_size=128, seed=seed)
    history = fit(model, method, train, config=config, device="cpu")
    return [m.seconds for m in history]


def bench_methods(args: argparse.Namespace) -> None:
    dataset = load_dataset(DATASET, seed=args.seed)
    images, labels = dataset.train.images, dataset.train.labels
    masks = random_masks(len(labels), tuple(images.shape[2:]), MASK_SHARE, args.seed)
    train = ImageSplit(images, labels, masks)
    eps = dataset.default_eps
    methods = build_methods(args, eps)
    steps = len(train) // 128
    print(
        f"1. epoch time per method: {DATASET} train ({len(train)} images, {steps} steps of "
        f"batch 128), {MODEL}, eps {eps:g}, PGD-{args.attack_steps} training attack, "
        f"mask_ratio {args.mask_ratio:g}, reg_weight {args.reg_weight:g};"
    )
    # Warm-up (allocator, oneDNN primitives, autograd): two epochs each, discarded. The
    # second (the first carries one-time costs) sizes the calls: a method gets enough
    # epochs per call to run ~--min-time s, so a short ERM epoch is sampled often enough
    # that one burst of load from other processes does not decide its median.
    epochs = {}
    for label, method in methods.items():
        warm = time_epochs(method, train, dataset, 2, args.seed)[-1]
        epochs[label] = max(args.epochs, math.ceil(args.min_time / warm))
    print(
        f"   all methods carry random {MASK_SHARE:.0%} per-image masks (LGR uses them); "
        f"2 warm-up epochs each, then {args.repeats} interleaved repeats of one fit call "
        f"per method of >= {args.epochs} epoch(s), ~{args.min_time:g} s",
        flush=True,
    )
    seconds: dict[str, list[float]] = {label: [] for label in methods}
    order = list(methods)
    for repeat in range(args.repeats):
        for label in order:
            seconds[label] += time_epochs(
                methods[label], train, dataset, epochs[label], args.seed + repeat
            )
        order.reverse()

    erm, erm_min = statistics.median(seconds["erm"]), min(seconds["erm"])
    header = (
        f"   {'method':<22} {'epochs':>6} {'epoch s':>8} {'min':>7} {'max':>7} {'img/s':>7} "
        f"{'x ERM':>6} {'x ERM (min)':>11}"
    )
    print(header)
    print("   " + "-" * (len(header) - 3))
    for label, values in seconds.items():
        median = statistics.median(values)
        print(
            f"   {label:<22} {len(values):>6} {median:>8.3f} {min(values):>7.3f} "
            f"{max(values):>7.3f} {steps * 128 / median:>7,.0f} {median / erm:>6.2f} "
            f"{min(values) / erm_min:>11.2f}"
        )
    print(
        "   (epochs: timed epochs; epoch s: their median; img/s from the median; "
        "x ERM: ratio of medians; x ERM (min): ratio of fastest epochs, the less "
        "load-sensitive of the two)"
    )


# Part 2: Ray Train per-job overhead


def bench_ray_overhead(args: argparse.Namespace) -> None:
    import ray

    from orchestrator.config import EvalConfig, RunSettings, TrainConfig
    from orchestrator.run.job import train_job

    dataset = load_dataset(DATASET, seed=args.seed)
    config = TrainConfig(
        method="erm", dataset=DATASET, model=MODEL, epochs=args.job_epochs, seed=args.seed
    ).resolved(dataset.default_eps)
    eval_config = EvalConfig(eps=(0.1,), attacks=("pgd",), pgd_steps=2, limit=50)

    def run_training(out_dir: Path, workers: int):
        settings = RunSettings(storage=str(out_dir), device="cpu", workers=workers)
        return train_job(config, dataset, out_dir, settings, eval_config=eval_config)

    print(
        f"\n2. per-job overhead of the TorchTrainer path: train_job, ERM on {DATASET}, "
        f"{args.job_epochs} epochs, PGD-2 eval on 50 images; inline (workers=1) vs "
        f"workers=2 (gloo DDP), alternating, {args.job_repeats} repeats",
        flush=True,
    )
    # One untimed inline job first: the process's one-time costs (TensorBoard's import,
    # the evaluation's first attacks) would otherwise land on the first inline repeat.
    # Ray jobs need no such warm-up: every TorchTrainer starts fresh worker processes.
    with tempfile.TemporaryDirectory(prefix="limelight-bench-") as root:
        run_training(Path(root), workers=1)
    ray.shutdown()
    start = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=args.ray_logs)
    ray_init = time.perf_counter() - start
    walls: dict[int, list[float]] = {1: [], 2: []}
    trained: dict[int, list[float]] = {1: [], 2: []}  # sum of the epochs' training seconds
    try:
        with tempfile.TemporaryDirectory(prefix="limelight-bench-") as root:
            for repeat in range(args.job_repeats):
                for workers in (1, 2):
                    out_dir = Path(root) / f"r{repeat}-w{workers}"
                    start = time.perf_counter()
                    outcome = run_training(out_dir, workers)
                    walls[workers].append(time.perf_counter() - start)
                    trained[workers].append(sum(m.seconds for m in outcome.history))
                    print(
                        f"   repeat {repeat + 1}, workers={workers}: "
                        f"{walls[workers][-1]:6.1f} s wall, "
                        f"{trained[workers][-1]:.2f} s of it training epochs",
                        flush=True,
                    )
    finally:
        ray.shutdown()
    inline, ddp = statistics.median(walls[1]), statistics.median(walls[2])
    print(f"   ray.init (excluded from the jobs): {ray_init:.1f} s")
    print(f"   {'path':<26} {'wall s (median)':>15} {'per repeat':>12} {'training s':>10}")
    for label, workers in (("inline (workers=1)", 1), ("TorchTrainer (workers=2)", 2)):
        print(
            f"   {label:<26} {statistics.median(walls[workers]):>15.1f} "
            f"{_fmt_list(walls[workers]):>12} {statistics.median(trained[workers]):>10.2f}"
        )
    print(
        f"   overhead per job: {ddp - inline:+.1f} s; "
        f"ratio TorchTrainer / inline: {ddp / inline:.1f}x"
    )
    print(
        f"   (on {os.cpu_count()} cores two DDP workers cannot be faster than one process: "
        "this is the Train path's overhead, not a speed-up measurement)"
    )


def _fmt_list(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=(
            "Measured in one run on digits/small_cnn: (1) each training method's epoch "
            "seconds (methods.loop.fit, training part only) as a ratio of ERM's: erm, "
            "adversarial pgd and fgsm_rs, sgt, asgt, lgr, interleaved repeats, medians; "
            "(2) wall seconds of orchestrator.run.job.train_job on a small ERM job "
            "inline vs a 2-worker Ray Train TorchTrainer on a local 2-CPU Ray, and the "
            "difference (per-job overhead). Default run ~2.5 min on 2 cores."
        ),
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="interleaved repeats of part 1 (default 5)"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=1,
        help="part 1: at least this many timed epochs per fit call (default 1)",
    )
    parser.add_argument(
        "--min-time",
        type=float,
        default=1.0,
        help="part 1: seconds per fit call (short epochs get more of them; default 1.0)",
    )
    parser.add_argument(
        "--attack-steps", type=int, default=10, help="PGD steps of the training attack (default 10)"
    )
    parser.add_argument(
        "--mask-ratio", type=float, default=0.5, help="SGT/ASGT masked fraction (default 0.5)"
    )
    parser.add_argument(
        "--reg-weight", type=float, default=1.0, help="SGT/ASGT/LGR regularizer weight (default 1)"
    )
    parser.add_argument(
        "--job-repeats",
        type=int,
        default=2,
        help="inline/TorchTrainer job pairs in part 2 (default 2, ~25 s per pair on 2 idle cores)",
    )
    parser.add_argument(
        "--job-epochs", type=int, default=2, help="epochs of the part 2 ERM job (default 2)"
    )
    parser.add_argument("--skip-ray", action="store_true", help="run part 1 only")
    parser.add_argument("--skip-methods", action="store_true", help="run part 2 only")
    parser.add_argument(
        "--ray-logs", action="store_true", help="show Ray worker output (default: hidden)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds models and masks (default 0)")
    args = parser.parse_args(argv)
    for name in ("repeats", "epochs", "attack_steps", "job_repeats", "job_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.min_time > 0:
        parser.error("--min-time must be > 0")

    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    if not args.skip_methods:
        bench_methods(args)
    if not args.skip_ray:
        bench_ray_overhead(args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
