"""Sweeps: Ray Tune + Optuna over a spec, every trial the same ``run()`` as
``limelight train``, every finished trial one leaderboard row.

Layout under the results root: ``<root>/<sweep>/`` holds the Tune experiment,
``spec.yaml`` (the resolved spec), Tune's trial folders (their TensorBoard events hold
the per-epoch reports and the HParams summary), and ``runs/<trial_id>/`` per trial
(the run directory: checkpoint, config.json, eval.json, TensorBoard curves); rows go
to the leaderboard table ``<root>/leaderboard/`` (sweep ``<sweep>``, trial ``<trial_id>``).

Model selection never sees the test split: trials hold out ``val_fraction`` of the
training split; the per-epoch metrics ASHA sees and the objective Optuna sees are on
it. The leaderboard's accuracies are on the test split.

Seeds: Optuna samples a configuration, and each configuration runs once per seed, one
Tune trial each (``SeedRepeater``: Optuna is told the mean over the seeds). Rows carry
a ``config_id`` so that the seeds of a configuration group.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from ray.tune.logger import TBXLoggerCallback
from ray.tune.search import Repeater

from methods.results import EvalResult
from orchestrator.config import ConfigError, EvalConfig, RunSettings
from orchestrator.layout import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    EVAL_NAME,
    OBJECTIVE_NAME,
    RAY_DIR,
    RUNS_DIR,
    trial_run_dir,
)
from orchestrator.leaderboard import (
    LeaderboardRow,
    append_row,
    append_rows,
    maintain,
    read_leaderboard,
    read_trial_row,
)
from orchestrator.storage import local_root
from orchestrator.sweeps.claim import claim_sweep
from orchestrator.sweeps.rows import config_id, objective_metrics, result_row
from orchestrator.sweeps.spec import SMOKE_LIMIT, SweepSpec

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SweepReport", "objective_metrics", "pending_trials", "run_sweep"]

log = logging.getLogger(__name__)

#: The config key Tune's Repeater sets: which of the spec's seeds a trial runs.
TRIAL_INDEX = "__trial_index__"
#: The grid sampler's key: one of ``SweepSpec.grid()``'s configurations.
GRID_VARIANT = "variant"


@dataclass(frozen=True)
class SweepReport:
    name: str
    root: str
    trials: int
    ok: int
    stopped: int
    errors: int
    wall_s: float
    #: Trials neither finished nor failed when Tune returned: it was interrupted (Tune
    #: catches Ctrl-C, saves the experiment and returns normally).
    unfinished: int = 0
    #: Multi-objective sweeps: the trials no other trial beats on every objective
    #: (on the validation split), Optuna's Pareto front over what was run.
    pareto: tuple[str, ...] = ()

    @property
    def experiment(self) -> str:
        return f"{self.root}/{self.name}"


# ----------------------------------------------------------------------------- the trial


def _sampled(spec: SweepSpec, config: Mapping[str, Any]) -> tuple[str, dict[str, Any], int]:
    """(method, its sampled values, seed) from a Tune trial's config."""
    config = {**config, **config.get(GRID_VARIANT, {})}
    method = config.get("method", spec.methods[0])
    sampled = dict(config.get(method, {}))
    seed = spec.seeds[int(config.get(TRIAL_INDEX, 0))]
    return method, sampled, seed


def _trial_config(spec: SweepSpec, config: Mapping[str, Any], smoke: bool):
    method, sampled, seed = _sampled(spec, config)
    train = spec.trial_config(method, sampled, seed)
    train = replace(train, val_fraction=spec.val_fraction)
    if smoke:
        train = replace(train, epochs=1)
    return method, sampled, seed, train


def _eval_config(spec: SweepSpec, seed: int, smoke: bool) -> EvalConfig:
    limit = SMOKE_LIMIT if smoke else spec.eval_config.limit
    return replace(spec.eval_config, seed=seed, limit=limit)


