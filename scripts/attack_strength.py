"""Is the default evaluation strong enough? The check of issue 10, on digits.

Trains (or reuses) the ERM and PGD-AT digits models of the old `make run` (seed 0,
the data set's defaults), then compares at one eps:

- the default evaluation (`limelight evaluate`'s: FGSM, PGD-20, the standard
  ensemble APGD-CE + APGD-T + Square, and the audit's probes), its ``worst`` point;
- the per-example worst case over an independent battery: PGD-100 (step eps/10),
  PGD-20 with 5 restarts, a margin-loss PGD-50 with 2 restarts, Square with 1,000
  queries, and a transfer attack (PGD-20 on the ERM model, replayed on the target).

The default evaluation should be within 1 point of the battery (or below it).

    python scripts/attack_strength.py [--eps 0.2] [--storage results] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from methods.attacks import build_attack, model_mode
from methods.evaluate import correct_under, evaluate
from orchestrator.checkpoints import read_checkpoint, restore_model
from orchestrator.config import EvalConfig, RunSettings, TrainConfig
from orchestrator.run import run


def trained(method: str, seed: int, storage: str) -> torch.nn.Module:
    """The digits model of ``method`` (trained once, then read from its checkpoint)."""
    config = TrainConfig.create(method=method, dataset="digits", seed=seed)
    settings = RunSettings(storage=storage, out=f"strength/{method}-seed{seed}", device="cpu")
    checkpoint = settings.run_dir(config) / "checkpoint.pt"
    if not checkpoint.is_file():
        # Only the weights matter here: the run's own evaluation is kept minimal.
        run(config, settings, eval_config=EvalConfig(eval_mode="pgd", audit_probes=False))
    return restore_model(read_checkpoint(checkpoint)).eval()


def battery(eps: float) -> dict[str, object]:
    return {
        "pgd-100 (step eps/10)": build_attack("pgd", eps, steps=100, step_size=eps / 10),
        "pgd-20 x5 restarts": build_attack("pgd", eps, steps=20, restarts=5),
        "margin pgd-50 x2 restarts": build_attack("pgd", eps, steps=50, restarts=2, loss="margin"),
        "square 1000 queries": build_attack("square", eps, queries=1000),
    }


def transfer_correct(source, target, images, labels, eps: float, seed: int) -> torch.Tensor:
    """Correctness of ``target`` on PGD-20 examples crafted against ``source``."""
    attack = build_attack("pgd", eps, steps=20)
    generator = torch.Generator().manual_seed(seed)
    adversarial = attack(source, images, labels, generator=generator)
    with torch.no_grad(), model_mode(target, "eval"):
        return target(adversarial).argmax(1) == labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eps", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", default="results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)

    from methods.data import load_dataset

    images, labels = load_dataset("digits").test.tensors()
    erm = trained("erm", args.seed, args.storage)
    target = trained("adversarial", args.seed, args.storage)

    started = time.perf_counter()
    default = evaluate(target, images, labels, eps_grid=(args.eps,), seed=args.seed)
    default_s = time.perf_counter() - started
    print(f"PGD-AT digits seed {args.seed}, eps {args.eps:g}, n = {len(labels)}")
    for point in default.robust_curve:
        print(f"  default evaluation  {point.attack:<12} {100 * point.acc:5.1f}%")
    print(f"  audit flags: {', '.join(default.audit_flags) or 'none'}  ({default_s:.0f} s)")

    started = time.perf_counter()
    survived = correct_under(target, images, labels)
    for name, attack in battery(args.eps).items():
        correct = correct_under(target, images, labels, attack, seed=args.seed)
        print(f"  battery  {name:<28} {100 * correct.float().mean():5.1f}%")
        survived &= correct
    correct = transfer_correct(erm, target, images, labels, args.eps, args.seed)
    print(f"  battery  {'transfer from ERM (pgd-20)':<28} {100 * correct.float().mean():5.1f}%")
    survived &= correct
    battery_worst = survived.float().mean().item()
    battery_s = time.perf_counter() - started

    headline = default.acc("worst", args.eps)
    print(f"default evaluation (worst): {100 * headline:.1f}%")
    print(f"battery (worst):            {100 * battery_worst:.1f}%  ({battery_s:.0f} s)")
    gap = headline - battery_worst
    if gap <= 0:
        verdict = "at or below the battery's worst case (as strong or stronger)"
    elif gap <= 0.01:
        verdict = "within 1 point above the battery's worst case"
    else:
        verdict = "ABOVE the battery's worst case by more than 1 point: it overstates"
    print(f"difference: {100 * gap:+.1f} points: the default evaluation is {verdict}")


if __name__ == "__main__":
    main()
