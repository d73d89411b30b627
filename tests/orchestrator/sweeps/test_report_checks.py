"""The report's checks of its baselines and claims (issue 19): a baseline far below
ERM's clean accuracy or still rising at its last epoch is marked and the claims resting
on it are not judged; claims compare at a matched budget; margins carry the binomial
spread of n; PGD-20 far above the worst case is marked. Rows through the real row
builder, writer and reader; no training."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from methods.loop import EpochMetrics
from orchestrator.leaderboard import SWEEP, append_rows, read_leaderboard, read_rows_file
from orchestrator.sweeps.report import (
    ReportInputs,
    TrainingCheck,
    _difference,
    claims_section,
    late_gain,
    render_report,
)
from orchestrator.sweeps.rows import config_id, result_row
from orchestrator.sweeps.spec import SweepSpec, parse_spec

SPEC = parse_spec(
    {
        "name": "report-checks",
        "method": ["erm", "adversarial", "sgt", "asgt"],
        "dataset": "mnist5k",
        "sampler": "grid",
        "train": {
            "epochs": 4,
            "adversarial": {"attack_eps": 0.2, "attack_steps": 5},
            "asgt": {"attack_eps": 0.2, "attack_steps": 5},
        },
        "eval": {"eval_eps": 0.2, "grid": [0.1, 0.3], "attacks": ["fgsm", "pgd"]},
        "objective": {"robust_acc": "max"},
        "seeds": [0, 1, 2],
        "sampler_seed": 0,
    }
)
FLAT = (0.95, 0.97, 0.975, 0.975)  # a validation curve that has stopped rising: +0.5
# PGD-AT at eps 0.3 for 4 epochs on mnist5k (benchmarks/convergence.py): its last epoch
# adds 0.7 points, its second half 9.2 over the first.
RISING = (0.440, 0.615, 0.700, 0.707)


def _row(
    method: str,
    seed: int,
    *,
    clean: float,
    robust: dict[float, float],
    val: tuple[float, ...] = FLAT,
    n: int = 1000,
    pgd_over: float | dict[float, float] = 0.01,
    spec: SweepSpec = SPEC,
    **options: float,
):
    """One trial's row: worst case ``robust[eps]`` (plus a seed's jitter), PGD-20
    ``pgd_over`` above it (at every eps, or per eps: else 0.01), FGSM 5 points above;
    ``val`` the per-epoch validation accuracy the loop would have returned."""
    config = spec.trial_config(method, options, seed).resolved(0.3)
    jitter = 0.01 * (seed - 1)
    curve = []
    for eps, acc in robust.items():
        worst = acc + jitter
        over = pgd_over.get(eps, 0.01) if isinstance(pgd_over, dict) else pgd_over
        for attack, value in (
            ("fgsm", worst + 0.05),
            ("pgd", worst + over),
            ("autoattack", worst),
            ("worst", worst),
        ):
            curve.append(
                {"attack": attack, "eps": eps, "acc": min(max(value, 0.0), clean + jitter)}
            )
    history = [
        EpochMetrics(epoch=i + 1, loss=0.1, train_acc=0.9, test_acc=acc, test_robust_acc=None,
                     seconds=1.0)
        for i, acc in enumerate(val)
    ]  # fmt: skip
    return result_row(
        sweep=spec.name,
        trial_id=f"{method}-{config_id(method, options)}-{seed}",
        config_id=config_id(method, options),
        method=method,
        dataset=spec.dataset,
        config=config.to_dict(),
        eval_eps=spec.eval_eps,
        status="ok",
        wall_s=1.0,
        history=history,
        clean_acc=clean + jitter,
        robust_curve=curve,
        n_eval=n,
    )


def _rows(
    *,
    erm: dict | None = None,
    adversarial: dict | None = None,
    asgt: dict | None = None,
    extra: list[dict] | None = None,
    n: int = 1000,
):
    """Three seeds of each method on ``n`` test images; the keyword dicts change a
    method's defaults, ``extra`` adds settings."""
    defaults = {
        "erm": {"clean": 0.97, "robust": {0.1: 0.70, 0.2: 0.10, 0.3: 0.0}},
        "adversarial": {"clean": 0.96, "robust": {0.1: 0.90, 0.2: 0.60, 0.3: 0.20}},
        "sgt": {"clean": 0.96, "robust": {0.1: 0.72, 0.2: 0.15, 0.3: 0.0}},
        "asgt": {"clean": 0.97, "robust": {0.1: 0.92, 0.2: 0.70, 0.3: 0.30}},
    }
    for method, change in (("erm", erm), ("adversarial", adversarial), ("asgt", asgt)):
        defaults[method].update(change or {})
    settings = [{"method": m, **values} for m, values in defaults.items()] + (extra or [])
    return [_row(seed=seed, n=n, **s) for s in settings for seed in (0, 1, 2)]