def run_trial(
    config: dict[str, Any], *, spec: SweepSpec, root: str, smoke: bool, data_dir: str = "data"
) -> None:
    """One Tune trial: ``run()`` with the spec's settings, per-epoch metrics to Tune,
    then its row and the objective on the validation split. Tune's TensorBoard logger
    writes the HParams summary (the trial's config against its final report)."""
    from ray import tune

    from orchestrator.run import run

    trial_id = tune.get_context().get_trial_id()
    finished = _finished_trial(root, spec.name, trial_id)
    if finished is not None:  # a resumed sweep: the trial ran and wrote its row before
        tune.report({**finished, "final": 1})
        return
    method, sampled, seed, train = _trial_config(spec, config, smoke)
    settings = RunSettings(
        storage=root,
        out=f"{spec.name}/{RUNS_DIR}/{trial_id}",
        device="auto" if spec.resources.gpus or spec.resources.workers > 1 else "cpu",
        workers=spec.resources.workers,
        gpus_per_worker=spec.resources.gpus if spec.resources.workers > 1 else 0.0,
        actors=spec.resources.actors,
        data_dir=data_dir,
    )

    def report_epoch(metrics) -> None:
        values = {
            "epoch": metrics.epoch,
            "loss": metrics.loss,
            "train_acc": metrics.train_acc,
            "val_acc": metrics.test_acc,
            # Measured every monitor_every epochs only; left out (not None) on the others,
            # so that ASHA skips those epochs instead of comparing None.
            "val_robust_acc": metrics.test_robust_acc,
        }
        tune.report({k: v for k, v in values.items() if v is not None})

    started = time.perf_counter()
    result = run(
        train, settings, eval_config=_eval_config(spec, seed, smoke), on_epoch=report_epoch
    )
    assert result.validation is not None  # val_fraction is always set in a sweep
    objective = objective_metrics(result.validation, spec.eval_eps)
    marker = {**objective, "epoch": result.history[-1].epoch}
    (trial_run_dir(root, spec.name, trial_id) / OBJECTIVE_NAME).write_text(json.dumps(marker))
    append_row(
        root,
        _row(
            spec,
            trial_id,
            method,
            sampled,
            result.config.to_dict(),
            status="ok",
            evaluation=result.evaluation,
            history=result.history,
            wall_s=time.perf_counter() - started,
            checkpoint=str(result.checkpoint),
            logdir=str(result.logdir),
        ),
    )
    tune.report({**marker, "final": 1})


def _finished_trial(root: str, sweep: str, trial_id: str) -> dict[str, Any] | None:
    """The objective a trial reported, when it finished in an earlier driver: its
    ``objective.json`` (written before the row) and its ok row both exist."""
    marker = trial_run_dir(root, sweep, trial_id) / OBJECTIVE_NAME
    if not marker.is_file():
        return None
    row = read_trial_row(root, sweep, trial_id)
    if row is None or row["status"] != "ok":
        return None
    log.info("trial %s finished before the driver stopped: its row is kept", trial_id)
    return json.loads(marker.read_text())


def restorable(experiment: Path) -> bool:
    """Whether ``Tuner.restore`` can finish the sweep in ``experiment``. Tune's own
    ``can_restore`` asks only that ``tuner.pkl`` exist; a driver killed while the Tuner
    was being built leaves it empty, and with no experiment state no trial ever
    started: both are started afresh, not restored."""
    tuner = experiment / "tuner.pkl"
    return (
        tuner.is_file()
        and tuner.stat().st_size > 0
        and any(experiment.glob("experiment_state-*.json"))
    )


def _row(
    spec: SweepSpec,
    trial_id: str,
    method: str,
    sampled: Mapping[str, Any],
    config: Mapping[str, Any],
    **fields: Any,
) -> LeaderboardRow:
    return result_row(
        sweep=spec.name,
        trial_id=trial_id,
        config_id=config_id(method, sampled),
        method=method,
        dataset=spec.dataset,
        config=config,
        eval_eps=spec.eval_eps,
        **fields,
    )


# ----------------------------------------------------------------------------- the driver


