"""Per-trial orchestration overhead of a sweep on `digits`, measured in one run.

What a sweep trial costs beyond the job itself: `orchestrator.sweeps.tune.run_sweep` on a
small spec built in code (erm, digits, `train: {epochs: 2}`, `lr` searched
log-uniform in [0.01, 0.1], `eval: {eval_eps: 0.1, attacks: [pgd], pgd_steps: 2,
limit: 50}`, `--trials` trials, `seeds: [0]`, `val_fraction: 0.1`,
`max_concurrent: 1` so that trials run one after another), on a local Ray the script
starts itself (`ray.init(address="local", num_cpus=2, include_dashboard=False)`, timed
and excluded), each case into a fresh temp dir.

Sweep trial time (the measure): the driver's wall time between consecutive trial
completions, taken with `time.perf_counter()` in `run_sweep`'s `progress` callback,
which Tune's driver loop calls as each trial completes. With one trial at a time,
that interval is everything a further trial adds to the sweep's wall time: Optuna's
suggestion, Tune's scheduling, the trial actor (a reused one after the first),
`run()` itself, the per-epoch and final `tune.report` and the leaderboard row. The
first trial's interval also holds the sweep's set-up (Tuner,
searcher, experiment directory) and is shown apart; the median is over trials 2..N.
Neither of the two in-trial clocks measures this: the row's `wall_s` is taken inside
the trial around `run()` (+ the HParams summary), and Tune's `time_total_s` inside the
trial actor from the function's start to its last report; both are shown to split
the overhead: "outside" = interval - `time_total_s` (scheduling, actor start and
imports, result handling), "in actor" = `time_total_s` - `wall_s` (reporting,
HParams, row), "in run()" = `wall_s` - alone (run() in a fresh process vs a warm one).

Reference, the same job alone: after the sweep, each trial's resolved config (its
`runs/<trial_id>/config.json`) goes to `orchestrator.run.run` in this driver process
(`RunSettings(device="cpu")`, inline, Ray not involved, the spec's eval config with
the trial's seed), `--alone-repeats` times each (the order reversing each repeat),
after one untimed cold job (the imports `run()` makes lazily, first calls; shown).
torch runs with the trial's thread count (Ray sets OMP_NUM_THREADS to the actor's
whole CPUs: 1), not the driver's default 2: on the loaded 2-core machine a first run
with 2 threads took 9.6 s a job alone (1.45 s with 1 thread minutes later), which would
hide the overhead. Overhead = median sweep trial time - median time alone (also
fastest vs fastest, the less load-sensitive); ratio = their quotient. Also the sweep's
whole wall time (around `run_sweep`: set-up, trials, checkpoint pruning) / trials vs
the median time alone. Goal: <= 3 s per inline trial.

`--train-workers` adds the same sweep with `resources: {workers: 2}`: each trial drives
a 2-worker `TorchTrainer` (gloo DDP). It is measured against the same inline job alone
(what the job costs without any Ray), and against the same `run()` with `workers=2`
alone in this driver (a TorchTrainer without Tune), so that the Train path's own
overhead (see benchmarks/methods.py) and Tune's share part.

Measured 2026-12-01 on a 2-core CPU (torch 2.14.1 CPU, ray 2.60), shared with
other work (absolute times are inflated; the ratios are the point):
  inline, 5 trials (python benchmarks/sweep.py --trials 5), trial processes reused
  (TuneConfig(reuse_actors=True), orchestrator/sweeps/tune.py):
    sweep trial (trials 2..5)  median 1.26 s (fastest 1.16); the first, with the
                               sweep's set-up and the cold process, 10.9 s
    job alone (1 thread)       median 1.15 s (10 jobs, fastest 0.97)
    overhead per trial         +0.10 s (fastest vs fastest +0.19 s), 1.09x: goal met
    whole sweep 16.2 s / 5 = 3.25 s a trial (the first trial's cold start included)
  Before reuse_actors, every trial started a fresh process: +11.8 s a trial (9.1x),
  ~7 s of it importing torch, Ray Tune and the project (a cold run() alone: 8.7 s vs
  1.4 s warm; ~3.8 s under the data set's loaders, ~3.1 s in the first SGD).
  train-workers, 2 trials (--train-workers --trials 2 --skip-inline --ray-cpus 3; a
  trial's own 0.1 CPU beside its 2 workers needs 3 logical CPUs):
    sweep trial 30.4 s; the same run() with workers=2 alone (a TorchTrainer without
    Tune) 28.5 s, so Tune's part is +1.9 s (1.07x) and Ray Train's start-up the rest
    (+26.9 s over the 1.6 s inline job; see benchmarks/methods.py).

Usage: python benchmarks/sweep.py [--trials 4] [--alone-repeats 2]
       [--train-workers [--skip-inline] --ray-cpus 3] [--ray-logs]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import optuna
import ray
import torch

from orchestrator.config import EvalConfig
from orchestrator.run import RunSettings, TrainConfig, run
from orchestrator.sweeps.spec import SweepSpec, parse_spec
from orchestrator.sweeps.tune import run_sweep

GOAL_S = 3.0  # inline: at most this many seconds of overhead per trial


def build_spec(name: str, trials: int, workers: int) -> SweepSpec:
    text: dict[str, Any] = {
        "name": name,
        "method": "erm",
        "dataset": "digits",
        "train": {"epochs": 2},
        "search": {"lr": {"loguniform": [0.01, 0.1]}},
        "eval": {"eval_eps": 0.1, "attacks": ["pgd"], "pgd_steps": 2, "limit": 50},
        "trials": trials,
        "seeds": [0],
        "max_concurrent": 1,
        "val_fraction": 0.1,
    }
    if workers > 1:
        text["resources"] = {"workers": workers}
    return parse_spec(text)


@dataclass
class Trial:
    trial_id: str
    config: dict[str, Any]
    interval: float  # driver: previous completion (or run_sweep's start) to this one
    tune_total: float  # Tune's time_total_s, inside the trial actor
    row_wall: float  # the leaderboard row's wall_s, inside the trial around run()
    alone: list[float] = field(default_factory=list)  # run() inline in the driver
    alone_train: list[float] = field(default_factory=list)  # run() with workers=2


class SweepFailed(RuntimeError):
    """A trial did not finish: there is no per-trial time to report."""


@dataclass
class SweepTiming:
    trials: list[Trial]  # in completion order
    wall: float  # around run_sweep
    tail: float  # last completion to run_sweep's return


def timed_sweep(spec: SweepSpec, root: str) -> SweepTiming:
    """Run the sweep, noting when the driver sees each trial complete."""
    from orchestrator.leaderboard import read_leaderboard

    completions: list[tuple[str, float]] = []

    def progress(line: str) -> None:
        now = time.perf_counter()
        completions.append((line.split()[1], now))  # "trial <id> done: ..."
        print(f"   {now - start:6.1f} s  {line}", flush=True)

    start = time.perf_counter()
    report = run_sweep(spec, storage=root, progress=progress)
    end = time.perf_counter()
    if report.ok != spec.trials:
        raise SweepFailed(
            f"{report.ok} of {spec.trials} trials ok ({report.errors} failed, "
            f"{report.stopped} stopped): see the trial lines above"
        )
    finals = final_results(Path(root) / spec.name)
    rows = read_leaderboard(root, spec.name).set_index("trial_id")
    trials, previous = [], start
    for trial_id, at in completions:
        config = json.loads(
            (Path(root) / spec.name / "runs" / trial_id / "config.json").read_text()
        )
        trials.append(
            Trial(
                trial_id=trial_id,
                config=config,
                interval=at - previous,
                tune_total=float(finals[trial_id]["time_total_s"]),
                row_wall=float(rows.loc[trial_id, "wall_s"]),
            )
        )
        previous = at
    return SweepTiming(trials, wall=end - start, tail=end - previous)


def final_results(experiment: Path) -> dict[str, dict[str, Any]]:
    """Each trial's last Tune result (its result.json's last line), by trial id."""
    finals = {}
    for path in experiment.glob("*/result.json"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if lines:
            last = json.loads(lines[-1])
            finals[last["trial_id"]] = last
    return finals


def time_alone(
    config: dict[str, Any], spec: SweepSpec, root: str, out: str, workers: int = 1
) -> float:
    """Wall seconds of the trial's job run alone in this process."""
    train = TrainConfig.from_dict(config)
    eval_config: EvalConfig = replace(spec.eval_config, seed=train.seed)
    settings = RunSettings(storage=root, out=out, device="cpu", workers=workers)
    start = time.perf_counter()
    run(train, settings, eval_config=eval_config)
    return time.perf_counter() - start