def _report(tmp_path: Path, rows) -> str:
    append_rows(str(tmp_path), rows)
    frame = read_leaderboard(str(tmp_path))
    return render_report(ReportInputs([SPEC], frame, {}), tmp_path / "results.md")


def _section(text: str, heading: str) -> str:
    return text.split(heading)[1].split("\n## ")[0]


def _headline(text: str) -> str:
    """The mnist5k section's headline table and its notes."""
    return _section(text, "## mnist5k").split("By attack:")[0]


def _attacks(text: str) -> str:
    """The mnist5k section's attack table and its note."""
    return _section(text, "## mnist5k").split("By attack:")[1]


def _claims(text: str) -> str:
    """The claims, less the paragraph that explains them."""
    return _section(text, "## The papers' claims").split("\n\n", 2)[2]


def _line(text: str, *parts: str) -> str:
    (line,) = [line for line in text.splitlines() if all(p in line for p in parts)]
    return line


def _table_row(text: str, label: str) -> str:
    (row,) = [line for line in text.splitlines() if line.startswith(f"| {label} ")]
    return row


def test_a_converged_baseline_gets_a_verdict(tmp_path):
    text = _report(tmp_path, _rows())
    claims = _claims(text)
    assert "not judged" not in claims and "undertrained" not in _headline(text)
    versus_at = _line(claims, "vs PGD-AT trained at eps 0.2", "worst accuracy")
    assert "ASGT trained at eps 0.2" in versus_at and "n = 1000" in versus_at
    assert "**smaller than claimed** (+10.0 of +35)" in versus_at
    assert "**agrees**" in _line(claims, "vs ERM", "worst accuracy")
    assert "**holds at some eps only**" in _line(claims, "SGT improves robustness")
    table = _headline(text)
    assert _table_row(table, "PGD-AT").startswith("| PGD-AT | 3 | 1000 | 96.0 ± 1.0 |")
    assert "| +0.5 |" in _table_row(table, "ERM")  # the flat curve's late gain


def test_a_baseline_far_below_erm_is_marked_and_its_claim_not_judged(tmp_path):
    text = _report(tmp_path, _rows(adversarial={"clean": 0.68}))  # 29 points below ERM
    table = _headline(text)
    assert _table_row(table, "PGD-AT *undertrained*")
    assert "**PGD-AT: undertrained**: clean accuracy 29.0 points below ERM's" in table
    claims = _claims(text)
    for attack in ("PGD-20", "worst"):
        line = _line(claims, "vs PGD-AT", f"{attack} accuracy")
        assert "**not judged: baseline undertrained** (PGD-AT: clean accuracy" in line
        assert "agrees" not in line and "smaller" not in line and "does not hold" not in line
    assert "**agrees**" in _line(claims, "vs ERM", "worst accuracy")  # ERM is fine