class DefineByRun:
    """Optuna's define-by-run space: the method first (when several), then its fields,
    named ``<method>/<field>`` (Tune turns the slash into a nested dict). A class, not
    a closure: Tune pickles the searcher, this space included, with each checkpoint."""

    def __init__(self, spec: SweepSpec) -> None:
        self.methods = spec.methods
        self.space = {method: dict(spec.searched(method)) for method in spec.methods}

    def __call__(self, trial: Any) -> None:
        method = self.methods[0]
        if len(self.methods) > 1:
            method = trial.suggest_categorical("method", list(self.methods))
        for name, domain in self.space[method].items():
            domain.suggest(trial, f"{method}/{name}")


class SeedRepeater(Repeater):
    """Tune's Repeater (one trial per seed of each configuration), telling the searcher
    the mean of every objective metric over the seeds; Tune's own averages one metric
    only, and a multi-objective search needs all."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, **kwargs: Any):
        group = self._trial_id_to_group.get(trial_id)
        if group is None:
            return
        metrics = self.searcher.metric
        names = metrics if isinstance(metrics, list) else [metrics]
        values = [np.nan if not result else result.get(n, np.nan) for n in names]
        group.report(trial_id, values)
        if group.finished_reporting():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # every seed failed: nan
                means = np.nanmean(np.array(group.scores(), dtype=float), axis=0)
            score = None if np.isnan(means).any() else dict(zip(names, means.tolist(), strict=True))
            self.searcher.on_trial_complete(group.primary_trial_id, result=score, **kwargs)


def hparams(spec: SweepSpec, config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's HParams columns: the method, each searched field under its own name
    (SGT's and ASGT's ``mask_ratio`` are one column) and the seed."""
    method, sampled, seed = _sampled(spec, config)
    return {"method": method, **sampled, "seed": seed}


class HParamsLogger(TBXLoggerCallback):
    """Tune's TensorBoard logger, with the HParams a reader expects (``hparams``)
    instead of Tune's flattened config: ``sgt/mask_ratio`` and ``asgt/mask_ratio`` were
    two columns, and the Repeater's ``__trial_index__`` a third that meant the seed.
    Given to Tune, it replaces its default TensorBoard logger."""

    def __init__(self, spec: SweepSpec) -> None:
        super().__init__()
        self.spec = spec

    def _try_log_hparams(self, trial: Any, result: dict) -> None:
        searched = trial.evaluated_params
        trial.evaluated_params = hparams(self.spec, trial.config)
        try:
            super()._try_log_hparams(trial, result)
        finally:
            trial.evaluated_params = searched


def _grid_space(
    spec: SweepSpec, pending: Sequence[tuple[dict[str, Any], int]] | None
) -> dict[str, Any]:
    """A grid sweep's param space: every variant x every seed, or only ``pending``'s
    pairs (the seed index then rides in the variant; ``_sampled`` reads it there)."""
    from ray import tune

    if pending is None:
        return {
            GRID_VARIANT: tune.grid_search(spec.grid()),
            TRIAL_INDEX: tune.grid_search(list(range(len(spec.seeds)))),
        }
    pairs = [{**variant, TRIAL_INDEX: index} for variant, index in pending]
    return {GRID_VARIANT: tune.grid_search(pairs)}


def pending_trials(spec: SweepSpec, rows: pd.DataFrame) -> list[tuple[dict[str, Any], int]]:
    """The (grid variant, seed index) pairs of a grid sweep without an ok row in
    ``rows``: a configuration is known by its ``config_id`` and seed."""
    ok = rows[rows["status"] == "ok"]
    done = {(cid, int(seed)) for cid, seed in zip(ok["config_id"], ok["seed"], strict=True)}
    return [
        (variant, index)
        for variant in spec.grid()
        for index, seed in enumerate(spec.seeds)
        if (config_id(variant["method"], variant[variant["method"]]), seed) not in done
    ]