def trial_threads(spec: SweepSpec) -> int:
    """torch threads in a trial: Ray sets OMP_NUM_THREADS to the actor's whole CPUs
    (at least 1); a TorchTrainer trial's actor holds 0.1 CPU, its workers 1 each."""
    return max(1, math.floor(spec.resources.cpus)) if spec.resources.workers == 1 else 1


def bench_case(args: argparse.Namespace, label: str, workers: int) -> dict[str, float] | None:
    spec = build_spec(f"bench-{label}", args.trials, workers)
    threads = trial_threads(spec)
    print(
        f"\n{label}: sweep of {args.trials} erm trials on digits (2 epochs, PGD-2 eval on "
        f"50 images, val_fraction 0.1), max_concurrent 1"
        + (f", resources.workers {workers} (TorchTrainer per trial)" if workers > 1 else ""),
        flush=True,
    )
    driver_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="limelight-bench-") as root:
        try:
            timing = timed_sweep(spec, root)
        except SweepFailed as error:
            print(f"   {label}: no result, {error}", flush=True)
            return None
        trials = timing.trials
        torch.set_num_threads(threads)  # the job alone computes as the trial does
        try:
            # One untimed job first: the driver's one-time costs (TensorBoard's import,
            # the first attacks) would otherwise land on the first reference job.
            cold = time_alone(trials[0].config, spec, root, "alone/warm-up")
            for repeat in range(args.alone_repeats):
                order = trials if repeat % 2 == 0 else trials[::-1]
                for trial in order:
                    out = f"alone/{trial.trial_id}-r{repeat}"
                    trial.alone.append(time_alone(trial.config, spec, root, out))
            if workers > 1:
                for trial in trials:
                    out = f"alone-train/{trial.trial_id}"
                    trial.alone_train.append(time_alone(trial.config, spec, root, out, workers))
        finally:
            torch.set_num_threads(driver_threads)

    print(
        f"   {'trial':<10} {'lr':>7} {'sweep s':>8} {'tune s':>7} {'row s':>6} "
        f"{'alone s':>8}" + (f" {'alone TT s':>10}" if workers > 1 else "")
    )
    for i, trial in enumerate(trials):
        note = "  (+ sweep set-up)" if i == 0 else ""
        print(
            f"   {trial.trial_id:<10} {trial.config['lr']:>7.4f} {trial.interval:>8.2f} "
            f"{trial.tune_total:>7.2f} {trial.row_wall:>6.2f} "
            f"{_fmt_list(trial.alone):>8}"
            + (f" {_fmt_list(trial.alone_train):>10}" if workers > 1 else "")
            + note
        )
    print(
        "   (sweep s: driver, previous completion to this one; tune s: Tune's time_total_s "
        "in the actor; row s: the row's wall_s around run(); alone s: run() in the driver)"
    )
    steady = trials[1:] or trials  # a one-trial sweep has only the set-up-laden interval
    sweep_trial = statistics.median(t.interval for t in steady)
    sweep_fast = min(t.interval for t in steady)
    alone_all = [s for t in trials for s in t.alone]
    alone, alone_fast = statistics.median(alone_all), min(alone_all)
    outside_run = statistics.median(t.interval - t.row_wall for t in steady)
    tune_total = statistics.median(t.tune_total for t in steady)
    row_wall = statistics.median(t.row_wall for t in steady)
    per_trial = timing.wall / len(trials)
    overhead = sweep_trial - alone
    print(
        f"   sweep trial (trials 2..{len(trials)}): median {sweep_trial:.2f} s (fastest "
        f"{sweep_fast:.2f}); job alone (inline, {threads} thread(s) as in the trial, warm "
        f"driver, {len(alone_all)} jobs): median {alone:.2f} s (fastest {alone_fast:.2f})"
    )
    goal = ""
    if workers == 1:
        goal = f"; goal <= {GOAL_S:g} s: {'met' if overhead <= GOAL_S else 'MISSED'}"
    print(
        f"   overhead per trial: {overhead:+.2f} s (fastest vs fastest "
        f"{sweep_fast - alone_fast:+.2f} s), ratio sweep trial / alone "
        f"{sweep_trial / alone:.2f}x{goal}"
    )
    print(
        f"   outside run() in the same trial (sweep s - row s, load on the job cancels): "
        f"median {outside_run:+.2f} s = outside the actor's function "
        f"{sweep_trial - tune_total:+.2f} + in the actor around run() "
        f"{tune_total - row_wall:+.2f} (medians); run() in the trial vs alone "
        f"{row_wall - alone:+.2f} s"
    )
    print(
        f"   the driver's first (untimed) job alone, cold (the imports run() makes "
        f"lazily, first calls; torch and Ray already imported): {cold:.2f} s, "
        f"{cold - alone:+.2f} s over the median"
    )
    print(
        f"   whole sweep {timing.wall:.1f} s / {len(trials)} trials = {per_trial:.2f} s a "
        f"trial, {per_trial / alone:.2f}x the job alone (first interval, with set-up, "
        f"{trials[0].interval:.2f} s; after the last completion {timing.tail:.2f} s)"
    )
    result = {"sweep_trial": sweep_trial, "alone": alone, "per_trial": per_trial}
    if workers > 1:
        alone_train = statistics.median(s for t in trials for s in t.alone_train)
        print(
            f"   the same job as a TorchTrainer alone (run(), workers={workers}, Ray Train "
            f"without Tune): median {alone_train:.2f} s, so Train's part "
            f"{alone_train - alone:+.2f} s, Tune's {sweep_trial - alone_train:+.2f} s "
            f"({sweep_trial / alone_train:.2f}x)"
        )
        result["alone_train"] = alone_train
    return result


