"""Leaderboard stores at 10k and 100k rows: the layout before the Delta store (one
Parquet file per trial), the Delta table the project built (issue 17), and the candidate
stores measured to choose it.

Synthetic rows are the project's own ``LeaderboardRow`` (validated like real ones):
``--sweeps`` sweeps (1,000) x ``--rows / --sweeps`` trials, 8 methods, 6 data sets,
accuracies, a 6-point ``robust_curve``, an 11-point ``faithfulness_curve`` on SGT rows,
``audit_flags`` on some, a ~30-key ``config`` JSON. Every store holds the same N rows.

Stores (``--stores``, default ``a,d,d/cmd``; each under its own folder of ``--dir``, a
fresh temp dir by default):
  a  the layout before the Delta store (issue 17), copied here since the project's
     ``io`` now writes Delta: ``old_append_row`` writes one Parquet file per trial,
     ``<root>/leaderboard/sweep=<s>/<trial>.parquet`` (a temporary name, then a rename);
     ``old_read_leaderboard`` reads them file by file, as the CLI did. ``a/duckdb``: a
     DuckDB glob over the part files.
  d  the project's store as built (``orchestrator.leaderboard.io``): one Delta table,
     written with ``append_rows``, ``--batch`` (1,000) rows a commit (building 100k rows
     does not take 100k commits; a sweep's rows come one commit each), then
     ``maintain`` (drop superseded rows, compact above 32 files, vacuum), then
     ``--probe`` single-row ``append_row`` calls (timed; the table is read in that
     state: one compacted file and ``--probe`` small ones). ``d`` is the query as
     ``limelight leaderboard`` runs it (``read_leaderboard(root,
     columns=needed_columns(request))``, ``query``, ``format_frame``); ``d/cmd`` is the
     whole command as a user runs it, ``python -m orchestrator leaderboard --storage
     ROOT ...`` (wall time; peak RSS from ``/usr/bin/time``), its output checked equal
     to d's text. The append cost is also timed on an empty table (``d0``).
The candidates of the issue-17 evaluation (docs/sweeps.md cites them):
  b  per-sweep compaction of a: each sweep's part files rewritten by ``compact_sweep``
     into ``compact~g<generation>.parquet`` (written under a hidden temporary name,
     renamed, then the parts it read are deleted); new rows still come as part files.
     ``read_compacted`` reads all files at once (a pyarrow dataset, hive ``sweep``) and
     keeps the newest row per (sweep, trial_id). ``b/proj``: only the shown columns.
  c  Delta Lake partitioned by ``sweep``: ``--delta-row-commits`` single-row commits,
     the rest as a's part files hard-linked into the table 1,000 add actions a commit,
     ``--probe`` appends, ``optimize.compact()``, ``vacuum(0 h)``, checkpoint, ``--probe``
     appends again. ``c/proj``: the shown columns; ``c/duckdb``: DuckDB over
     ``to_pyarrow_dataset()``.
  c1 Delta Lake without partitions in the state ``optimize.compact()`` leaves it (one
     file, one commit), then ``--probe`` single-row appends and a compaction of those.

Measures per store, each in a fresh subprocess (peak RSS = its ``VmHWM``; ``ru_maxrss``
would carry the forking parent's peak over exec): ``top`` (where "status == 'ok' and
dataset == 'cifar10' and clean_acc > 0.5", sort robust_acc, top 10) and ``group`` (group
by method,dataset: n, mean and std of every metric), as read (s), query incl.
``format_frame`` (s), the whole process (start-up, imports, read, query, s), peak RSS
(MB). DuckDB rows run the same filter/sort/group-by in SQL. Medians of ``--repeats``
(store a: ``--baseline-repeats``, 1). Every store's results are checked against the
same query over the rows in memory (top-10 trial ids, group n and clean_acc means).
``--concurrency 4``: 4 spawned processes ``append_row`` 25 rows each into one table
while this one runs ``maintain`` in a loop (each round: no row seen twice by a plain
Delta reader, none gone); then every row is there once.

Measured 2026-12-03 on a 2-core CPU shared with other work (load 3.4-7.7 during the
runs), deltalake 1.6.6, pyarrow 26, pandas 3.1.1; ``--rows 10000`` and ``--rows 100000
--skip-baseline-above 10000``, medians of 3 (a: 1). read+query s / process s / peak MB,
top | group:
  10k   a (before, part files)    46.1 | 47.4    47.0 | 48.1    785 | 785
        d (as the CLI reads)      0.21 | 0.20    0.86 | 0.86    208 | 192
        d/cmd (whole command)        -           0.90 | 0.81    206 | 191
  100k  a (issue 17, not rerun)      -            513 | 532    7.6 GB (the CLI)
        d                         0.57 | 0.29    1.29 | 0.98    356 | 273   goal met
        d/cmd                        -           1.22 | 1.01    351 | 272   goal met
  append a row: a 1.74 ms at 10k, 1.73 ms at 100k; d ``append_row`` 24.9 ms at 10k,
  24.5 ms at 100k (11.8 / 15.4 ms on an empty table: each append reads the log since the
  last checkpoint, at most 100 commits); ``append_rows`` of 1,000 rows ~0.9 s. d was
  read with 30 data files at 10k (10 batches, under the compaction threshold) and 21 at
  100k (``maintain`` compacted the 100 batches into one file in 1.7 s, then 20 appends).
  Concurrency, both sizes: 4 x 25 ``append_row`` while ``maintain`` ran 7 rounds (2
  compactions): 600/600 rows (500 before), none twice in any round, none lost, no
  failure.

The issue-17 evaluation, measured 2026-12-03 on the same machine (load 4.5-6.6; the
reader of a took 105 s at 10k there vs 45.6 s in issue 17), deltalake 1.6.6, duckdb
2.0.1, pyarrow 26:
  100k rows (now --stores c1,c1/proj,c1/duckdb,b,b/proj,b/duckdb,a/duckdb --repeats 2),
  read+query s / process s / peak MB, top | group:
    c1/proj (Delta, 1 file, shown columns)  0.24 | 0.38   0.87 | 1.12   333 | 333   goal met
    c1 (all columns, lists to Python)       2.80 | 2.09   3.60 | 2.87  1004 | 1045
    c1 DuckDB over to_pyarrow_dataset()     0.97 | 0.26   1.56 | 1.01   555 | 285
    b/proj (1 file a sweep, 1,000 files)    2.96 | 2.88   4.00 | 3.66   440 | 421
    b DuckDB glob                           2.76 | 2.80   3.69 | 3.78   323 | 312
    a DuckDB glob (100k part files)        241.2 | 215.6 243.4 | 218.4 12134 | 12251
  append a row: a/b 2.8 ms; c1 17.4 ms at 100k (13.9 ms at 10k); partitioned c at 10k:
  41.8 ms empty -> 94.1 ms at 1,000 commits -> 132 ms with 9,980 files (112.6 ms compacted:
  the checkpoint keeps the tombstones). 10k: a's reader 104.9 | 86.8 s, partitioned
  Delta c 15.9 | 10.6 s (1,000 small files), c1/proj 0.13 | 0.13 s.
  Concurrency (then: c's plain appends, no maintain): 4 x 25, 101/101 rows, no failure.
  Full tables and pitfalls: the notes of the issue-17 evaluation.

Needs ``pip install -e '.[store-bench]'`` for the DuckDB rows (deltalake is a dependency).

Usage: python benchmarks/leaderboard.py [--rows 10000] [--stores a,d,d/cmd] [--quick]
       [--skip-baseline-above N] [--dir D] [--repeats 3] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

START = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from orchestrator.leaderboard.schema import METRIC_COLUMNS, SCHEMA, LeaderboardRow  # noqa: E402

METHODS = ("erm", "sgt", "asgt", "lgr", "lgr:annotated", "rrr", "cdep", "gradmask")
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "decoy_mnist", "colored_mnist")
MODELS = {
    "digits": "mlp",
    "mnist": "lenet",
    "fashion_mnist": "lenet",
    "cifar10": "resnet18",
    "decoy_mnist": "lenet",
    "colored_mnist": "lenet",
}
WHERE = "status == 'ok' and dataset == 'cifar10' and clean_acc > 0.5"
SORT = "robust_acc"
TOP = 10
GROUP = ["method", "dataset"]
CLI_ARGS = {  # the same queries as `limelight leaderboard` flags
    "top": ["--where", WHERE, "--sort", SORT, "--top", str(TOP)],
    "group": ["--group-by", ",".join(GROUP)],
}
HIDDEN = ("robust_curve", "faithfulness_curve", "config")  # the table format leaves these out
SHOWN = [f.name for f in SCHEMA if f.name not in HIDDEN]
FULL_SCHEMA = pa.schema([("sweep", pa.string()), *SCHEMA])
COMPACT = "compact~g"  # trial_file_name never yields "~": no trial's file can clash
STORES = (
    "a",
    "a/duckdb",
    "d",
    "d/cmd",
    "b",
    "b/proj",
    "b/duckdb",
    "c",
    "c/proj",
    "c/duckdb",
    "c1",
    "c1/proj",
    "c1/duckdb",
)


# ---------------------------------------------------------------------------- rows


def make_rows(n: int, sweeps: int, seed: int = 0) -> list[LeaderboardRow]:
    rng = random.Random(seed)
    per = max(1, n // sweeps)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = []
    for i in range(n):
        s = min(i // per, sweeps - 1)
        dataset = DATASETS[s % len(DATASETS)] if rng.random() < 0.8 else rng.choice(DATASETS)
        method = rng.choice(METHODS)
        seed_ = i % 3
        clean = rng.uniform(0.3, 0.99)
        robust = clean * rng.uniform(0.1, 0.9)
        status = rng.choices(("ok", "stopped", "error"), (0.9, 0.07, 0.03))[0]
        eps = (0.05, 0.1, 0.3)
        curve = [
            {"attack": a, "eps": e, "acc": round(clean * rng.uniform(0.1, 1.0), 4)}
            for a in ("fgsm", "pgd")
            for e in eps
        ]
        faith = (
            [
                {
                    "fraction": k / 10,
                    "acc": clean * (1 - k / 12),
                    "random_acc": clean * (1 - k / 20),
                }
                for k in range(11)
            ]
            if method in ("sgt", "asgt")
            else []
        )
        config = {
            "method": method,
            "dataset": dataset,
            "model": MODELS[dataset],
            "seed": seed_,
            "lr": round(10 ** rng.uniform(-4, -1), 6),
            "batch_size": rng.choice((64, 128, 256)),
            "epochs": 20,
            "weight_decay": 5e-4,
            "optimizer": "sgd",
            "momentum": 0.9,
            "scheduler": "cosine",
            "mask_ratio": rng.uniform(0, 0.5),
            "reg_weight": rng.uniform(0, 10),
            "attack_eps": 0.1,
            "attack_steps": 10,
            "eval_eps": 0.1,
            "eval_mode": "fast",
            "attacks": ["fgsm", "pgd"],
            "pgd_steps": 20,
            "val_fraction": 0.1,
            "limit": None,
            "device": "cuda",
            "workers": 1,
            "amp": True,
            "num_workers": 4,
            "data_root": "/data/datasets",
            "checkpoint_every": 5,
            "patience": 5,
            "sweep": f"sweep-{s:04d}",
            "trial_index": i % per,
            "git_sha": "3f9c2ab",
        }
        rows.append(
            LeaderboardRow(
                sweep=f"sweep-{s:04d}",
                trial_id=f"t{s:04d}_{i % per:05d}_{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}",
                config_id=f"c{s:04d}_{(i % per) // 3:05d}",
                status=status,
                stopped_epoch=rng.randint(3, 19) if status == "stopped" else None,
                error="RuntimeError: CUDA out of memory" if status == "error" else None,
                method=method,
                dataset=dataset,
                model=MODELS[dataset],
                seed=seed_,
                mask_ratio=config["mask_ratio"] if method in ("sgt", "asgt") else None,
                reg_weight=config["reg_weight"] if method != "erm" else None,
                attack_eps=0.1 if method == "asgt" else None,
                epochs=20,
                eval_eps=0.1,
                eval_mode="fast",
                clean_acc=clean,
                robust_acc=robust,
                fgsm_acc=robust * 1.1 if robust * 1.1 <= 1 else robust,
                pgd_acc=robust,
                robust_curve=curve,
                corruption_acc=clean * rng.uniform(0.5, 0.9),
                faithfulness_auc=0.3 if faith else None,
                faithfulness_random_auc=0.45 if faith else None,
                faithfulness_gap=-0.15 if faith else None,
                faithfulness_curve=faith,
                lime_faithfulness_auc=0.35 if method.startswith("lgr") else None,
                lime_faithfulness_gap=-0.1 if method.startswith("lgr") else None,
                audit_flags=("gradient_masking",) if rng.random() < 0.05 else (),
                audit_note="pgd > fgsm at eps 0.1" if rng.random() < 0.05 else None,
                shortcut_follow_rate=rng.uniform(0, 1) if "mnist" in dataset else None,
                shortcut_acc=rng.uniform(0, 1) if "mnist" in dataset else None,
                n_eval=10000,
                wall_s=rng.uniform(30, 3000),
                git_sha="3f9c2ab1d0e4",
                created_at=start + timedelta(seconds=i),
                checkpoint=f"/results/runs/t{s:04d}_{i % per:05d}/checkpoint.pt",
                logdir=f"/results/runs/t{s:04d}_{i % per:05d}",
                config=config,
            )
        )
    return rows


def row_table(row: LeaderboardRow) -> pa.Table:
    """One row with ``sweep`` as a column (the Delta table stores it as its partition)."""
    return row.to_table().add_column(0, "sweep", pa.array([row.sweep]))


# ---------------------------------------------------------------------------- store a


def old_append_row(root: str, row: LeaderboardRow) -> None:
    """The writer before the Delta store: one file per trial, written under a hidden
    temporary name and renamed (synthetic trial ids are safe file names as they are)."""
    folder = Path(root) / "leaderboard" / f"sweep={row.sweep}"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{row.trial_id}.parquet.{uuid.uuid4().hex[:8]}.tmp"
    pq.write_table(row.to_table(), tmp)
    os.replace(tmp, folder / f"{row.trial_id}.parquet")


def old_read_leaderboard(root: str):
    """The reader before the Delta store: every part file read on its own, conformed to
    ``SCHEMA``, its sweep taken from the folder name; ordered by sweep, ``created_at``."""
    tables = []
    for folder in sorted((Path(root) / "leaderboard").glob("sweep=*")):
        for path in sorted(folder.glob("*.parquet")):
            if path.name[0] in "._":
                continue
            table = pq.read_table(path)
            table = pa.Table.from_arrays(
                [
                    table.column(f.name).cast(f.type)
                    if f.name in table.column_names
                    else pa.nulls(table.num_rows, f.type)
                    for f in SCHEMA
                ],
                schema=SCHEMA,
            )
            sweep = folder.name[len("sweep=") :]
            tables.append(table.add_column(0, "sweep", pa.array([sweep] * table.num_rows)))
    frame = _frame(pa.concat_tables(tables))
    order = frame.sort_values(["sweep", "created_at", "trial_id"], kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def _frame(table: pa.Table):
    """To pandas as the old reader did: nullable integers, list columns as lists."""
    import pandas as pd

    frame = table.to_pandas(
        types_mapper={pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}.get
    )
    for f in table.schema:
        if pa.types.is_list(f.type):
            frame[f.name] = pd.Series(
                table.column(f.name).to_pylist(), index=frame.index, dtype=object
            )
    return frame


# ---------------------------------------------------------------------------- store b


def compact_sweep(folder: Path) -> dict[str, Any]:
    """Rewrite one sweep's files into one. A lock file keeps two compactors apart; the
    compacted file is written hidden and renamed (readers see it whole or not at all);
    only then are the files it read deleted, each only if it is still the file read (a
    trial re-run meanwhile rewrote its part file: keep it, it is newer)."""
    lock = folder / "_compact.lock"
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # FileExistsError: one is running
    try:
        entries = [
            e
            for e in os.scandir(folder)
            if e.is_file() and e.name.endswith(".parquet") and e.name[0] not in "._"
        ]
        seen = {e.path: (e.inode(), e.stat().st_mtime_ns, e.stat().st_size) for e in entries}
        gens = [int(e.name[len(COMPACT) : -8]) for e in entries if e.name.startswith(COMPACT)]
        gen = max(gens, default=0) + 1
        # One dataset over the files (the schema fills columns an old file lacks with nulls).
        table = ds.dataset([e.path for e in entries], schema=SCHEMA, format="parquet").to_table()
        table = _newest(table, [table.column("trial_id")])
        tmp = folder / f".{COMPACT}{gen:06d}.{uuid.uuid4().hex[:8]}.tmp"
        pq.write_table(table, tmp)
        os.rename(tmp, folder / f"{COMPACT}{gen:06d}.parquet")
        for path, ident in seen.items():
            st = os.stat(path)
            if (st.st_ino, st.st_mtime_ns, st.st_size) == ident:
                os.unlink(path)
        return {"read": len(entries), "rows": table.num_rows}
    finally:
        os.close(fd)
        os.unlink(lock)


def _newest(table: pa.Table, keys: list[pa.ChunkedArray]) -> pa.Table:
    """One row per key (the key columns joined), the newest ``created_at``; as is when no
    key repeats (the usual case: a cheap check)."""
    key = keys[0] if len(keys) == 1 else pc.binary_join_element_wise(*keys, "\x00")
    if pc.count_distinct(key).as_py() == table.num_rows:
        return table
    order = pc.sort_indices(table.column("created_at"))  # oldest first
    ranked = pa.table({"k": pc.take(key, order), "j": pa.array(range(len(order)))})
    newest = ranked.group_by("k").aggregate([("j", "max")]).column("j_max")
    return table.take(pc.take(order, newest))


def read_compacted(root: str, columns: list[str] | None = None) -> pa.Table:
    """All rows of store b, ``sweep`` first, one per (sweep, trial_id)."""
    base = Path(root) / "leaderboard"
    files = [
        e.path
        for d in os.scandir(base)
        if d.is_dir() and d.name.startswith("sweep=")
        for e in os.scandir(d.path)
        if e.is_file() and e.name.endswith(".parquet") and e.name[0] not in "._"
    ]
    part = ds.partitioning(pa.schema([("sweep", pa.string())]), flavor="hive")
    data = ds.dataset(
        files, schema=FULL_SCHEMA, format="parquet", partitioning=part, partition_base_dir=str(base)
    )
    wanted = None if columns is None else ["sweep", *[c for c in columns if c != "sweep"]]
    if wanted is not None:
        wanted += [c for c in ("trial_id", "created_at") if c not in wanted]
    table = data.to_table(columns=wanted)
    return _newest(table, [table.column("sweep"), table.column("trial_id")])


# ---------------------------------------------------------------------------- store c


def delta_add_parts(table_path: Path, parts: list[tuple[str, Path]], batch: int = 1000) -> int:
    """Hard-link a's part files (sweep, path) into the Delta table and commit them,
    ``batch`` add actions a commit. Returns the commits made."""
    from deltalake import DeltaTable
    from deltalake.transaction import AddAction, PostCommitHookProperties

    dt = DeltaTable(str(table_path))
    schema = dt.schema()
    commits = 0
    for start in range(0, len(parts), batch):
        actions = []
        for sweep, src in parts[start : start + batch]:
            rel = f"sweep={sweep}/{src.name}"
            dst = table_path / rel
            dst.parent.mkdir(exist_ok=True)
            os.link(src, dst)
            st = dst.stat()
            actions.append(
                AddAction(
                    rel,
                    st.st_size,
                    {"sweep": sweep},
                    st.st_mtime_ns // 10**6,
                    True,
                    json.dumps({"numRecords": 1}),
                )
            )
        dt.create_write_transaction(
            actions,
            "append",
            schema,
            partition_by=["sweep"],
            post_commithook_properties=PostCommitHookProperties(False),
        )
        commits += 1
    return commits


def delta_append(path: str, row: LeaderboardRow) -> None:
    from deltalake import write_deltalake

    write_deltalake(path, row_table(row), mode="append", partition_by=["sweep"])


# ---------------------------------------------------------------------------- measure (child)


def _proj_frame(table: pa.Table):
    import pandas as pd

    frame = table.to_pandas(
        types_mapper={pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}.get
    )
    if "audit_flags" in frame:
        frame["audit_flags"] = pd.Series(
            table.column("audit_flags").to_pylist(), index=frame.index, dtype=object
        )
    return frame


def _sql(kind: str, source: str) -> str:
    if kind == "top":
        return (
            f"SELECT * FROM {source} WHERE status = 'ok' AND dataset = 'cifar10' AND "
            f"clean_acc > 0.5 ORDER BY {SORT} DESC NULLS LAST LIMIT {TOP}"
        )
    aggs = ", ".join(f"avg({m}) AS {m}_mean, stddev_samp({m}) AS {m}_std" for m in METRIC_COLUMNS)
    return f"SELECT method, dataset, count(*) AS n, {aggs} FROM {source} GROUP BY ALL ORDER BY ALL"


def _summary(kind: str, result) -> Any:
    """What the stores must agree on: the top-10 trial ids; each group's n and mean."""
    if kind == "top":
        return list(result["trial_id"])
    return {
        f"{r['method']}/{r['dataset']}": [int(r["n"]), round(float(r["clean_acc_mean"]), 9)]
        for _, r in result.iterrows()
    }


