"""Mean and spread over seeds of every run's eval.json under a folder, as a Markdown table.

Robust accuracy is the per-example worst case over FGSM and PGD-20 at each eps.

Usage: python scripts/method_table.py results/methods
Runs are folders named <method>-seed<k> holding eval.json and config.json.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main(root: str) -> None:
    rows: dict[str, list[dict]] = defaultdict(list)
    for result in sorted(Path(root).glob("*-seed*/eval.json")):
        method = result.parent.name.rsplit("-seed", 1)[0]
        config = json.loads((result.parent / "config.json").read_text())
        evaluation = json.loads(result.read_text())
        evaluation["train_eps"] = config["attack_eps"]
        rows[method].append(evaluation)
    grid = sorted({p["eps"] for runs in rows.values() for r in runs for p in r["robust_curve"]})
    header = ["method", "seeds", "clean"] + [f"robust @ {eps:g}" for eps in grid]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for method, runs in rows.items():
        cells = [method, str(len(runs)), _mean_sd([r["clean_acc"] for r in runs])]
        for eps in grid:
            accs = [
                p["acc"]
                for r in runs
                for p in r["robust_curve"]
                if p["attack"] == "worst" and p["eps"] == eps
            ]
            cells.append(_mean_sd(accs) if accs else "-")
        print("| " + " | ".join(cells) + " |")


def _mean_sd(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    spread = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {spread:.1f}"


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/methods")
