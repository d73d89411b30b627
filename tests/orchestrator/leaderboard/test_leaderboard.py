"""The leaderboard's rows, queries, formats and the CLI verb
(``limelight leaderboard`` through ``orchestrator.cli.main``).

Every test writes a real Delta table under ``tmp_path``; nothing is mocked. The store
itself (appends, superseded rows, migration, repair) is tested in test_store.py.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from methods.options import ConfigError
from orchestrator.cli import main
from orchestrator.leaderboard import (
    LeaderboardQuery,
    append_row,
    format_frame,
    leaderboard_text,
    query,
    read_leaderboard,
)
from tests.orchestrator.leaderboard.rows import WHEN, make_row

# -------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"clean_acc": 1.5}, "clean_acc"),
        ({"robust_acc": "0.5"}, "robust_acc"),
        ({"pgd_acc": float("nan")}, "pgd_acc"),
        ({"status": "done"}, "status"),
        ({"sweep": "a/b"}, "sweep"),
        ({"sweep": "_private"}, "sweep"),
        ({"created_at": datetime(2026, 1, 1)}, "created_at"),
        ({"config": "[1, 2]"}, "config"),
        ({"robust_curve": [{"attack": "fgsm", "eps": 0.1, "acc": 2.0}]}, "robust_curve"),
    ],
)
def test_row_refuses_bad_values_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        make_row(**overrides)


# ----------------------------------------------------------------------------- query

# Hand-computed group statistics (sample std, ddof=1):
#   erm/digits clean 0.90, 0.92, 0.94 -> mean 0.92, std 0.02
#   sgt/digits clean 0.80, 0.86       -> mean 0.83, std 0.06 / sqrt(2) = 0.0424264
#   erm/mnist  clean 0.99             -> mean 0.99, std NaN
RUNS = [
    ("erm-d-0", "erm", "digits", 0, 0.90, 0.10, 10.0),
    ("erm-d-1", "erm", "digits", 1, 0.92, 0.20, 12.0),
    ("erm-d-2", "erm", "digits", 2, 0.94, 0.30, 14.0),
    ("sgt-d-0", "sgt", "digits", 0, 0.80, 0.50, 20.0),
    ("sgt-d-1", "sgt", "digits", 1, 0.86, 0.60, 30.0),
    ("erm-m-0", "erm", "mnist", 0, 0.99, 0.05, 50.0),
]


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("board")
    for trial_id, method, dataset, seed, clean, robust, wall in RUNS:
        append_row(
            str(root),
            make_row(
                trial_id=trial_id,
                config_id=f"{method}-{dataset}",
                method=method,
                dataset=dataset,
                seed=seed,
                clean_acc=clean,
                robust_acc=robust,
                wall_s=wall,
                audit_flags=["shortcut"] if trial_id == "sgt-d-1" else [],
                robust_curve=[{"attack": "pgd", "eps": 0.1, "acc": robust}],
            ),
        )
    return root


@pytest.fixture
def frame(board: Path) -> pd.DataFrame:
    return read_leaderboard(str(board))


def test_query_filters_sorts_cuts_and_selects(frame: pd.DataFrame) -> None:
    picked = query(frame, where="method == 'sgt' and clean_acc > 0.81")
    assert list(picked["trial_id"]) == ["sgt-d-1"]

    best = query(frame, sort="clean_acc", top=2, columns=["trial_id", "clean_acc"])
    assert list(best.columns) == ["trial_id", "clean_acc"]
    assert list(best["trial_id"]) == ["erm-m-0", "erm-d-2"]

    worst = query(frame, where="dataset == 'digits'", sort="robust_acc", descending=False, top=1)
    assert list(worst["trial_id"]) == ["erm-d-0"]


def test_query_group_by_gives_mean_std_and_n_per_group(frame: pd.DataFrame) -> None:
    grouped = query(frame, group_by=["method", "dataset"]).set_index(["method", "dataset"])

    assert grouped.loc[("erm", "digits"), "n"] == 3
    assert grouped.loc[("erm", "digits"), "clean_acc_mean"] == pytest.approx(0.92)
    assert grouped.loc[("erm", "digits"), "clean_acc_std"] == pytest.approx(0.02)
    assert grouped.loc[("erm", "digits"), "wall_s_mean"] == pytest.approx(12.0)
    assert grouped.loc[("erm", "digits"), "wall_s_std"] == pytest.approx(2.0)
    assert grouped.loc[("sgt", "digits"), "n"] == 2
    assert grouped.loc[("sgt", "digits"), "clean_acc_mean"] == pytest.approx(0.83)
    assert grouped.loc[("sgt", "digits"), "clean_acc_std"] == pytest.approx(0.0424264, abs=1e-6)
    assert grouped.loc[("sgt", "digits"), "robust_acc_mean"] == pytest.approx(0.55)
    assert pd.isna(grouped.loc[("erm", "mnist"), "clean_acc_std"])
    assert "pgd_acc_mean" in grouped.columns and grouped["pgd_acc_mean"].isna().all()


def test_query_sort_and_top_apply_after_grouping(frame: pd.DataFrame) -> None:
    top = query(frame, group_by=["method"], sort="robust_acc_mean", top=1)
    assert list(top["method"]) == ["sgt"]  # 0.55 against erm's (0.1+0.2+0.3+0.05)/4
    assert top.loc[0, "n"] == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"where": "clean_acc >"}, "where"),
        ({"where": "nosuch > 0.5"}, "where"),
        ({"sort": "nosuch"}, "sort"),
        ({"columns": ["trial_id", "nosuch"]}, "columns"),
        ({"group_by": ["nosuch"]}, "group_by"),
        ({"top": -1}, "top"),
    ],
)
def test_query_refuses_bad_input_with_a_one_line_error(
    frame: pd.DataFrame, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}:") as caught:
        query(frame, **kwargs)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)


def test_sort_error_lists_the_valid_columns(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"valid: .*clean_acc"):
        query(frame, sort="accuracy")


# --------------------------------------------------------------------------- formats


def test_table_marks_flagged_rows_and_shows_percentages(frame: pd.DataFrame) -> None:
    text = format_frame(frame, "table")
    lines = text.splitlines()
    header = lines[0].split()
    assert "robust_curve" not in header and "config" not in header
    assert "eval_mode" not in header  # no row has a value in it
    assert set(lines[1]) <= {"-", " "}

    flagged = [line for line in lines[2:] if line.startswith("!")]
    assert len(flagged) == 1 and "sgt-d-1" in flagged[0]
    assert all(line.startswith(" ") for line in lines[2:] if "sgt-d-1" not in line)
    assert "92.0%" in text and "86.0%" in text and "0.92" not in text


def test_table_shows_chosen_columns_even_hidden_ones(frame: pd.DataFrame) -> None:
    chosen = query(
        frame, columns=["trial_id", "robust_curve"], sort="trial_id", descending=False, top=1
    )
    text = format_frame(chosen, "table", selected=True)
    assert text.splitlines()[0].split() == ["trial_id", "robust_curve"]
    assert "erm-d-0" in text and "pgd@0.1:10.0%" in text


def test_csv_parses_back(frame: pd.DataFrame) -> None:
    back = pd.read_csv(io.StringIO(format_frame(frame, "csv")))
    assert len(back) == len(RUNS)
    assert back["clean_acc"].dtype == "float64"
    assert sorted(back["clean_acc"]) == sorted(run[4] for run in RUNS)
    assert json.loads(back.loc[0, "robust_curve"])[0]["attack"] == "pgd"


def test_json_parses_back_as_records(frame: pd.DataFrame) -> None:
    records = json.loads(format_frame(frame, "json"))
    assert len(records) == len(RUNS)
    by_id = {r["trial_id"]: r for r in records}
    assert by_id["sgt-d-1"]["clean_acc"] == 0.86
    assert by_id["sgt-d-1"]["audit_flags"] == ["shortcut"]
    assert by_id["sgt-d-1"]["robust_curve"] == [{"attack": "pgd", "eps": 0.1, "acc": 0.6}]
    assert by_id["sgt-d-1"]["pgd_acc"] is None
    assert datetime.fromisoformat(by_id["sgt-d-1"]["created_at"]) == WHEN


def test_markdown_is_a_pipe_table(frame: pd.DataFrame) -> None:
    grouped = query(frame, group_by=["method", "dataset"])
    lines = format_frame(grouped, "markdown").splitlines()
    assert lines[0].startswith("| method | dataset | n |")
    assert re.fullmatch(r"\|( -{3,}:? \|)+", lines[1]), lines[1]
    assert len(lines) == 2 + 3
    assert lines[0].count("|") == lines[1].count("|") == lines[2].count("|")
    assert "92.0%" in format_frame(grouped, "markdown")


def test_unknown_format_is_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match=r"^format: .*table, csv, json, markdown"):
        format_frame(frame, "xml")


# ------------------------------------------------------------------------------- CLI


def _leaderboard(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """``limelight leaderboard ARGV`` in-process: exit code, stdout, stderr."""
    try:
        code = main(["leaderboard", *argv])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_command_groups_sorts_and_formats(board: Path, capsys: pytest.CaptureFixture) -> None:
    code, text, _ = _leaderboard(
        capsys, "--storage", str(board), "--group-by", "method, dataset", "--sort",
        "clean_acc_mean", "--ascending", "--format", "csv",
    )  # fmt: skip
    assert code == 0
    back = pd.read_csv(io.StringIO(text))
    assert list(back["method"]) == ["sgt", "erm", "erm"]
    assert list(back["n"]) == [2, 3, 1]


def test_command_reads_storage_from_the_environment(
    board: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("LIMELIGHT_STORAGE", str(board))
    code, text, _ = _leaderboard(capsys, "--columns", "trial_id,clean_acc", "--top", "2")
    assert code == 0
    assert text.splitlines()[0].split() == ["trial_id", "clean_acc"]
    assert len(text.splitlines()) == 2 + 2


def test_command_says_when_there_are_no_rows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, text, _ = _leaderboard(capsys, "--storage", str(tmp_path), "--sweep", "nope")
    assert code == 0
    assert text == f"no rows found under {tmp_path}/leaderboard for sweep 'nope'\n"


@pytest.mark.parametrize(
    ("argv", "parts"),
    [
        (("--where", "clean_acc >>"), ["--where: bad expression"]),
        # What users get wrong, in words (it used to print a KeyError with an index).
        (("--where", "robust_acc + 1"), ["--where:", "not a condition", "robust_acc > 0.5"]),
        (("--where", "method == sgt"), ["--where: unknown name 'sgt'", "quote", "clean_acc"]),
        (("--columns", " , "), ["--columns: ", "column names"]),
        (("--group-by", "nosuch"), ["--group-by: unknown column 'nosuch'", "valid: "]),
        (("--sort", "nosuch"), ["--sort: unknown column 'nosuch'", "clean_acc"]),
        (("--top", "0"), ["--top: must be >= 1, got 0"]),
        (("--top", "many"), ["--top", "invalid int value"]),
        (("--format", "xml"), ["--format", "invalid choice", "'markdown'"]),
        (
            ("--storage", "nosuch://bucket/p"),
            ["--storage: cannot read nosuch://bucket/p/leaderboard"],
        ),
        # A typo in the root is not an empty leaderboard, nor something to repair.
        (("--storage", "/no/such/root"), ["--storage: /no/such/root does not exist"]),
        (("--storage", "/no/such/root", "--repair"), ["--storage: /no/such/root does not"]),
    ],
)
def test_command_bad_input_exits_2_with_one_line(
    board: Path, capsys: pytest.CaptureFixture, argv: tuple[str, ...], parts: list[str]
) -> None:
    argv = argv if "--storage" in argv else ("--storage", str(board), *argv)
    code, out, err = _leaderboard(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("limelight leaderboard: error: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err, (part, err)


def test_leaderboard_text_of_a_query_is_what_the_verb_prints(
    board: Path, capsys: pytest.CaptureFixture
) -> None:
    """The sweep verb prints a sweep's table with ``leaderboard_text`` too."""
    request = LeaderboardQuery(storage=str(board), sweep="demo", sort="robust_acc")
    text = leaderboard_text(request)
    assert _leaderboard(capsys, "--storage", str(board), "--sweep", "demo", "--sort",
                        "robust_acc")[1] == text + "\n"  # fmt: skip
    ids = [line.split()[0] for line in text.splitlines()[2:] if not line.startswith("!")]
    assert ids[0] == "sgt-d-0"  # the highest robust_acc first; sgt-d-1 (0.6) is flagged (!)
    assert "!" in text.splitlines()[2]