def test_a_baseline_still_rising_is_marked_and_its_claim_not_judged(tmp_path):
    # Clean accuracy within 5 points of ERM's, but +9.2 points in the second half.
    text = _report(tmp_path, _rows(adversarial={"clean": 0.95, "val": RISING}))
    table = _headline(text)
    assert "| +9.2 |" in _table_row(table, "PGD-AT *undertrained*")
    assert "still rising, +9.2 points at its last epoch over its best in the first half" in table
    line = _line(_claims(text), "vs PGD-AT", "worst accuracy")
    assert "**not judged: baseline undertrained**" in line


@pytest.mark.parametrize(
    ("curve", "rising"),
    [
        # Measured on mnist5k, one seed (docs/protocol.md): fresh 8-epoch runs of
        # PGD-AT and ASGT at eps 0.2, ERM over 15 epochs, then ERM and PGD-AT at eps 0.3
        # for 4 epochs as the first report trained them.
        ((0.712, 0.933, 0.967, 0.975, 0.980, 0.983, 0.983, 0.983), False),
        ((0.940, 0.980, 0.975, 0.983, 0.980, 0.988, 0.988, 0.988), False),
        ((0.918, 0.952, 0.960, 0.973, 0.975, 0.973, 0.978, 0.980,
          0.978, 0.980, 0.980, 0.980, 0.980, 0.980, 0.980), False),
        ((0.918, 0.960, 0.967, 0.970), False),  # +1.0: shown as 1.0, not above it
        (RISING, True),
    ],
)  # fmt: skip
def test_the_rising_rule_on_measured_curves(curve, rising):
    check = TrainingCheck("PGD-AT", None, late_gain(pd.DataFrame({"val_curve": [curve] * 3})))
    assert check.rising is rising and check.undertrained is rising


def test_erm_still_rising_leaves_every_claim_against_erm_unjudged(tmp_path):
    text = _report(tmp_path, _rows(erm={"val": RISING}))
    assert _table_row(_headline(text), "ERM *undertrained*")
    claims = _claims(text)
    for line in (
        _line(claims, "vs ERM", "worst accuracy"),
        _line(claims, "vs ERM", "PGD-20 accuracy"),
        _line(claims, "SGT improves robustness"),
    ):
        assert "**not judged: baseline undertrained** (ERM: validation accuracy" in line
    assert "**smaller than claimed**" in _line(claims, "vs PGD-AT", "worst accuracy")


def test_the_margin_grows_when_n_is_small(tmp_path):
    margins = {}
    for n in (100, 10_000):
        claims = claims_section([SPEC], _frame(tmp_path / str(n), _rows(n=n)))
        line = _line(claims, "vs PGD-AT", "worst accuracy")
        assert f"n = {n}" in line
        margins[n] = float(re.search(r"\*\*\+10\.0 ± ([0-9.]+) points\*\*", line).group(1))
    assert margins[100] > margins[10_000] + 5
    # The formula: twice the root of each side's s^2/k + mean p(1-p)/n.
    a, b = [0.69, 0.70, 0.71], [0.59, 0.60, 0.61]
    seeds = 2 * (0.01**2) / 3
    binomial = sum(p * (1 - p) for p in a) / 300 + sum(p * (1 - p) for p in b) / 300
    diff = _difference(a, b, [100] * 3, [100] * 3)
    assert diff.margin == pytest.approx(200 * (seeds + binomial) ** 0.5)
    assert margins[100] == pytest.approx(diff.margin, abs=0.05)


def _frame(root: Path, rows):
    append_rows(str(root), rows)
    return read_leaderboard(str(root))