def _fmt_list(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=(
            "Per-trial overhead of a sweep, measured in one run: run_sweep on a small "
            "erm/digits spec (one trial at a time), each trial's driver-side time "
            "(completion to completion) against the same job run alone with "
            "orchestrator.run.run in the driver (inline, no Ray): medians, overhead in "
            "seconds and as a ratio. Default run (inline, 4 trials) ~1 min on 2 cores."
        ),
    )
    parser.add_argument(
        "--trials", type=int, default=4, help="trials per sweep (default 4; >= 2 for a median)"
    )
    parser.add_argument(
        "--alone-repeats",
        type=int,
        default=2,
        help="times each trial's config runs alone inline (default 2)",
    )
    parser.add_argument(
        "--train-workers",
        action="store_true",
        help="also a sweep with resources.workers 2 (a TorchTrainer per trial, ~30 s a "
        "trial on 2 cores, plus one TorchTrainer job alone per trial; use --trials 2)",
    )
    parser.add_argument(
        "--skip-inline", action="store_true", help="with --train-workers: only that case"
    )
    parser.add_argument(
        "--ray-cpus",
        type=int,
        default=2,
        help="logical CPUs of the local Ray (default: 2; --train-workers needs 3)",
    )
    parser.add_argument(
        "--ray-logs", action="store_true", help="show Ray worker output (default: hidden)"
    )
    args = parser.parse_args(argv)
    for name in ("trials", "alone_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.skip_inline and not args.train_workers:
        parser.error("--skip-inline needs --train-workers")

    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    print(
        f"{os.cpu_count()} cores, ray {ray.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads in the driver)"
    )
    start = time.perf_counter()
    # Logical CPUs: a TorchTrainer trial needs its own share (0.1) beside its 2 workers'
    # whole CPUs, more than a 2-CPU Ray has; --ray-cpus 3 oversubscribes the 2 cores.
    ray.init(
        address="local",
        num_cpus=args.ray_cpus,
        include_dashboard=False,
        log_to_driver=args.ray_logs,
    )
    print(f"ray.init (excluded): {time.perf_counter() - start:.1f} s")
    try:
        if not args.skip_inline:
            bench_case(args, "inline", workers=1)
        if args.train_workers:
            bench_case(args, "train-workers", workers=2)
    finally:
        ray.shutdown()
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