def measure(store: str, kind: str, root: str) -> dict[str, Any]:
    """One measurement, in this (fresh) process: read, query, result summary."""
    from orchestrator.leaderboard.formats import format_frame
    from orchestrator.leaderboard.queries import query

    imported = time.perf_counter()
    base = f"{root}/leaderboard"
    t0 = time.perf_counter()
    duck = None
    if store == "a":
        frame = old_read_leaderboard(root)
    elif store == "d":  # as `limelight leaderboard` reads it (leaderboard_text)
        from orchestrator.leaderboard.io import read_leaderboard
        from orchestrator.leaderboard.queries import LeaderboardQuery, needed_columns

        if kind == "top":
            request = LeaderboardQuery(storage=root, where=WHERE, sort=SORT, top=TOP)
        else:
            request = LeaderboardQuery(storage=root, group_by=",".join(GROUP))
        frame = read_leaderboard(root, columns=needed_columns(request))
    elif store == "b":
        frame = _frame(read_compacted(root))
    elif store == "b/proj":
        frame = _proj_frame(read_compacted(root, SHOWN))
    elif store in ("c", "c1"):
        from deltalake import DeltaTable

        frame = _frame(DeltaTable(base).to_pyarrow_table())
    elif store in ("c/proj", "c1/proj"):
        from deltalake import DeltaTable

        frame = _proj_frame(DeltaTable(base).to_pyarrow_table(columns=["sweep", *SHOWN]))
    elif store in ("a/duckdb", "b/duckdb"):
        import duckdb

        duck = duckdb.connect()
        source = f"read_parquet('{base}/**/*.parquet', hive_partitioning=true, union_by_name=true)"
    elif store in ("c/duckdb", "c1/duckdb"):
        import duckdb
        from deltalake import DeltaTable

        duck = duckdb.connect()
        dataset = DeltaTable(base).to_pyarrow_dataset()  # noqa: F841 (DuckDB scans it by name)
        source = "dataset"
    else:
        raise ValueError(store)
    read_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    if duck is not None:
        result = duck.sql(_sql(kind, source)).df()
        text = result.to_string()
        n_total = duck.sql(f"SELECT count(*) FROM {source}").fetchall()[0][0]
    else:
        n_total = len(frame)
        if kind == "top":
            result = query(frame, where=WHERE, sort=SORT, top=TOP)
        else:
            result = query(frame, group_by=GROUP)
        text = format_frame(result, "table")
    query_s = time.perf_counter() - t1
    return {
        "import_s": imported - START,
        "read_s": read_s,
        "query_s": query_s,
        "maxrss_mb": peak_mb(),
        "rows": n_total,
        "summary": _summary(kind, result),
        "text": text if store == "d" else None,
    }


