"""What the verbs print about an evaluation: one table, one column per model."""

from __future__ import annotations

from collections.abc import Sequence

from methods.audit import audit_note
from methods.results import EvalResult

__all__ = ["format_results"]


def format_results(results: Sequence[tuple[str, EvalResult]]) -> str:
    """A table with one column per model and one row per metric (accuracy in %)."""
    rows: dict[str, list[str]] = {"clean": []}
    for _, result in results:
        rows["clean"].append(f"{100 * result.clean_acc:.1f}")
    for column, (_, result) in enumerate(results):
        for point in result.robust_curve:
            key = f"{point.attack} eps={point.eps:.4g}"
            rows.setdefault(key, ["-"] * len(results))[column] = f"{100 * point.acc:.1f}"
        if result.faithfulness is not None:
            curve = result.faithfulness
            key = "masked-acc AUC (random)"
            rows.setdefault(key, ["-"] * len(results))[column] = (
                f"{100 * curve.auc:.1f} ({100 * curve.random_auc:.1f})"
            )
        if result.corruption_acc is not None:
            key = "corruptions (mean)"
            rows.setdefault(key, ["-"] * len(results))[column] = (
                f"{100 * result.corruption_acc:.1f}"
            )
    headers = ["accuracy %"] + [label for label, _ in results]
    table = [headers] + [[key, *values] for key, values in rows.items()]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        )
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    n = {result.n_eval for _, result in results}
    ensembles = sorted({r.eval_mode for _, r in results} - {"pgd"})  # pgd: no ensemble
    ensemble = f"autoattack = the {'/'.join(ensembles)} ensemble; " if ensembles else ""
    lines.append(
        f"(n = {', '.join(map(str, sorted(n)))} test images; {ensemble}worst = survives "
        "every attack at that eps, the audit's included: the headline)"
    )
    for label, result in results:
        for flag in result.audit_flags:
            note = audit_note((flag,), result.audit_measures)
            lines.append(f"audit warning [{label}]: {note}")
    return "\n".join(lines)