def test_pgd_far_above_the_worst_case_is_marked_and_flagged(tmp_path):
    # ASGT at eps 0.3 as in the issue: PGD-20 14 points above the ensemble's worst case.
    asgt = {"robust": {0.1: 0.92, 0.2: 0.70, 0.3: 0.33}, "pgd_over": {0.3: 0.14}}
    text = _report(tmp_path / "a", _rows(asgt=asgt))
    section = _attacks(text)
    row = _table_row(section, "ASGT †")
    cells = [c.strip() for c in row.strip("|").split("|")]
    header = [c.strip() for c in _line(section, "| method | n | FGSM").strip("|").split("|")]
    assert cells[header.index("PGD-20 @ 0.3")].endswith("†")
    assert not cells[header.index("PGD-20 @ 0.2")].endswith("†")
    assert "† PGD has not converged here" in section and "ASGT at eps 0.3" in section
    assert "†" not in _table_row(section, "PGD-AT")
    claims = _claims(text)
    assert "PGD has not converged" not in claims  # the claim is at 0.2, where PGD holds

    text = _report(tmp_path / "b", _rows(asgt={"pgd_over": 0.10}))  # at every eps
    assert "PGD has not converged" not in _headline(text)  # noted under the attack table
    claims = _claims(text)
    line = _line(claims, "vs PGD-AT", "PGD-20 accuracy")
    assert "PGD has not converged here (ASGT" in line and "read the worst-case line" in line
    assert "PGD has not converged" not in _line(claims, "vs PGD-AT", "worst accuracy")


def test_asgt_is_compared_with_pgd_at_at_its_own_training_eps(tmp_path):
    at_03 = {"method": "adversarial", "clean": 0.90, "robust": {0.1: 0.85, 0.2: 0.65, 0.3: 0.4},
             "attack_eps": 0.3}  # fmt: skip
    text = _report(tmp_path / "both", _rows(extra=[at_03]))
    table = _headline(text)
    assert _table_row(table, "PGD-AT (train eps 0.2)")
    assert _table_row(table, "PGD-AT (train eps 0.3)")
    claims = _claims(text)
    line = _line(claims, "vs PGD-AT", "worst accuracy")  # one line: the matched one
    assert "vs PGD-AT trained at eps 0.2" in line and "+10.0" in line

    # Only AT at 0.3: no baseline at ASGT's budget, said instead of a verdict.
    rows = [r for r in _rows(extra=[at_03]) if r.method != "adversarial" or r.attack_eps == 0.3]
    claims = _claims(_report(tmp_path / "only", rows))
    line = _line(claims, "vs PGD-AT")
    assert "**not judged: no PGD-AT at ASGT's budget**" in line
    assert "attack_eps 0.3 against 0.2" in line


def test_a_baseline_at_other_epochs_is_not_compared(tmp_path):
    longer = {"method": "erm", "clean": 0.98, "robust": {0.1: 0.7, 0.2: 0.1, 0.3: 0.0},
              "epochs": 8}  # fmt: skip
    rows = [r for r in _rows(extra=[longer]) if r.method != "erm" or r.epochs == 8]
    claims = _claims(_report(tmp_path, rows))
    assert "**not judged: no ERM at ASGT's budget**" in _line(claims, "ASGT", "vs ERM")
    assert "epochs 8 against 4" in _line(claims, "SGT improves robustness")


def test_val_curve_is_written_and_old_rows_read_without_it(tmp_path):
    rows = _rows()
    frame = _frame(tmp_path, rows)
    erm = frame[frame["method"] == "erm"]
    assert [list(c) for c in erm["val_curve"]] == [list(FLAT)] * 3
    # A committed rows file written before the column: it reads as null, and the
    # report says the rising check was not made instead of passing it silently.
    table = pa.Table.from_pylist(
        [{SWEEP: row.sweep, **row.to_table().to_pylist()[0]} for row in rows]
    ).drop(["val_curve"])
    path = tmp_path / "old.parquet"
    pq.write_table(table, path)
    old = read_rows_file(path)
    assert old["val_curve"].isna().all()
    text = render_report(ReportInputs([SPEC], old, {}), tmp_path / "results.md")
    section = _headline(text)
    assert _table_row(section, "ERM").count("| - |") >= 1
    assert "ERM, PGD-AT: no per-epoch validation accuracy in the rows" in section
    assert "not judged" not in _claims(text)