def peak_mb() -> float:
    """This process's peak RSS: ``VmHWM`` (per address space, so reset by exec; Linux's
    ``ru_maxrss`` carries the forking parent's peak over exec), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(store: str, kind: str, root: str) -> dict[str, Any]:
    if store == "d/cmd":
        return run_command(kind, root)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--_measure", store, kind, root],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{store} {kind} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    return out


# The whole command where /usr/bin/time is missing: the peak from VmHWM at exit.
_PEAK_WRAPPER = (
    "import runpy, sys\n"
    "try:\n"
    "    runpy.run_module('orchestrator', run_name='__main__', alter_sys=True)\n"
    "finally:\n"
    "    hwm = [x for x in open('/proc/self/status') if x.startswith('VmHWM:')]\n"
    "    print(hwm[0].split()[1], file=sys.stderr)\n"
)


def run_command(kind: str, root: str) -> dict[str, Any]:
    """``python -m orchestrator leaderboard --storage ROOT <the query>``, as a user runs
    it: wall time, peak RSS (KB from ``/usr/bin/time -f %M``), its output."""
    args = ["leaderboard", "--storage", root, *CLI_ARGS[kind]]
    if os.access("/usr/bin/time", os.X_OK):
        cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "orchestrator", *args]
    else:
        cmd = [sys.executable, "-c", _PEAK_WRAPPER, *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"d/cmd {kind} failed:\n{done.stderr[-3000:]}")
    return {
        "read_s": None,
        "query_s": None,
        "process_s": wall,
        "maxrss_mb": int(done.stderr.strip().splitlines()[-1]) / 1024,
        "rows": None,
        "summary": None,
        "text": done.stdout.rstrip("\n"),
    }


def expected(rows: list[LeaderboardRow]) -> dict[str, Any]:
    """The summaries of both queries, computed from the rows in memory."""
    import pandas as pd

    names = ["sweep", "created_at", "trial_id", "status", "dataset", "method", "clean_acc"]
    frame = pd.DataFrame({n: [getattr(r, n) for r in rows] for n in [*names, SORT]})
    frame = frame.sort_values(["sweep", "created_at", "trial_id"], kind="stable")
    top = frame.query(WHERE).sort_values(SORT, ascending=False, kind="stable").head(TOP)
    groups = frame.groupby(GROUP, sort=True)
    group = groups.size().rename("n").to_frame()
    group["clean_acc_mean"] = groups["clean_acc"].mean()
    return {"top": _summary("top", top), "group": _summary("group", group.reset_index())}


# ---------------------------------------------------------------------------- concurrency


def _writer(root: str, rows: list[LeaderboardRow], barrier) -> dict[str, Any]:
    from orchestrator.leaderboard.io import append_row

    barrier.wait()
    failed, times = [], []
    for row in rows:
        t = time.perf_counter()
        try:
            append_row(root, row)
        except Exception as error:  # count and go on: did any commit get lost or fail?
            failed.append(f"{type(error).__name__}: {str(error).splitlines()[0][:160]}")
        times.append(time.perf_counter() - t)
    return {"failed": failed, "median_s": statistics.median(times)}


def concurrency(workdir: Path, procs: int, each: int, seed_rows: int = 500) -> dict[str, Any]:
    """``procs`` spawned processes (deltalake's runtime does not survive fork) append
    ``each`` rows with ``append_row`` while this one runs ``maintain`` in a loop; after
    each round a plain Delta read must hold no trial twice and no fewer rows than
    before. Then every row must be there once."""
    from deltalake import DeltaTable

    from orchestrator.leaderboard.io import append_rows, maintain, read_leaderboard

    root = str(workdir / "concurrent")
    rows = make_rows(seed_rows + procs * each, sweeps=4, seed=7)
    append_rows(root, rows[:seed_rows])  # the table exists, with rows to compact

    def ids() -> list[str]:
        table = DeltaTable(f"{root}/leaderboard").to_pyarrow_table(columns=["trial_id"])
        return table.column("trial_id").to_pylist()

    rounds, compactions, twice, fewer, errors, last = 0, 0, 0, 0, [], seed_rows
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(procs + 1)
        with ctx.Pool(procs) as pool:
            chunks = [rows[seed_rows + p * each : seed_rows + (p + 1) * each] for p in range(procs)]
            pending = pool.starmap_async(_writer, [(root, c, barrier) for c in chunks])
            barrier.wait()
            started = time.perf_counter()
            while not pending.ready():
                try:
                    compactions += maintain(root).compacted
                except Exception as error:
                    errors.append(f"{type(error).__name__}: {str(error).splitlines()[0][:160]}")
                rounds += 1
                seen = ids()
                twice += len(seen) != len(set(seen))
                fewer += len(set(seen)) < last
                last = len(set(seen))
            results = pending.get()
            wall = time.perf_counter() - started
    maintain(root)
    seen = ids()
    frame = read_leaderboard(root, columns=["trial_id"])
    return {
        "procs": procs,
        "each": each,
        "wall_s": wall,
        "maintain_rounds": rounds,
        "compactions": compactions,
        "rounds_with_a_row_twice": twice,
        "rounds_with_fewer_rows": fewer,
        "maintain_errors": errors,
        "expected": len(rows),
        "rows": len(seen),
        "distinct": len(set(seen)),
        "missing": len({r.trial_id for r in rows} - set(seen)),
        "read_leaderboard_rows": len(frame),
        "failed": [f for r in results for f in r["failed"]],
        "median_append_s": [r["median_s"] for r in results],
        "files": len(DeltaTable(f"{root}/leaderboard").file_uris()),
    }


def delta_checks(workdir: Path) -> dict[str, Any]:
    """Schema evolution, raw-glob readers before vacuum, time travel, list columns."""
    import duckdb
    import pandas as pd
    from deltalake import DeltaTable, write_deltalake

    out: dict[str, Any] = {}
    path = str(workdir / "checks" / "leaderboard")
    rows = make_rows(40, sweeps=2, seed=3)
    for row in rows[:30]:
        delta_append(path, row)
    dt = DeltaTable(path)
    back = dt.to_pyarrow_table().sort_by("created_at")
    want = pa.concat_tables([row_table(r) for r in rows[:30]])
    out["lists_roundtrip"] = (
        back.column("robust_curve").to_pylist() == want.column("robust_curve").to_pylist()
        and back.column("faithfulness_curve").to_pylist()
        == want.column("faithfulness_curve").to_pylist()
    )
    out["types"] = {
        f.name: str(f.type)
        for f in back.schema
        if f.name in ("sweep", "created_at", "stopped_epoch", "robust_curve", "audit_flags")
    }
    # A new column (the project adds some now and then): plain append vs schema_mode="merge".
    extra = row_table(rows[30]).append_column("new_metric", pa.array([0.5]))
    try:
        write_deltalake(path, extra, mode="append", partition_by=["sweep"])
        out["new_column_plain_append"] = "accepted"
    except Exception as error:
        out["new_column_plain_append"] = (
            f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        )
    write_deltalake(path, extra, mode="append", partition_by=["sweep"], schema_mode="merge")
    frame = DeltaTable(path).to_pandas()
    out["new_column_merge"] = {"rows": len(frame), "nulls": int(frame["new_metric"].isna().sum())}
    # An old writer (without the column) after the merge.
    try:
        delta_append(path, rows[31])
        out["old_writer_after_merge"] = "accepted (new column null)"
    except Exception as error:
        out["old_writer_after_merge"] = (
            f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        )
    try:
        write_deltalake(
            path, row_table(rows[32]), mode="append", partition_by=["sweep"], schema_mode="merge"
        )
        out["old_writer_after_merge_with_merge_mode"] = "accepted"
    except Exception as error:
        out["old_writer_after_merge_with_merge_mode"] = (
            f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        )
    dt = DeltaTable(path)
    n = dt.to_pyarrow_table(columns=["trial_id"]).num_rows
    files_before = len(dt.file_uris())
    dt.optimize.compact()
    dt = DeltaTable(path)
    glob_rows = len(pd.read_parquet(path))
    duck_rows = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{path}/**/*.parquet', "
        f"hive_partitioning=true, union_by_name=true)"
    ).fetchall()[0][0]
    out["after_compact_before_vacuum"] = {
        "delta_rows": dt.to_pyarrow_table(columns=["trial_id"]).num_rows,
        "rows_written": n,
        "files": f"{files_before} -> {len(dt.file_uris())}",
        "pandas_read_parquet_dir_rows": glob_rows,
        "duckdb_glob_rows": duck_rows,
    }
    old = DeltaTable(path, version=3).to_pyarrow_table(columns=["trial_id"]).num_rows
    dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    try:
        old_after = DeltaTable(path, version=3).to_pyarrow_table(columns=["trial_id"]).num_rows
    except Exception as error:
        old_after = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    out["time_travel_v3"] = {"before_vacuum_rows": old, "after_vacuum": old_after}
    out["after_vacuum_glob_rows"] = len(pd.read_parquet(path))
    return out


# ---------------------------------------------------------------------------- build


def disk(path: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            files += 1
            size += os.stat(os.path.join(dirpath, name)).st_size
    return files, size


def _timed(action, items) -> float:
    """The median ms of ``action(item)`` over ``items``."""
    times = []
    for item in items:
        t = time.perf_counter()
        action(item)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def _parts(work: Path, rows: list[LeaderboardRow]) -> list[tuple[str, Path]]:
    """(sweep, path) of a's part files: b and c are built from them by hard link."""
    base = work / "a" / "leaderboard"
    return [(r.sweep, base / f"sweep={r.sweep}" / f"{r.trial_id}.parquet") for r in rows]


def build_a(args: argparse.Namespace, work: Path, rows: list[LeaderboardRow]) -> dict[str, Any]:
    root = str(work / "a")
    info = {"a_append_ms": _timed(lambda row: old_append_row(root, row), rows)}
    info["a_disk"] = disk(work / "a" / "leaderboard")
    print(f"a: {len(rows)} rows appended, median {info['a_append_ms']:.2f} ms a row", flush=True)
    return info


def build_d(args: argparse.Namespace, work: Path, rows: list[LeaderboardRow]) -> dict[str, Any]:
    """The project's store: ``append_rows`` ``--batch`` rows a commit, ``maintain``,
    then ``--probe`` single-row ``append_row`` calls (timed) on the maintained table;
    the same on an empty table (``d0``, removed after)."""
    from deltalake import DeltaTable

    from orchestrator.leaderboard.io import append_row, append_rows, maintain

    n, probe = len(rows), min(args.probe, max(1, len(rows) // 20))
    root = str(work / "d")
    t = time.perf_counter()
    batches = [rows[s : min(s + args.batch, n - probe)] for s in range(0, n - probe, args.batch)]
    commit_ms = _timed(lambda batch: append_rows(root, batch), batches)
    info: dict[str, Any] = {"d_bulk": (n - probe, len(batches), time.perf_counter() - t, commit_ms)}
    files_before = len(DeltaTable(f"{root}/leaderboard").file_uris())
    t = time.perf_counter()
    report = maintain(root)
    info["d_maintain"] = (time.perf_counter() - t, files_before, report.compacted)
    info["d_append_ms"] = _timed(lambda row: append_row(root, row), rows[n - probe :])
    empty = str(work / "d0")
    info["d_append_ms_empty"] = _timed(lambda row: append_row(empty, row), rows[:probe])
    shutil.rmtree(empty, ignore_errors=True)
    dt = DeltaTable(f"{root}/leaderboard")
    info["d_files"] = len(dt.file_uris())
    info["d_version"] = dt.version()
    info["d_disk"] = disk(work / "d" / "leaderboard")
    info["d_log"] = disk(work / "d" / "leaderboard" / "_delta_log")
    print(
        f"d: {n - probe} rows in {len(batches)} append_rows commits, "
        f"{info['d_bulk'][2]:.1f} s (median {commit_ms:.0f} ms a commit); maintain "
        f"{info['d_maintain'][0]:.1f} s ({files_before} files, compacted "
        f"{report.compacted}); {probe} append_row at {n - probe} rows: median "
        f"{info['d_append_ms']:.1f} ms ({info['d_append_ms_empty']:.1f} ms on an empty "
        f"table); now {info['d_files']} data files, version {info['d_version']}",
        flush=True,
    )
    return info


def _link(parts: list[tuple[str, Path]], root: Path) -> None:
    """Hard-link a's part files (sweep, path) into ``root``'s old layout."""
    for sweep, src in parts:
        dst = root / "leaderboard" / f"sweep={sweep}" / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, dst)


def build_b(args: argparse.Namespace, work: Path, rows: list[LeaderboardRow]) -> dict[str, Any]:
    """b: link all but the last ``probe`` of a's parts, compact every sweep, link the rest."""
    n, probe, info = len(rows), min(args.probe, max(1, len(rows) // 20)), {}
    root_b, parts = work / "b", _parts(work, rows)
    _link(parts[: n - probe], root_b)
    t = time.perf_counter()
    folders = sorted((root_b / "leaderboard").iterdir())
    compact_ms = _timed(compact_sweep, folders)
    info["b_compact_all_s"] = time.perf_counter() - t
    info["b_compact_sweep_ms"] = compact_ms
    _link(parts[n - probe :], root_b)
    info["b_disk"] = disk(root_b / "leaderboard")
    print(
        f"b: {len(folders)} sweeps compacted in {info['b_compact_all_s']:.1f} s "
        f"(median {compact_ms:.1f} ms a sweep)",
        flush=True,
    )
    return info


def build_c(args: argparse.Namespace, work: Path, rows: list[LeaderboardRow]) -> dict[str, Any]:
    from deltalake import DeltaTable

    n, probe, info = len(rows), min(args.probe, max(1, len(rows) // 20)), {}
    root_c, parts = work / "c", _parts(work, rows)
    path = str(root_c / "leaderboard")
    first = min(args.delta_row_commits, n - 2 * probe)
    times = []
    for row in rows[:first]:
        t = time.perf_counter()
        delta_append(path, row)
        times.append(time.perf_counter() - t)
    k = max(1, min(100, first // 10))
    info["c_append_ms_first"] = 1000 * statistics.median(times[1 : k + 1])
    info["c_append_ms_at_first"] = (first, 1000 * statistics.median(times[-k:]))
    print(
        f"c: {first} single-row commits: median {info['c_append_ms_first']:.1f} ms over rows "
        f"1..{k}, {info['c_append_ms_at_first'][1]:.1f} ms over the last {k}",
        flush=True,
    )
    t = time.perf_counter()
    commits = delta_add_parts(root_c / "leaderboard", parts[first : n - 2 * probe])
    DeltaTable(path).create_checkpoint()
    info["c_bulk"] = (n - 2 * probe - first, commits, time.perf_counter() - t)
    print(
        f"c: {info['c_bulk'][0]} rows added by link in {commits} commits, "
        f"{info['c_bulk'][2]:.1f} s",
        flush=True,
    )
    info["c_append_ms_uncompacted"] = _timed(
        lambda row: delta_append(path, row), rows[n - 2 * probe : n - probe]
    )
    files_before = len(DeltaTable(path).file_uris())
    t = time.perf_counter()
    metrics = DeltaTable(path).optimize.compact()
    info["c_compact_s"] = time.perf_counter() - t
    t = time.perf_counter()
    removed = DeltaTable(path).vacuum(
        retention_hours=0, enforce_retention_duration=False, dry_run=False
    )
    info["c_vacuum_s"] = (time.perf_counter() - t, len(removed))
    t = time.perf_counter()
    DeltaTable(path).create_checkpoint()
    info["c_checkpoint_s"] = time.perf_counter() - t
    info["c_append_ms_compacted"] = _timed(lambda row: delta_append(path, row), rows[n - probe :])
    info["c_log"] = disk(Path(path) / "_delta_log")
    info["c_version"] = DeltaTable(path).version()
    info["c_disk"] = disk(root_c / "leaderboard")
    print(
        f"c: appends at {n} rows: {info['c_append_ms_uncompacted']:.1f} ms uncompacted "
        f"({files_before} files), compact {info['c_compact_s']:.1f} s "
        f"({metrics.get('numFilesRemoved')} -> {metrics.get('numFilesAdded')} files), "
        f"vacuum {info['c_vacuum_s'][0]:.1f} s ({len(removed)} files), checkpoint "
        f"{info['c_checkpoint_s']:.2f} s, then {info['c_append_ms_compacted']:.1f} ms; "
        f"log {info['c_log'][0]} files {info['c_log'][1] / 1e6:.1f} MB",
        flush=True,
    )
    return info


def build_c1(args: argparse.Namespace, work: Path, rows: list[LeaderboardRow]) -> dict[str, Any]:
    """c1: Delta without partitions, in the state ``optimize.compact()`` leaves it: the
    rows but the last ``probe`` in one file (one commit here, not N), then ``probe``
    single-row appends (timed), then a compaction of those (timed)."""
    from deltalake import DeltaTable, write_deltalake

    n, probe = len(rows), min(args.probe, max(1, len(rows) // 20))
    path = str(work / "c1" / "leaderboard")
    t = time.perf_counter()
    records = []
    for row in rows[: n - probe]:
        record = {name: getattr(row, name) for name in FULL_SCHEMA.names}
        for name in ("robust_curve", "faithfulness_curve", "audit_flags"):
            record[name] = list(record[name])
        records.append(record)
    write_deltalake(path, pa.Table.from_pylist(records, FULL_SCHEMA))
    info: dict[str, Any] = {"c1_bulk_s": time.perf_counter() - t}
    info["c1_append_ms"] = _timed(
        lambda row: write_deltalake(path, row_table(row), mode="append"), rows[n - probe :]
    )
    t = time.perf_counter()
    DeltaTable(path).optimize.compact()
    DeltaTable(path).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    info["c1_compact_s"] = time.perf_counter() - t
    info["c1_disk"] = disk(Path(path))
    print(
        f"c1: {n - probe} rows in one commit {info['c1_bulk_s']:.1f} s; {probe} appends "
        f"median {info['c1_append_ms']:.1f} ms; compact+vacuum {info['c1_compact_s']:.2f} s; "
        f"{info['c1_disk'][0]} files {info['c1_disk'][1] / 1e6:.1f} MB",
        flush=True,
    )
    return info


BUILDERS = {"a": build_a, "d": build_d, "b": build_b, "c": build_c, "c1": build_c1}


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument(
        "--stores",
        default="a,d,d/cmd",
        help=f"comma-separated, of: {','.join(STORES)} (or all)",
    )
    parser.add_argument("--quick", action="store_true", help="2,000 rows, 1 repeat")
    parser.add_argument("--sweeps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-repeats", type=int, default=1)
    parser.add_argument(
        "--skip-baseline-above",
        type=int,
        default=20_000,
        help="do not read store a (the part files, one by one) above this many rows",
    )
    parser.add_argument("--batch", type=int, default=1000, help="d: rows per append_rows")
    parser.add_argument("--delta-row-commits", type=int, default=1000)
    parser.add_argument("--probe", type=int, default=20, help="single-row appends timed at N rows")
    parser.add_argument("--concurrency", type=int, default=4, help="processes (0: skip)")
    parser.add_argument("--concurrent-appends", type=int, default=25)
    parser.add_argument("--checks", action="store_true", help="also run delta_checks")
    parser.add_argument("--dir", help="work dir (kept); default: a temp dir, removed")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--_measure", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._measure:
        print(json.dumps(measure(*args._measure)))
        return
    if args.quick:
        args.rows, args.repeats = 2000, 1
    stores = list(STORES) if args.stores == "all" else args.stores.split(",")
    if unknown := [s for s in stores if s not in STORES]:
        parser.error(f"unknown store(s) {unknown}; valid: {', '.join(STORES)}")
    families = {s.split("/")[0] for s in stores}
    if families & {"b", "c"}:
        families.add("a")  # built from a's part files
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="lb_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"rows": args.rows}
    try:
        t = time.perf_counter()
        rows = make_rows(args.rows, args.sweeps)
        print(f"{args.rows} rows made in {time.perf_counter() - t:.1f} s", flush=True)
        saved = work / "build.json"
        build = {}
        if saved.exists() and json.loads(saved.read_text()).get("rows") == args.rows:
            build = json.loads(saved.read_text())["build"]  # --dir: reuse the stores built
            print(f"reusing the stores built in {work}", flush=True)
        for name, builder in BUILDERS.items():
            if name in families and f"{name}_disk" not in build:
                build.update(builder(args, work, rows))
                saved.write_text(json.dumps({"rows": args.rows, "build": build}))
        results["build"] = build
        if args.concurrency:
            results["concurrency"] = concurrency(work, args.concurrency, args.concurrent_appends)
            print("concurrency:", json.dumps(results["concurrency"]), flush=True)
        if args.checks:
            results["checks"] = delta_checks(work)
            print("checks:", json.dumps(results["checks"], indent=1), flush=True)
        if args.rows > args.skip_baseline_above:
            stores = [s for s in stores if s != "a"]
        table = {}
        for store in stores:
            repeats = args.baseline_repeats if store in ("a", "a/duckdb") else args.repeats
            for kind in ("top", "group"):
                runs = [
                    run_child(store, kind, str(work / store.split("/")[0])) for _ in range(repeats)
                ]
                med = {
                    key: None if runs[0][key] is None else statistics.median(r[key] for r in runs)
                    for key in ("read_s", "query_s", "process_s", "maxrss_mb")
                }
                for key in ("rows", "summary", "text"):
                    med[key] = runs[0].get(key)
                table[(store, kind)] = med
                print(f"  {store:<9} {kind:<5} {_cells(med)}  rows {med['rows']}", flush=True)
        report(args, results, table, expected(rows))
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


def _cells(m: dict[str, Any]) -> str:
    if m["read_s"] is None:  # the whole command: no inside view
        return f"{'-':>8} {'-':>8} {'-':>9} {m['process_s']:>10.2f} {m['maxrss_mb']:>8.0f}"
    return (
        f"{m['read_s']:>8.2f} {m['query_s']:>8.3f} {m['read_s'] + m['query_s']:>9.2f} "
        f"{m['process_s']:>10.2f} {m['maxrss_mb']:>8.0f}"
    )


def report(
    args: argparse.Namespace, results: dict[str, Any], table: dict, want: dict[str, Any]
) -> None:
    b, n = results["build"], args.rows
    print(
        f"\n== {n:,} rows, {args.sweeps} sweeps; medians of {args.repeats} "
        f"(a: {args.baseline_repeats}); fresh process each"
    )
    header = (
        f"{'store':<10} {'query':<6} {'read s':>8} {'query s':>8} {'read+q s':>9} "
        f"{'process s':>10} {'peak MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for (store, kind), m in table.items():
        print(f"{store:<10} {kind:<6} {_cells(m)}")
    print(f"\n{'store':<6} {'files':>8} {'MB':>9}  append a row")
    if "a_disk" in b:
        print(
            f"{'a':<6} {b['a_disk'][0]:>8} {b['a_disk'][1] / 1e6:>9.1f}  "
            f"{b['a_append_ms']:.2f} ms (one file per trial)"
        )
    if "d_disk" in b:
        print(
            f"{'d':<6} {b['d_disk'][0]:>8} {b['d_disk'][1] / 1e6:>9.1f}  "
            f"{b['d_append_ms']:.1f} ms at {n} rows, {b['d_append_ms_empty']:.1f} ms empty "
            f"(append_row); {b['d_bulk'][3]:.0f} ms per append_rows of {args.batch}; "
            f"maintain {b['d_maintain'][0]:.1f} s; read with {b['d_files']} data files "
            f"(version {b['d_version']}, log {b['d_log'][0]} files)"
        )
    if "b_disk" in b:
        print(
            f"{'b':<6} {b['b_disk'][0]:>8} {b['b_disk'][1] / 1e6:>9.1f}  a's + compaction "
            f"{b['b_compact_sweep_ms']:.1f} ms a sweep ({b['b_compact_all_s']:.1f} s all)"
        )
    if "c_disk" in b:
        print(
            f"{'c':<6} {b['c_disk'][0]:>8} {b['c_disk'][1] / 1e6:>9.1f}  "
            f"{b['c_append_ms_first']:.1f} ms (empty) / {b['c_append_ms_at_first'][1]:.1f} ms at "
            f"{b['c_append_ms_at_first'][0]} rows / {b['c_append_ms_uncompacted']:.1f} ms at {n} "
            f"uncompacted / {b['c_append_ms_compacted']:.1f} ms at {n} compacted; log "
            f"{b['c_log'][0]} files {b['c_log'][1] / 1e6:.1f} MB, version {b['c_version']}"
        )
    if "c1_disk" in b:
        print(
            f"{'c1':<6} {b['c1_disk'][0]:>8} {b['c1_disk'][1] / 1e6:>9.1f}  "
            f"{b['c1_append_ms']:.1f} ms at {n} rows (compacted, unpartitioned); "
            f"compact+vacuum {b['c1_compact_s']:.2f} s"
        )
    # Every store must give what the rows in memory give (d/cmd: d's text).
    bad = []
    for (store, kind), m in table.items():
        if store == "d/cmd":
            ok = ("d", kind) not in table or m["text"] == table[("d", kind)]["text"]
        else:
            ok = m["rows"] == n and m["summary"] == want[kind]
        if not ok:
            bad.append(f"{store}/{kind}")
    print("results equal to the rows' (all stores)" if not bad else f"MISMATCH: {bad}")
    if args.json:
        out = dict(results, table={f"{s}|{k}": v for (s, k), v in table.items()})
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