def _rows_callback(
    spec: SweepSpec,
    root: str,
    progress: Callable[[str], None],
    on_trial_end: Callable[[], None] | None = None,
) -> Any:
    """Driver-side: a row for each trial that ended without its own (stopped by ASHA,
    or failed), one progress line per finished trial, then ``on_trial_end``."""
    from ray import tune

    objective = spec.objective.names

    class Rows(tune.Callback):
        finished = 0

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any):
            self._count()
            last = trial.last_result or {}
            if not last.get("final"):
                self._write(trial, "stopped", stopped_epoch=last.get("epoch"))
            values = ", ".join(f"{m} {last[m]:.4f}" for m in objective if m in last)
            status = "done" if last.get("final") else f"stopped at epoch {last.get('epoch')}"
            progress(
                f"trial {trial.trial_id} {status}: {_describe(spec, trial.config)}"
                + (f" -> val {values}" if values else "")
            )
            if on_trial_end is not None:
                on_trial_end()

        def _count(self) -> None:
            """Compact the table every ``COMPACT_EVERY`` finished trials: readers during
            a long sweep would otherwise scan one small file per trial."""
            self.finished += 1
            if self.finished % COMPACT_EVERY == 0:
                maintain(root, spec.name)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any):
            self._count()
            message = _error_line(trial)
            self._write(trial, "error", error=message)
            progress(f"trial {trial.trial_id} failed: {message}")
            if on_trial_end is not None:
                on_trial_end()

        def _write(self, trial: Any, status: str, **fields: Any) -> None:
            method, sampled, _seed = _sampled(spec, trial.config)
            config = _recorded_config(root, spec, trial)
            last = trial.last_result or {}
            append_row(root, _row(
                spec, trial.trial_id, method, sampled, config, status=status,
                wall_s=float(last.get("time_total_s", 0.0)), **fields,
            ))  # fmt: skip

    return Rows()


def _recorded_config(root: str, spec: SweepSpec, trial: Any) -> dict[str, Any]:
    """The resolved config the trial wrote when it started, else the unresolved one."""
    path = trial_run_dir(root, spec.name, trial.trial_id) / CONFIG_NAME
    if path.is_file():
        return json.loads(path.read_text())
    _method, _sampled, _seed, train = _trial_config(spec, trial.config, smoke=False)
    return train.to_dict()


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*:")


def _error_line(trial: Any) -> str:
    text = ""
    error_file = getattr(trial, "error_file", None)
    if error_file and Path(error_file).is_file():
        text = Path(error_file).read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "the trial failed (no error text)"
    # The line that names the exception; a message may run on for lines after it.
    named = [line for line in lines if _EXCEPTION_LINE.match(line)]
    return named[-1] if named else lines[-1]


def _describe(spec: SweepSpec, config: Mapping[str, Any]) -> str:
    method, sampled, seed = _sampled(spec, config)
    values = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sampled.items()
    )
    return f"{method} seed {seed}" + (f" ({values})" if values else "")


def _resources(spec: SweepSpec) -> Callable[[Mapping[str, Any]], Any]:
    """Each trial's placement group, from its config: one bundle for the trial and, for
    an LGR trial, one more per LIME actor. Tune starts a trial's actors only inside its
    placement group; without those bundles LGR's explain workers fail to launch ("No
    trial resources are available for launching the actor")."""
    from ray.tune import PlacementGroupFactory

    resources = spec.resources
    if resources.workers > 1:
        # The trial itself only drives a TorchTrainer, whose workers take their own.
        trial = {"CPU": 0.1}
    else:
        trial = {"CPU": resources.cpus, "GPU": resources.gpus}

    def per_trial(config: Mapping[str, Any]) -> PlacementGroupFactory:
        method, _sampled_values, _seed = _sampled(spec, config)
        actors = resources.actors if method == "lgr" else 0
        return PlacementGroupFactory([trial] + [{"CPU": 1.0}] * actors)

    return per_trial


def _absolute_root(storage: str) -> str:
    return str(local_root(storage, "a sweep writes its trials' run directories").resolve())


