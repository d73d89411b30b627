"""The default evaluation's cost, phase by phase, against the passes it makes.

Each phase of `methods.evaluate.evaluate` (per eps: FGSM, PGD-20, each attack of the
eval mode's ensemble on what the ones before it left standing, the audit's probes on
the survivors; then the masked-accuracy curve) runs on a seeded, briefly trained model
of the data set, through the same helpers the evaluation uses. A wrapper records every
forward pass the model makes: its rows and whether autograd is on (an attack's step: a
forward and an input-gradient backward) or off (a prediction, a Square query). The
bound of a phase is what those passes cost at the sizes the phase made them, timed on
the test images in a fresh NCHW tensor as an attack builds them (`PassCost`, re-timed
before each phase because the machine's load drifts); the fraction is bound / measured
time: 1.0 is a phase whose only cost is the model.

Measured 2026-12-03 on the shared 2-core machine beside a report sweep (one thread,
`OMP_NUM_THREADS=1` as in a sweep trial), digits, small_cnn after 3 ERM epochs, the 360
test images, the standard ensemble:
- before: 0.51 for Square at eps 0.05 (93 s of its bound's 58: two thirds of the whole
  evaluation), PGD-20 0.81-0.92, APGD 0.79-1.02. A profile put Square's time in the
  convolutions and max-pooling, not in its own code: the clean test images arrive
  channels-last (their strides come from a numpy view), every attack's tensor is NCHW,
  and an eval-mode forward pass on NCHW took 1.6-2.6x as long. Fix: the model's first
  layer lays CPU batches out channels-last (`methods.models._channels_last`).
- after (and Square's per-query gathers kept until an example breaks): 112 s in all at
  0.95 of the bound; Square 0.90 / 0.92 at eps 0.05 / 0.1, APGD-CE 0.95-1.09, APGD-T
  1.04-1.12, PGD-20 0.90-1.01, FGSM 0.92-0.95, the audit's margin PGD 0.84-1.04, the
  faithfulness curve 0.93. Below 0.7 is only Square at eps 0.2 (0.61; 2.6 s): 4
  examples left standing, 5,000 queries of 4 rows, where the dozen small tensor
  operations of a query cost about as much as a forward pass on 4 rows.
Fractions slightly above 1 are the load's noise between the timing and the phase.

Usage: python benchmarks/evaluate.py [--dataset digits] [--eval-mode standard]
       [--epochs 3] [--limit N] [--repeats 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
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
    """``model`` with a record of its forward passes: (rows, autograd on) per call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: list[tuple[int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((len(x), torch.is_grad_enabled() and x.requires_grad))
        return self.model(x)

    def rows(self, grad: bool) -> int:
        return sum(rows for rows, with_grad in self.calls if with_grad == grad)


#: Batch sizes at which a pass is timed; a call's cost is interpolated between them.
GRID = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class PassCost:
    """Seconds of one forward pass, and of one forward + input gradient, as a function
    of the batch size: timed at ``GRID`` on the test images, linear in between and
    beyond the last size. A call on 12 rows pays the same fixed cost per pass as one on
    256, so the bound is the cost of the passes at the sizes the phase makes them, not
    a per-row cost measured at the evaluation's batch size (which no phase with 12
    examples left standing could reach)."""

    def __init__(self, model: nn.Module, images: torch.Tensor, repeats: int) -> None:
        self.model, self.images, self.repeats = model, images, repeats
        self.table: dict[bool, list[float]] = {}
        self.measure()

    def measure(self) -> None:
        """(Re)time every grid size: the machine's load drifts over a run."""
        self.table = {grad: [self._time(size, grad) for size in GRID] for grad in (False, True)}

    def _time(self, size: int, grad: bool) -> float:
        batch = self.images[torch.arange(size) % len(self.images)]
        labels = torch.zeros(size, dtype=torch.long)

        def once() -> None:
            if not grad:
                with torch.no_grad():
                    self.model(batch)
                return
            x = batch.clone().requires_grad_(True)
            loss = nn.functional.cross_entropy(self.model(x), labels, reduction="sum")
            torch.autograd.grad(loss, x)

        once()  # warm-up
        times = []
        for _ in range(self.repeats):
            started = time.perf_counter()
            once()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    def __call__(self, size: int, grad: bool) -> float:
        seconds = self.table[grad]
        for index in range(1, len(GRID)):
            if size <= GRID[index]:
                low, high = GRID[index - 1], GRID[index]
                share = (size - low) / (high - low)
                return seconds[index - 1] + (seconds[index] - seconds[index - 1]) * share
        return seconds[-1] * size / GRID[-1]

    def bound(self, calls: list[tuple[int, bool]]) -> float:
        return sum(self(size, grad) * count for (size, grad), count in Counter(calls).items())


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
    cost = PassCost(base, images, max(args.repeats, 3) * 3)
    print(
        f"{args.dataset}, {len(labels)} test images, eval mode {args.eval_mode}, batch {BATCH}, "
        f"{torch.get_num_threads()} threads: a pass on {BATCH} rows "
        f"{1e3 * cost(BATCH, False):.1f} ms forward, {1e3 * cost(BATCH, True):.1f} ms "
        f"forward + input gradient; on 8 rows {1e3 * cost(8, False):.2f} / "
        f"{1e3 * cost(8, True):.2f} ms"
    )
    columns = ("seconds", "fwd rows", "grad rows", "calls", "bound s", "/ bound")
    header = f"{'phase':<32} " + " ".join(f"{c:>{10 if 'rows' in c else 8}}" for c in columns)
    print(header)
    print("-" * len(header))
    total = bound_total = 0.0
    for name, run in phases(args, model, images, labels):
        if not name.startswith("("):
            cost.measure()
        model.calls = []
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        if name.startswith("("):
            continue
        bound = cost.bound(model.calls)
        total, bound_total = total + seconds, bound_total + bound
        fraction = bound / seconds if seconds > 0 else float("nan")
        print(
            f"{name:<32} {seconds:>8.2f} {model.rows(False):>10,} {model.rows(True):>10,} "
            f"{len(model.calls):>8,} {bound:>8.2f} {fraction:>8.2f}"
        )
    fraction = bound_total / total
    print(
        f"{'all':<32} {total:>8.2f} {'':>10} {'':>10} {'':>8} {bound_total:>8.2f} {fraction:>8.2f}"
    )


if __name__ == "__main__":
    main()
