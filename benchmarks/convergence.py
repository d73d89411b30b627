"""Validation accuracy per epoch: how many epochs a report section's models need.

Trains each method once (one seed) as a sweep trial would (the same resolved
``TrainConfig``, the same held-out validation split, the shared loop with its cosine
schedule over ``--epochs``) and prints the clean validation accuracy after every epoch,
with PGD-10 accuracy at the training eps every ``--robust-every`` epochs. No final
evaluation and no Ray: the curve is what the loop measures anyway.

One run of N epochs anneals over N epochs: at an epoch E < N its learning rate is still
higher than a fresh E-epoch run's at its end; run the chosen epochs fresh to confirm.

Measured 2026-12-03 on one core of the shared 2-core machine, seed 0, mnist5k (400
validation images), training eps 0.2 and PGD-5: over 15 epochs clean accuracy is flat
by epoch 8 (ERM 98.0, PGD-AT 98.5, ASGT 99.3, SGT 98.8 at the end), while PGD-AT's
PGD-10 accuracy at 0.2 rises 77.7, 87.7, 90.0, 90.2, 91.3 at epochs 3, 6, 9, 12, 15
(ASGT 81.7 to 86.8). Fresh 8-epoch runs: PGD-AT 98.3 clean, 86.8 PGD-10. PGD-AT at eps
0.3 for 4 epochs (the first report's setting): 44.0, 61.5, 70.0, 70.7. 37 minutes in
all with the digits curves; the tables are in docs/protocol.md.

Usage: python benchmarks/convergence.py [--dataset mnist5k] [--epochs 15]
       [--methods erm,adversarial,asgt] [--attack-eps 0.2] [--attack-steps 5]
       [--seed 0] [--robust-every 5] [--out curves.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from methods.data import load_dataset, split_validation
from methods.loop import EpochMetrics, fit
from orchestrator.config import TrainConfig
from orchestrator.run.setup import build_method, initial_model, loop_config

#: The methods that train against an attack (--attack-eps, --attack-steps).
ATTACKED = ("adversarial", "asgt", "lgr")


def curve(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """One method's run: its resolved config and the metrics of every epoch."""
    values: dict[str, Any] = {
        "method": method,
        "dataset": args.dataset,
        "epochs": args.epochs,
        "seed": args.seed,
        "val_fraction": args.val_fraction,
        "monitor_every": args.robust_every,
    }
    if method in ATTACKED:
        values.update(attack_eps=args.attack_eps, attack_steps=args.attack_steps)
    else:
        values.update(monitor_eps=args.attack_eps)
    if method == "sgt" and args.dataset.startswith("mnist"):
        values.update(saliency_target="log_prob")  # the report's SGT setting on MNIST
    dataset = load_dataset(args.dataset, seed=args.seed)
    dataset, validation = split_validation(dataset, args.val_fraction)
    config = TrainConfig.create(**values).resolved(dataset.default_eps)
    model = initial_model(config, dataset, None)

    def show(metrics: EpochMetrics) -> None:
        robust = "" if metrics.test_robust_acc is None else f" PGD-10 {metrics.test_robust_acc:.3f}"
        print(
            f"  {method} epoch {metrics.epoch:2d}: val {metrics.test_acc:.3f}{robust} "
            f"({metrics.seconds:.0f} s)",
            flush=True,
        )

    started = time.perf_counter()
    history = fit(
        model,
        build_method(config),
        dataset.train,
        config=loop_config(config),
        test=validation,
        monitor_name="val",
        device="cpu",
        on_epoch_end=show,
    )
    return {
        "config": config.to_dict(),
        "n_val": len(validation),
        "val_acc": [m.test_acc for m in history],
        "val_pgd10": [m.test_robust_acc for m in history],
        "train_s": [m.seconds for m in history],
        "wall_s": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--methods", default="erm,adversarial,asgt")
    parser.add_argument("--attack-eps", type=float, default=0.2, help="training eps")
    parser.add_argument("--attack-steps", type=int, default=5, help="training PGD steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--robust-every", type=int, default=5, help="PGD-10 every N epochs")
    parser.add_argument("--out", type=Path, help="write the curves here as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    curves = {}
    for method in args.methods.split(","):
        print(f"{method}:", flush=True)
        curves[method] = curve(method, args)
    print("\nepoch  " + "  ".join(f"{m:>11}" for m in curves))
    for epoch in range(args.epochs):
        cells = [f"{100 * c['val_acc'][epoch]:11.1f}" for c in curves.values()]
        print(f"{epoch + 1:5d}  " + "  ".join(cells))
    for method, c in curves.items():
        print(f"{method}: {c['wall_s']:.0f} s, {c['n_val']} validation images")
    if args.out is not None:
        args.out.write_text(json.dumps(curves, indent=2))


if __name__ == "__main__":
    main()