def run_sweep(
    spec: SweepSpec,
    *,
    storage: str,
    address: str | None = None,
    resume: bool | None = False,
    smoke: bool = False,
    data_dir: str = "data",
    progress: Callable[[str], None] = log.info,
    pending: Sequence[tuple[dict[str, Any], int]] | None = None,
    on_trial_end: Callable[[], None] | None = None,
) -> SweepReport:
    """Run (or with ``resume`` finish) the sweep ``spec`` under the results root;
    ``resume=None`` resumes when there is a sweep to restore and starts one otherwise
    (``--finish``).

    ``pending`` (grid sweeps): run only these (variant, seed index) pairs of the grid,
    the ones ``pending_trials`` finds without a row (rows carried over from another
    machine). ``on_trial_end`` is called in the driver after each trial's row is
    written (it must pickle: Tune saves its callbacks).

    ``data_dir`` is made absolute here (trials run in other working directories); on a
    cluster it must be a path every node reaches. The same sweep again (its name under
    the same root) is refused unless ``resume``: ``claim_sweep``.
    """
    root = _absolute_root(storage)
    experiment = Path(root) / spec.name
    can_restore = restorable(experiment)
    if resume is None:
        resume = can_restore
    if resume and not can_restore:
        raise ConfigError("resume", f"no sweep to resume at {experiment}")
    # Carried rows (``pending``) are this sweep's own, not an earlier run to refuse.
    carried = pending is not None
    with claim_sweep(root, spec.name, resume=resume or carried, restorable=can_restore):
        return _fit(spec, root, resume=resume, smoke=smoke, data_dir=data_dir,
                    address=address, progress=progress, pending=pending,
                    on_trial_end=on_trial_end)  # fmt: skip


#: How often Tune starts a failed trial again (``FailureConfig.max_failures``).
TRIAL_RETRIES = 2
#: The driver compacts the leaderboard every this many finished trials.
COMPACT_EVERY = 100


def _fit(
    spec: SweepSpec,
    root: str,
    *,
    resume: bool,
    smoke: bool,
    data_dir: str,
    address: str | None,
    progress: Callable[[str], None],
    pending: Sequence[tuple[dict[str, Any], int]] | None = None,
    on_trial_end: Callable[[], None] | None = None,
) -> SweepReport:
    """``run_sweep``'s work, with the sweep's folder claimed."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from orchestrator.cluster import connect

    experiment = Path(root) / spec.name
    started = time.perf_counter()
    # The objective exists only in a trial's final report (its epochs report validation
    # accuracy for ASHA); Tune would otherwise refuse every per-epoch report.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # Progress is one line per finished trial (the Rows callback); Tune's own status
    # output (its new-style reporter ignores verbose=0) would bury them.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    _quiet_libraries()
    connect(address)
    experiment.mkdir(parents=True, exist_ok=True)
    (experiment / "spec.yaml").write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial, spec=spec, root=root, smoke=smoke, data_dir=str(Path(data_dir).resolve())
        ),
        _resources(spec),
    )
    run_config = tune.RunConfig(
        name=spec.name,
        storage_path=root,
        callbacks=[_rows_callback(spec, root, progress, on_trial_end), HParamsLogger(spec)],
        # A trial on a node that is lost runs again elsewhere, resuming from its run
        # folder (benchmarks/sweep_scale.py --node-loss); the price: a trial that fails
        # by itself fails TRIAL_RETRIES + 1 times before its error row.
        failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
        verbose=0,
    )
    if resume:
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
    elif spec.sampler == "grid":
        tuner = tune.Tuner(
            trainable,
            param_space=_grid_space(spec, pending),
            tune_config=tune.TuneConfig(
                max_concurrent_trials=spec.max_concurrent, reuse_actors=True
            ),
            run_config=run_config,
        )
    else:
        searcher = optuna_searcher(spec)
        scheduler = None
        if spec.asha is not None:
            scheduler = ASHAScheduler(
                time_attr="training_iteration",
                metric=spec.asha.metric,
                mode=spec.asha.mode,
                max_t=1 if smoke else int(spec.fixed[spec.methods[0]].get("epochs", 30)) + 1,
                grace_period=spec.asha.grace_period,
                reduction_factor=spec.asha.reduction_factor,
            )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=SeedRepeater(searcher, repeat=len(spec.seeds), set_index=True),
                scheduler=scheduler,
                num_samples=spec.trials * len(spec.seeds),
                max_concurrent_trials=spec.max_concurrent,
                # A fresh trial process spends ~7 s importing torch, Tune and the data
                # set's loaders before it trains (benchmarks/sweep.py); trials of one
                # sweep ask for the same resources, so their processes can be reused.
                reuse_actors=True,
            ),
            run_config=run_config,
        )
    grid = tuner.fit()
    unfinished = len(grid) - grid.num_terminated - grid.num_errors
    # Compact first: the trials' rows are one small file each, and reading 1,000 of them
    # cost the driver 330 MB (benchmarks/sweep_scale.py); one file costs nothing.
    maintain(root, spec.name)
    if not unfinished:  # an interrupted sweep's running trials resume from their folders
        _remove_orphans(root, spec.name, {r.metrics["trial_id"] for r in grid if r.metrics})
    if _prune_checkpoints(spec, root, grid):
        maintain(root, spec.name)  # drop the rows the pruned ones replaced
    rows = read_leaderboard(root, spec.name)
    counts = rows["status"].value_counts().to_dict() if len(rows) else {}
    return SweepReport(
        name=spec.name,
        root=root,
        trials=len(grid),
        ok=int(counts.get("ok", 0)),
        stopped=int(counts.get("stopped", 0)),
        errors=int(counts.get("error", 0)),
        wall_s=time.perf_counter() - started,
        unfinished=unfinished,
        pareto=pareto_front(spec, grid) if spec.objective.multi else (),
    )


def pareto_front(spec: SweepSpec, grid: Any) -> tuple[str, ...]:
    """Trial ids that no other finished trial dominates on the objective metrics."""
    signs = [1.0 if mode == "max" else -1.0 for mode in spec.objective.modes]
    points = {}
    for result in grid:
        metrics = result.metrics or {}
        values = [metrics.get(name) for name in spec.objective.names]
        if metrics.get("final") and all(v is not None for v in values):
            points[metrics["trial_id"]] = [s * v for s, v in zip(signs, values, strict=True)]

    def dominated(a: list[float]) -> bool:
        return any(
            all(x >= y for x, y in zip(b, a, strict=True)) and b != a for b in points.values()
        )

    return tuple(sorted(t for t, p in points.items() if not dominated(p)))


def optuna_searcher(spec: SweepSpec) -> Any:
    """Optuna over the spec's space (define-by-run), seeded by ``spec.sampler_seed``."""
    from ray.tune.search.optuna import OptunaSearch

    objective = spec.objective
    return OptunaSearch(
        space=DefineByRun(spec),
        metric=list(objective.names) if objective.multi else objective.names[0],
        mode=list(objective.modes) if objective.multi else objective.modes[0],
        seed=spec.sampler_seed,
    )


