"""`limelight report --section`: each section's rows committed beside the report, a
section regenerated alone replacing only its own rows, and a section without committed
rows keeping its previous text, marked (no training: rows through the real writers)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.cli import main
from orchestrator.leaderboard import append_row, read_leaderboard
from orchestrator.sweeps.report import (
    SHORTCUT_SECTIONS,
    SHORTCUT_SWEEP,
    generate_report,
    rows_folder,
)
from orchestrator.sweeps.shortcut import ShortcutPlan, plan_models
from orchestrator.sweeps.shortcut.benchmark import _row

REPO = Path(__file__).resolve().parents[3]
DIGITS_SPEC = str(REPO / "search_spaces" / "report-digits.yaml")

OLD_REPORT = """# Reproduction report

Generated long ago.

## digits

| method | seeds | clean |
| ERM | 3 | 97.9 ± 0.2 |

## Shortcut benchmark (digits_shortcut)

| model | seeds | accuracy |
| ERM | 3 | 1.0 ± 0.0 |

## The papers' claims

- SGT improves robustness (digits): **does not hold**.

## Protocol

**digits**: seeds 0, 1, 2.
"""


def _shortcut_rows(storage: Path) -> None:
    plan = ShortcutPlan.create(storage=str(storage), name=SHORTCUT_SWEEP, methods="erm,control",
                               seeds="0,1")  # fmt: skip
    for model in plan_models(plan):
        scores = {"shortcut_follow_rate": 0.1 * (model.seed + 1), "shortcut_acc": 0.5}
        append_row(plan.root, _row(plan, model, model.config.to_dict(), status="ok",
                                   wall_s=1.0, scores=scores))  # fmt: skip


def test_one_section_regenerates_alone_and_the_rest_is_kept_and_marked(tmp_path):
    storage, out = tmp_path / "results", tmp_path / "docs" / "results.md"
    out.parent.mkdir()
    out.write_text(OLD_REPORT)
    _shortcut_rows(storage)
    generate_report([DIGITS_SPEC], storage=str(storage), out=out, run=False,
                    sections=["shortcut"])  # fmt: skip
    committed = rows_folder(out) / f"{SHORTCUT_SWEEP}.parquet"
    assert committed.is_file() and not (rows_folder(out) / "report-digits.parquet").exists()
    text = out.read_text()
    shortcut = text.split("## Shortcut benchmark (digits_shortcut)")[1].split("## ")[0]
    assert "| ERM | 2 | 50.0 ± 0.0 | 15.0 ± 7.1 |" in shortcut  # from the rows, not the old
    digits = text.split("## digits")[1].split("## ")[0]
    assert "_Kept from the previous report" in digits and "--section digits" in digits
    assert "| ERM | 3 | 97.9 ± 0.2 |" in digits
    claims = text.split("## The papers' claims")[1].split("## ")[0]
    assert "_Kept from the previous report" in claims and "does not hold" in claims

    # The markdown re-renders from the committed rows alone: the results root is gone.
    stamp = committed.stat().st_mtime_ns
    for path in sorted(storage.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    generate_report([DIGITS_SPEC], storage=str(storage), out=out, run=False,
                    sections=["digits"])  # fmt: skip
    again = out.read_text()
    assert "| ERM | 2 | 50.0 ± 0.0 | 15.0 ± 7.1 |" in again
    assert again.count("_Kept from the previous report") == 3  # digits, claims, protocol
    assert committed.stat().st_mtime_ns == stamp  # another section leaves it alone
    frame = read_leaderboard(str(storage))
    assert frame.empty


def test_an_unknown_section_exits_2_naming_the_valid_ones(tmp_path, capsys):
    argv = ["report", "--spec", DIGITS_SPEC, "--section", "cifar", "--no-run"]
    assert main([*argv, "--storage", str(tmp_path), "--out", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--section" in err and "'cifar'" in err
    assert "digits, shortcut" in err
    assert not (tmp_path / "r.md").exists()


def test_the_decoy_section_renders_from_its_own_benchmark_rows(tmp_path):
    section = next(s for s in SHORTCUT_SECTIONS if s.name == "mnist5k_decoy")
    storage, out = tmp_path / "results", tmp_path / "docs" / "results.md"
    plan = ShortcutPlan.create(storage=str(storage), name=section.sweep,
                               dataset=section.dataset, **dict(section.inputs))  # fmt: skip
    models = plan_models(plan)
    labels = sorted({m.config.to_dict()["method"] for m in models})
    assert len(models) == 12 and labels == ["erm", "lgr", "rrr"]  # control is an ERM
    for model in models:
        scores = {"shortcut_follow_rate": 0.01 * (model.seed + 1), "shortcut_acc": 0.96}
        append_row(plan.root, _row(plan, model, model.config.to_dict(), status="ok",
                                   wall_s=1.0, scores=scores))  # fmt: skip
    generate_report([DIGITS_SPEC], storage=str(storage), out=out, run=False,
                    sections=["mnist5k_decoy"])  # fmt: skip
    assert (rows_folder(out) / f"{section.sweep}.parquet").is_file()
    assert not (rows_folder(out) / f"{SHORTCUT_SWEEP}.parquet").exists()
    text = out.read_text()
    decoy = text.split("## Shortcut benchmark (mnist5k_decoy)")[1].split("## ")[0]
    assert "follows the swatch" in decoy and "| ERM | 3 | 96.0 ± 0.0 | 2.0 ± 1.0 |" in decoy
    digits_shortcut = text.split("## Shortcut benchmark (digits_shortcut)")[1].split("## ")[0]
    assert "Not generated yet: `limelight report --section shortcut`" in digits_shortcut
