"""The leaderboard's store: a real Delta table under ``tmp_path`` (appends, the newest
row per trial, maintenance next to writers, the old layout's migration, repair of an
unreadable data file). Nothing is mocked.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from orchestrator.leaderboard import (
    QUARANTINE,
    SCHEMA,
    append_row,
    append_rows,
    maintain,
    read_leaderboard,
    read_trial_row,
    repair,
)
from tests.orchestrator.leaderboard.rows import WHEN, make_row


def _raw(root: Path) -> pd.DataFrame:
    """The table as any Delta reader sees it (no newest-row rule)."""
    return DeltaTable(str(root / "leaderboard")).to_pandas()


def _data_files(root: Path) -> list[Path]:
    return [Path(uri) for uri in DeltaTable(str(root / "leaderboard")).file_uris()]


def _file_of(root: Path, trial_id: str) -> Path:
    return next(p for p in _data_files(root) if pq.read_table(p)["trial_id"][0].as_py() == trial_id)


def test_row_round_trips_with_types(tmp_path: Path) -> None:
    curve = [{"attack": "fgsm", "eps": 0.1, "acc": 0.5}, {"attack": "pgd", "eps": 0.1, "acc": 0.25}]
    row = make_row(
        sweep="grid-1",
        trial_id="trial_7",
        seed=3,
        clean_acc=0.9,
        pgd_acc=0.25,
        robust_curve=curve,
        audit_flags=["shortcut"],
        error="Traceback line\nsecond line",
        status="error",
        stopped_epoch=4,
    )
    written = append_row(str(tmp_path), row)

    assert Path(written) == tmp_path.resolve() / "leaderboard"
    assert (Path(written) / "_delta_log").is_dir()
    frame = read_leaderboard(str(tmp_path))
    assert list(frame.columns) == ["sweep", *SCHEMA.names]
    got = frame.iloc[0]
    assert got["sweep"] == "grid-1"
    assert isinstance(got["clean_acc"], float) and got["clean_acc"] == 0.9
    assert frame["clean_acc"].dtype == "float64"
    assert got["robust_curve"] == curve
    assert isinstance(got["robust_curve"], list) and isinstance(got["robust_curve"][0], dict)
    assert got["audit_flags"] == ["shortcut"]
    assert got["created_at"].tzinfo is not None and got["created_at"] == WHEN
    assert got["seed"] == 3 and got["stopped_epoch"] == 4
    assert got["error"] == "Traceback line"
    assert pd.isna(got["robust_acc"]) and pd.isna(got["n_eval"])
    assert json.loads(got["config"]) == {"epochs": 2, "method": "erm"}
    assert read_trial_row(str(tmp_path), "grid-1", "trial_7")["clean_acc"] == 0.9
    assert read_trial_row(str(tmp_path), "grid-1", "nosuch") is None


def test_columns_reads_only_those(tmp_path: Path) -> None:
    append_row(str(tmp_path), make_row(clean_acc=0.5, robust_acc=0.25))
    frame = read_leaderboard(str(tmp_path), columns=["robust_acc", "clean_acc", "nosuch"])
    assert list(frame.columns) == ["sweep", "clean_acc", "robust_acc"]  # SCHEMA's order
    assert frame.loc[0, "robust_acc"] == 0.25


def test_a_trial_written_again_reads_as_its_newest_row_and_maintain_drops_the_old(
    tmp_path: Path,
) -> None:
    append_row(str(tmp_path), make_row(trial_id="a", clean_acc=0.5, checkpoint="/c/a.pt"))
    append_row(str(tmp_path), make_row(trial_id="b", clean_acc=0.6))
    append_row(str(tmp_path), make_row(trial_id="a", clean_acc=0.5, checkpoint=None))
    append_row(str(tmp_path), make_row(sweep="other", trial_id="a", clean_acc=0.1))

    frame = read_leaderboard(str(tmp_path), sweep="demo").set_index("trial_id")
    assert sorted(frame.index) == ["a", "b"]
    assert pd.isna(frame.loc["a", "checkpoint"]) and frame.loc["a", "created_at"] == WHEN
    assert len(_raw(tmp_path)) == 4  # appended, not replaced in place

    report = maintain(str(tmp_path), "demo")

    assert report.superseded == 1
    raw = _raw(tmp_path)
    assert sorted(zip(raw["sweep"], raw["trial_id"], strict=True)) == [
        ("demo", "a"), ("demo", "b"), ("other", "a"),
    ]  # fmt: skip
    assert raw.loc[(raw["sweep"] == "demo") & (raw["trial_id"] == "a"), "checkpoint"].isna().all()


def test_append_rows_is_one_commit(tmp_path: Path) -> None:
    append_row(str(tmp_path), make_row(trial_id="first"))
    before = DeltaTable(str(tmp_path / "leaderboard")).version()
    append_rows(str(tmp_path), [make_row(trial_id=f"t{i}") for i in range(5)])
    assert DeltaTable(str(tmp_path / "leaderboard")).version() == before + 1
    assert len(read_leaderboard(str(tmp_path))) == 6
    append_rows(str(tmp_path), [])  # nothing to write: no commit (a sweep that pruned none)
    assert DeltaTable(str(tmp_path / "leaderboard")).version() == before + 1


def test_concurrent_writer_threads_lose_no_row(tmp_path: Path) -> None:
    rows = [
        make_row(sweep=sweep, trial_id=f"{sweep}-{i}", seed=i, clean_acc=i / 100)
        for sweep in ("alpha", "beta")
        for i in range(16)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda row: append_row(str(tmp_path), row), rows))

    frame = read_leaderboard(str(tmp_path))
    assert sorted(zip(frame["sweep"], frame["trial_id"], strict=True)) == sorted(
        (row.sweep, row.trial_id) for row in rows
    )
    assert len(read_leaderboard(str(tmp_path), sweep="beta")) == 16


def _append_many(root: str, sweep: str, count: int) -> int:
    for i in range(count):
        append_row(root, make_row(sweep=sweep, trial_id=f"{sweep}-{i}", clean_acc=i / count))
        if i % 3 == 0:  # a retried trial: superseded rows for maintain() to drop
            append_row(root, make_row(sweep=sweep, trial_id=f"{sweep}-{i}", clean_acc=1.0))
    return count


def test_writer_processes_and_maintenance_at_once_lose_no_row(tmp_path: Path) -> None:
    """Three processes append (rows of two sweeps, some written twice) while this one
    rewrites and compacts the table over and over: every row is there once, the newest."""
    root = str(tmp_path)
    append_row(root, make_row(sweep="x", trial_id="seed"))  # create the table first
    # spawn: deltalake's runtime does not survive fork
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=3, mp_context=context) as pool:
        futures = [pool.submit(_append_many, root, s, 12) for s in ("x", "y", "x2")]
        while not all(f.done() for f in futures):
            maintain(root, "x")
            maintain(root)
        assert [f.result() for f in futures] == [12, 12, 12]
    maintain(root)

    frame = read_leaderboard(root)
    expected = {("x", "seed")} | {(s, f"{s}-{i}") for s in ("x", "y", "x2") for i in range(12)}
    assert set(zip(frame["sweep"], frame["trial_id"], strict=True)) == expected
    assert len(frame) == len(expected)
    retried = frame[frame["trial_id"].str.endswith(("-0", "-3", "-6", "-9"))]
    assert (retried["clean_acc"] == 1.0).all()
    assert len(_raw(tmp_path)) == len(expected)  # after maintain: once in the table too


def test_maintain_compacts_many_small_files(tmp_path: Path) -> None:
    for i in range(40):
        append_row(str(tmp_path), make_row(trial_id=f"t{i}"))
    assert len(_data_files(tmp_path)) == 40

    report = maintain(str(tmp_path))

    assert report.compacted and len(_data_files(tmp_path)) == 1
    assert len(read_leaderboard(str(tmp_path))) == 40


def _old_part(root: Path, sweep: str, name: str, **columns: Any) -> Path:
    folder = root / "leaderboard" / f"sweep={sweep}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pq.write_table(pa.table(columns), path)
    return path


def test_part_files_of_the_old_layout_move_into_the_table(tmp_path: Path) -> None:
    append_row(str(tmp_path), make_row(trial_id="new", audit_note="fine", robust_acc=0.4))
    _old_part(
        tmp_path, "demo", "old.parquet",
        trial_id=["old"], status=["ok"], method=["erm"],
        seed=pa.array([1], pa.int32()),  # an older, narrower type: cast on read
        clean_acc=[0.8], created_at=pa.array([WHEN], pa.timestamp("us", tz="UTC")),
    )  # fmt: skip
    _old_part(tmp_path, "demo", "new.parquet", trial_id=["new"], clean_acc=[0.1])
    _old_part(tmp_path, "b", "x.parquet", trial_id=["x"], clean_acc=[0.3])
    bad = tmp_path / "leaderboard" / "sweep=b" / "bad.parquet"
    bad.write_bytes(b"this is not parquet at all")

    def check(frame: pd.DataFrame) -> None:
        frame = frame.set_index(["sweep", "trial_id"])
        assert sorted(frame.index) == [("b", "x"), ("demo", "new"), ("demo", "old")]
        assert frame.loc[("demo", "old"), "clean_acc"] == 0.8
        assert frame.loc[("demo", "old"), "seed"] == 1 and frame["seed"].dtype == "Int64"
        assert pd.isna(frame.loc[("demo", "old"), "robust_acc"])
        # The old layout's copy of "new" has no created_at: the table's own row is newer.
        assert frame.loc[("demo", "new"), "robust_acc"] == 0.4

    check(read_leaderboard(str(tmp_path)))  # read as they are: reading never writes
    assert bad.is_file() and len(list((tmp_path / "leaderboard").glob("sweep=*/*"))) == 4

    assert maintain(str(tmp_path)).migrated == 3

    check(read_leaderboard(str(tmp_path)))
    assert not list((tmp_path / "leaderboard").glob("sweep=*"))
    assert (tmp_path / QUARANTINE / "bad.parquet").read_bytes() == b"this is not parquet at all"
    assert len(_raw(tmp_path)) == 3  # in the table, each once: the old copy of "new" dropped


def test_unreadable_data_file_is_named_skipped_and_repaired(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = str(tmp_path)
    append_row(root, make_row(trial_id="good"))
    append_row(root, make_row(trial_id="lost"))
    lost = next(
        p for p in _data_files(tmp_path) if "lost" in pq.read_table(p)["trial_id"].to_pylist()
    )
    lost.write_bytes(b"this is not parquet at all")
    with pytest.raises(Exception):  # noqa: B017 (deltalake's readers fail outright)
        _raw(tmp_path)

    with caplog.at_level(logging.WARNING, logger="orchestrator.leaderboard"):
        frame = read_leaderboard(root)

    assert list(frame["trial_id"]) == ["good"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and lost.name in warnings[0] and "--repair" in warnings[0]

    report = repair(root)

    moved = tmp_path / QUARANTINE / lost.name
    assert report.quarantined == {str(moved): 1} and moved.is_file()
    assert list(_raw(tmp_path)["trial_id"]) == ["good"]  # every reader works again
    assert list(pd.read_parquet(_data_files(tmp_path)[0])["trial_id"]) == ["good"]
    append_row(root, make_row(trial_id="after"))
    assert sorted(read_leaderboard(root)["trial_id"]) == ["after", "good"]


def test_the_verb_repairs_then_prints(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from orchestrator.cli import main

    append_row(str(tmp_path), make_row(trial_id="good"))
    append_row(str(tmp_path), make_row(trial_id="lost"))
    lost = _file_of(tmp_path, "lost")
    lost.write_bytes(b"garbage")

    assert main(["leaderboard", "--storage", str(tmp_path), "--repair"]) == 0

    out = capsys.readouterr().out
    assert f"repair: quarantined {tmp_path / QUARANTINE / lost.name} (1 rows lost)" in out
    table = out.split("\n", 1)[1]
    assert "good" in table and "lost" not in table
    assert main(["leaderboard", "--storage", str(tmp_path), "--repair"]) == 0
    assert "repair: nothing to repair" in capsys.readouterr().out


def test_missing_leaderboard_is_an_empty_frame_with_the_columns(tmp_path: Path) -> None:
    frame = read_leaderboard(str(tmp_path / "nowhere"))
    assert frame.empty
    assert list(frame.columns) == ["sweep", *SCHEMA.names]
    append_row(str(tmp_path), make_row(sweep="s1"))
    assert read_leaderboard(str(tmp_path), sweep="other").empty
    assert maintain(str(tmp_path / "nowhere")).lines() == ["nothing to repair"]
