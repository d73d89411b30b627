"""The default evaluation's cost, phase by phase, against the passes it makes.

Each phase of `methods.evaluate.evaluate` (per eps: FGSM, PGD-20, each attack of the
eval mode's ensemble on what the ones before it left standing, the audit's probes on
the survivors; then the masked-accuracy curve) runs on a seeded, briefly trained model
of the data set, through the same helpers the evaluation uses. A wrapper counts the
rows every forward pass sees, split by whether autograd is on (an attack's step: a
forward and an input-gradient backward) or off (a prediction, a Square query). The
bound of a phase is what those rows cost at the model's measured per-row speed
(forward alone, and forward + input gradient, at the evaluation's batch size); the
fraction is bound / measured time: 1.0 is a phase whose only cost is the model.

Measured 2026-12-03 on the idle 2-core machine (torch 2.14.1, 2 threads), digits,
small_cnn after 3 ERM epochs, the 360 test images, the standard ensemble: 99 s in all at
0.73 of the bound. Square (5,000 queries, forward passes only) is two thirds of it
(40.5 + 24.0 + 2.7 s, 0.79-0.84 of the bound where many examples stand); APGD-T (9
targets) 21 s at 0.65-0.73; APGD-CE 0.64-0.66; PGD-20 0.51-0.76; the audit's margin PGD
(2 x 100 steps) 0.45-0.67; the faithfulness curve 0.80. The low fractions at eps 0.2
(0.13-0.35) are phases with 12-42 examples left standing: a few rows a call, against
a bound measured at batch 256.

Usage: python benchmarks/evaluate.py [--dataset digits] [--eval-mode standard]
       [--epochs 3] [--limit N] [--repeats 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from methods.attacks import build_attack
from methods.audit import ProbeSettings, stronger_attacks
from methods.data import load_dataset
from methods.evaluate import (
    ENSEMBLES,
    EVAL_PGD_RESTARTS,
    EVAL_PGD_STEPS,
    _correct_on,
    _first,
    correct_under,
)
from methods.faithfulness import masked_accuracy_curve
from methods.loop import LoopConfig, fit
from methods.models import build_model, default_model
from methods.training import ERM

BATCH = 256  # EvalConfig's batch size


class Counting(nn.Module):
    """``model`` with a count of the rows its forward passes see, by autograd state."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.grad_rows = 0
        self.plain_rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad_rows += len(x)
        else:
            self.plain_rows += len(x)
        return self.model(x)


def per_row_seconds(model: nn.Module, images: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median seconds per row of a forward pass and of a forward + input gradient, at
    the evaluation's batch size."""
    batch = images[:BATCH]
    labels = torch.zeros(len(batch), dtype=torch.long)

    def forward() -> None:
        with torch.no_grad():
            model(batch)

    def forward_backward() -> None:
        x = batch.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x), labels)
        torch.autograd.grad(loss, x)

    def median(fn: Callable[[], None]) -> float:
        fn()  # warm-up
        times = []
        for _ in range(max(repeats, 3) * 3):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return statistics.median(times) / len(batch)

    return median(forward), median(forward_backward)


def phases(args: argparse.Namespace, model: Counting, images, labels):
    """(phase, callable) in the evaluation's order; each callable runs one phase."""
    kw = {"batch_size": BATCH, "device": "cpu", "seed": args.seed}
    dataset_eps = load_dataset(args.dataset).eval_eps
    probes = ProbeSettings()
    state = {"survived": None}
    plan: list[tuple[str, Callable[[], None]]] = []
    plan.append(
        ("clean", lambda: state.update(survived=correct_under(model, images, labels, None, **kw)))
    )
    for eps in dataset_eps:

        def reset(eps=eps) -> None:
            state["at_eps"] = state["survived"].clone()

        plan.append((f"(eps {eps:g})", reset))
        for name, options in (
            ("fgsm", {}),
            ("pgd", {"steps": EVAL_PGD_STEPS, "restarts": EVAL_PGD_RESTARTS}),
        ):
            attack = build_attack(name, eps, **options)

            def curve(attack=attack) -> None:
                state["at_eps"] &= correct_under(model, images, labels, attack, **kw)

            plan.append((f"{name} @ {eps:g}", curve))
        for name, options in ENSEMBLES[args.eval_mode]:
            attack = build_attack(name, eps, **options)

            def ensemble(attack=attack) -> None:
                standing = state["at_eps"]
                state["at_eps"] = standing & _correct_on(
                    model, images, labels, attack, standing, **kw
                )

            plan.append((f"{name} @ {eps:g}", ensemble))
        blackbox = not any(name == "square" for name, _ in ENSEMBLES[args.eval_mode])
        for measure, attack in stronger_attacks(eps, probes, blackbox=blackbox):

            def probe(attack=attack) -> None:
                standing = _first(state["at_eps"], probes.max_examples)
                broken = standing & ~_correct_on(model, images, labels, attack, standing, **kw)
                state["at_eps"] &= ~broken

            plan.append((f"audit {measure} @ {eps:g}", probe))
    plan.append(("faithfulness curve", lambda: masked_accuracy_curve(model, images, labels, **kw)))
    return plan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--eval-mode", default="standard", choices=tuple(ENSEMBLES))
    parser.add_argument("--epochs", type=int, default=3, help="ERM epochs of the model")
    parser.add_argument("--limit", type=int, help="the first N test images (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the per-row timing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    dataset = load_dataset(args.dataset)
    torch.manual_seed(args.seed)
    base = build_model(
        default_model(args.dataset), dataset.input_shape, dataset.num_classes,
        dataset.mean, dataset.std,
    )  # fmt: skip
    fit(base, ERM(), dataset.train, config=LoopConfig(epochs=args.epochs, seed=args.seed))
    base.eval()
    images, labels = dataset.test.tensors()
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    model = Counting(base).eval()
    forward_s, gradient_s = per_row_seconds(base, images, args.repeats)
    print(
        f"{args.dataset}, {len(labels)} test images, eval mode {args.eval_mode}, batch {BATCH}, "
        f"{torch.get_num_threads()} threads: {1e6 * forward_s:.1f} us a row forward, "
        f"{1e6 * gradient_s:.1f} us forward + input gradient"
    )
    columns = ("seconds", "fwd rows", "grad rows", "bound s", "/ bound")
    header = f"{'phase':<32} " + " ".join(f"{c:>{10 if 'rows' in c else 8}}" for c in columns)
    print(header)
    print("-" * len(header))
    total = bound_total = 0.0
    for name, run in phases(args, model, images, labels):
        model.grad_rows = model.plain_rows = 0
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        if name.startswith("("):
            continue
        bound = model.plain_rows * forward_s + model.grad_rows * gradient_s
        total, bound_total = total + seconds, bound_total + bound
        fraction = bound / seconds if seconds > 0 else float("nan")
        print(
            f"{name:<32} {seconds:>8.2f} {model.plain_rows:>10,} {model.grad_rows:>10,} "
            f"{bound:>8.2f} {fraction:>8.2f}"
        )
    fraction = bound_total / total
    print(f"{'all':<32} {total:>8.2f} {'':>10} {'':>10} {bound_total:>8.2f} {fraction:>8.2f}")


if __name__ == "__main__":
    main()