def test_query_record_normalizes_lists_and_refuses_bad_values() -> None:
    assert LeaderboardQuery(columns="trial_id, clean_acc").columns == ("trial_id", "clean_acc")
    assert LeaderboardQuery(group_by=["method", "dataset"]).group_by == ("method", "dataset")
    for kwargs, field in (
        ({"top": 0}, "top"),
        ({"format": "xml"}, "format"),
        ({"columns": ()}, "columns"),
        ({"group_by": " , "}, "group_by"),
    ):
        with pytest.raises(ConfigError) as caught:
            LeaderboardQuery(**kwargs)
        assert caught.value.field == field


@pytest.mark.parametrize("argv", [["--storage", "{tmp}"], ["--help"]])
def test_the_verb_never_imports_torch(tmp_path: Path, argv: list[str]) -> None:
    argv = [a.format(tmp=tmp_path) for a in argv]
    code = (
        "import sys\n"
        "from orchestrator.cli import main\n"
        "try:\n"
        f"    main(['leaderboard', *{argv!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "no rows found" in done.stdout or "usage: limelight leaderboard" in done.stdout


def test_evaluation_columns_fill_the_row_lgr_gets_the_lime_order():
    from methods.results import EvalResult, FaithfulnessCurve, RobustPoint
    from orchestrator.sweeps.rows import evaluation_columns, result_row

    def curve(order: str, auc: float) -> FaithfulnessCurve:
        return FaithfulnessCurve((0.0, 0.5), (1.0, 0.2), (1.0, 0.6), auc, 0.8, order)

    points = (RobustPoint("pgd", 0.1, 0.5), RobustPoint("worst", 0.1, 0.4))
    plain = EvalResult(
        n_eval=2, clean_acc=1.0, robust_curve=points, faithfulness=curve("saliency", 0.6)
    )
    columns = evaluation_columns(plain, 0.1)
    assert columns["robust_acc"] == 0.4 and columns["pgd_acc"] == 0.5
    assert columns["faithfulness_auc"] == 0.6 and "lime_faithfulness_auc" not in columns
    lgr = EvalResult(
        n_eval=2,
        clean_acc=1.0,
        robust_curve=points,
        faithfulness=curve("saliency", 0.6),
        lime_faithfulness=curve("lime", 0.5),
    )
    row = result_row(
        sweep="s", trial_id="t", config_id="c", method="lgr", dataset="digits",
        config={"seed": 0, "epochs": 1, "model": "m"}, eval_eps=0.1, status="ok",
        wall_s=1.0, evaluation=lgr, error=None,
    )  # fmt: skip
    assert row.lime_faithfulness_auc == 0.5
    assert row.lime_faithfulness_gap == pytest.approx(0.5 - 0.8)
    assert row.robust_acc == 0.4 and row.n_eval == 2
    assert evaluation_columns(None, 0.1) == {}
