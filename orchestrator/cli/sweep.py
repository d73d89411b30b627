"""``limelight sweep``: a spec's search space through Ray Tune + Optuna, or the best
trials of a finished sweep evaluated again."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from methods.evaluate import EVAL_MODES
from methods.options import ConfigError, option, validate
from orchestrator.config import RunSettings
from orchestrator.flags import add_fields, from_flags
from orchestrator.storage import check_folder_name
from orchestrator.sweeps.spec import SMOKE_LIMIT

__all__ = ["DEFAULT_SPEC", "DESCRIPTION", "SweepRequest", "add_arguments", "run"]

#: The spec `limelight sweep` runs when given none.
DEFAULT_SPEC = Path("search_spaces") / "demo.yaml"

DESCRIPTION = (
    "Run a sweep: Optuna samples configurations from the spec's search space, each runs "
    "once per seed as a Tune trial (the same run as limelight train), selected on a "
    "validation split, and leaves one row in the leaderboard (STORAGE/leaderboard). The "
    "Tune experiment and every trial's run directory go to STORAGE/NAME; watch them with "
    "tensorboard --logdir STORAGE/NAME."
)


@dataclass(frozen=True)
class SweepRequest:
    spec: Path | None = option(
        None, help=f"spec file (default: {DEFAULT_SPEC})", positional=True, metavar="SPEC"
    )
    name: str | None = option(
        None,
        help="the sweep's name (default: the spec's): another name starts a new run of "
        "the spec beside the earlier ones; the same name again needs --resume",
    )
    trials: int | None = option(None, help="sampled configurations (default: the spec's)", low=1)
    max_concurrent: int | None = option(None, help="trials at once (default: the spec's)", low=1)
    best: str | None = option(
        None,
        help="instead of running: re-evaluate the top trials of SWEEP (ranked on the "
        "validation split) with the full evaluation, and print each one's limelight train "
        "command",
        metavar="SWEEP",
    )
    top: int = option(3, help="trials --best re-evaluates", low=1)
    eval_mode: str = option(
        "standard", help="the ensemble --best re-evaluates with", choices=EVAL_MODES
    )
    sampler_seed: int | None = option(
        None,
        help="seed of Optuna's sampler: another seed samples other configurations "
        "(default: the spec's sampler_seed, else 0)",
        low=0,
    )
    resume: bool = option(
        False, help="finish an interrupted sweep of the same name (Tuner.restore)"
    )
    finish: bool = option(
        False,
        help="resume the sweep if it ran before, start it if not: a complete sweep is "
        "not run again (what make run uses)",
    )
    smoke: bool = option(
        False,
        help=f"one epoch a trial and {SMOKE_LIMIT} evaluation images: checks a spec end to "
        "end in about a minute",
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.name is not None:
            check_folder_name("name", self.name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fields(parser, SweepRequest)
    add_fields(parser, RunSettings, include=("storage", "address", "data_dir"))


def run(args: argparse.Namespace) -> int:
    from orchestrator.leaderboard import LeaderboardQuery, leaderboard_text
    from orchestrator.sweeps.report import print_line
    from orchestrator.sweeps.spec import load_spec
    from orchestrator.sweeps.tune import run_sweep

    request = from_flags(args, SweepRequest)
    settings = from_flags(args, RunSettings)
    if request.best is not None:
        return _best(request, settings)
    spec = load_spec(request.spec or _default_spec())
    for field in ("name", "trials", "max_concurrent", "sampler_seed"):
        if getattr(request, field) is not None:
            spec = dataclasses.replace(spec, **{field: getattr(request, field)})
    report = run_sweep(
        spec,
        storage=settings.storage,
        address=settings.address,
        resume=None if request.finish else request.resume,
        smoke=request.smoke,
        data_dir=settings.data_dir,
        progress=print_line,
    )
    print(
        f"\nsweep {report.name}: {report.trials} trials ({report.ok} ok, {report.stopped} "
        f"stopped, {report.errors} failed) in {report.wall_s:.0f}s"
    )
    if report.pareto:
        print(f"Pareto front on the validation split: {', '.join(report.pareto)}")
    board = LeaderboardQuery(storage=report.root, sweep=report.name, sort="robust_acc")
    print(leaderboard_text(board))
    print(f"tensorboard --logdir {report.experiment}")
    return 1 if report.errors and not report.ok else 0


def _best(request: SweepRequest, settings: RunSettings) -> int:
    from methods.data import load_dataset
    from orchestrator.checkpoints import read_checkpoint, restore_model
    from orchestrator.cli.output import format_results
    from orchestrator.config import EvalConfig
    from orchestrator.run.evaluation import evaluate_split, lime_settings
    from orchestrator.sweeps.tune import best_trials, train_command

    if not Path(settings.storage).is_dir():  # a typo is not a sweep without trials
        missing = f"{settings.storage} does not exist (the sweep's results root)"
        raise ConfigError("storage", missing)
    trials = best_trials(settings.storage, request.best, request.top)
    if not trials:
        print(f"no finished trials of sweep {request.best!r} under {settings.storage}")
        return 0
    results = []
    for rank, trial in enumerate(trials, start=1):
        print(f"#{rank} {trial.trial_id} (validation objective {trial.objective:.4f}):")
        print(f"  {train_command(trial.config)}")
        if trial.checkpoint is None or not trial.checkpoint.is_file():
            print("  (its checkpoint was pruned: keep_checkpoints in the spec keeps more)")
            continue
        state = read_checkpoint(trial.checkpoint)
        dataset = load_dataset(
            state["meta"]["dataset"], data_dir=settings.data_dir, download=settings.download
        )
        recorded = state["meta"]["config"]
        train_eps = recorded.get("attack_eps") or recorded.get("monitor_eps")
        evaluation = evaluate_split(
            restore_model(state),
            dataset,
            EvalConfig(seed=recorded["seed"], eval_mode=request.eval_mode),
            train_eps,
            "auto",
            lime=lime_settings(recorded),
        )
        results.append((trial.trial_id, evaluation))
    if results:
        print("\nfull evaluation on the test split:")
        print(format_results(results))
    return 0


def _default_spec() -> Path:
    if DEFAULT_SPEC.is_file():
        return DEFAULT_SPEC
    return Path(__file__).resolve().parents[2] / DEFAULT_SPEC  # run from elsewhere