def _quiet_libraries() -> None:
    """Optuna logs every study it creates and Tune where it saved its state, at INFO;
    the trial lines say what matters. Only -v (DEBUG on limelight's logger) keeps them,
    and Optuna's lines then go through the same plain handler as ours: its own handler
    colours them with ANSI codes, which end up in ``ray job logs`` and CI files."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    if not logging.getLogger("limelight").isEnabledFor(logging.DEBUG):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("ray.tune").setLevel(logging.WARNING)


def _prune_checkpoints(spec: SweepSpec, root: str, grid: Any) -> bool:
    """Keep the checkpoints of the best ``keep_checkpoints`` trials by the (first)
    objective on the validation split; a ResNet-18 checkpoint is ~90 MB. True when rows
    were written again without their checkpoint."""
    metric, mode = spec.objective.metrics[0]
    scored = []
    for result in grid:
        value = (result.metrics or {}).get(metric)
        trial_id = (result.metrics or {}).get("trial_id")
        if trial_id is not None and value is not None and not math.isnan(value):
            scored.append((value if mode == "max" else -value, trial_id))
    keep = {t for _, t in sorted(scored, reverse=True)[: spec.keep_checkpoints]}
    ranked = {t for _, t in scored}
    runs = Path(root) / spec.name / RUNS_DIR
    rows = read_leaderboard(root, spec.name)
    forgotten: list[LeaderboardRow] = []
    for run_dir in sorted(runs.glob("*")) if runs.is_dir() else []:
        # Only the trials ranked here: what another run kept is not ours to delete.
        if run_dir.name in keep or run_dir.name not in ranked:
            continue
        removed = False
        for path in (run_dir / CHECKPOINT_NAME, run_dir / RAY_DIR):
            if path.is_file():
                path.unlink()
                removed = True
            elif path.is_dir():
                shutil.rmtree(path)
        if removed:
            forgotten.extend(_without_checkpoint(rows, run_dir.name))
    append_rows(root, forgotten)  # one commit; maintain() then drops the rows they replace
    return bool(forgotten)


def _remove_orphans(root: str, sweep: str, trial_ids: set[str]) -> None:
    """Delete run directories of trials Tune does not know and that have no row: a
    trial started after Tune last saved its state, then the driver was killed. Its
    restored sweep runs the configuration again under a new id; the folder would only
    be an empty run in TensorBoard."""
    runs = Path(root) / sweep / RUNS_DIR
    if not runs.is_dir():
        return
    recorded = set(read_leaderboard(root, sweep, columns=["trial_id"])["trial_id"])
    for run_dir in sorted(runs.iterdir()):
        if run_dir.is_dir() and run_dir.name not in trial_ids | recorded:
            log.info("removing %s: a trial lost with the stopped driver, without a row", run_dir)
            shutil.rmtree(run_dir, ignore_errors=True)


def _without_checkpoint(rows: Any, trial_id: str) -> list[LeaderboardRow]:
    """A pruned trial's row again, without its (deleted) checkpoint path (none when
    the trial has no row)."""
    match = rows[rows["trial_id"] == trial_id]
    if match.empty:
        return []
    record = match.iloc[0].to_dict()
    record["checkpoint"] = None
    fields = {k: v for k, v in record.items() if k in LeaderboardRow.__dataclass_fields__}
    fields = {k: (None if _is_missing(v) else v) for k, v in fields.items()}
    for name in ("robust_curve", "faithfulness_curve", "audit_flags", "val_curve"):
        fields[name] = tuple(record.get(name) or ())
    return [LeaderboardRow(**fields)]


def _is_missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array: present
        return False


# ----------------------------------------------------------------------------- --best


@dataclass(frozen=True)
class BestTrial:
    trial_id: str
    objective: float  # the first objective metric on the validation split
    checkpoint: Path | None  # None when pruned
    config: dict[str, Any]  # the resolved flat config the trial trained


def best_trials(root: str, sweep: str, top: int) -> list[BestTrial]:
    """The top ``top`` finished trials of ``sweep``, ranked by the spec's first objective
    on the validation split (never the test split: that is the leaderboard's)."""
    experiment = Path(_absolute_root(root)) / sweep
    spec_path = experiment / "spec.yaml"
    if not spec_path.is_file():
        raise ConfigError("best", f"no sweep {sweep!r} under {root} (no {spec_path})")
    from orchestrator.sweeps.spec import parse_spec

    spec = parse_spec(yaml.safe_load(spec_path.read_text()))
    metric, mode = spec.objective.metrics[0]
    rows = read_leaderboard(str(experiment.parent), sweep)
    ranked = []
    for record in rows[rows["status"] == "ok"].to_dict("records"):
        evaluation = Path(record["logdir"]).parent / EVAL_NAME
        if not evaluation.is_file():
            continue
        validation = EvalResult.from_dict(json.loads(evaluation.read_text())["validation"])
        value = objective_metrics(validation, spec.eval_eps).get(metric)
        if value is None:
            continue
        checkpoint = record.get("checkpoint")
        ranked.append(
            BestTrial(
                trial_id=record["trial_id"],
                objective=value,
                checkpoint=Path(checkpoint) if isinstance(checkpoint, str) else None,
                config=json.loads(record["config"]),
            )
        )
    ranked.sort(key=lambda t: t.objective, reverse=mode == "max")
    return ranked[:top]


def train_command(config: Mapping[str, Any]) -> str:
    """The ``limelight train`` command that trains ``config`` alone: every value that
    differs from the method's defaults, as flags."""
    from orchestrator.config import TrainConfig

    defaults = TrainConfig.create(method=config["method"]).to_dict()
    parts = ["limelight train", f"--method {config['method']}"]
    for key, value in config.items():
        if key == "method" or value is None or value == defaults.get(key):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"{flag} {','.join(map(str, value))}")
        else:
            parts.append(f"{flag} {value!r}" if isinstance(value, float) else f"{flag} {value}")
    return " ".join(parts)
