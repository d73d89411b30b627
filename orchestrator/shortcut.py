"""``limelight shortcut``: how much each method relies on digits_shortcut's planted patch.

Per seed it trains ERM, PGD-AT (``adversarial``), SGT, ASGT, LGR once per flagging
strategy (``annotated`` is the oracle: the true patch masks) and a control (ERM on
patches at random positions, ``train_share`` 0.1), every one through ``run()``
inline, and scores each on the test split, where ~90% of the patches sit at a wrong
class's position:

- ``shortcut_follow_rate``: on those images, the share of predictions equal to the
  patch's class (``methods.shortcut.follow_rate``);
- ``shortcut_acc``: accuracy on the whole test split; the control's is the accuracy a
  model reaches without a shortcut to learn, so the gap to it is what the shortcut cost;
- LGR: ``flag_precision`` / ``flag_recall`` of its final round's flagged pixels against
  the true patch masks (``dataset.train.masks``), over the images it explained.

Every model is one leaderboard row (``sweep=<name>``, trial ``<model>-seed<seed>``),
written as soon as it finishes; a rerun skips the rows already there, so an interrupted
benchmark resumes. The control is a row with method ``erm`` whose config holds
``"control": true`` (and ``"train_share": 0.1``); every row's config holds its
``train_share`` and, for LGR, ``"strategy"``.

LGR refines the same seed's ERM model (``start_checkpoint``): that is the ERM pretrain
LGR would otherwise run itself, with the same settings, so the strategies share it and
its first round's LIME explanations (the mask store is keyed by checkpoint).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from methods.data.digits import DIGITS_EPS, SHORTCUT_TRAIN_SHARE
from methods.loop import NonFiniteLossError
from methods.training.lgr import SPURIOUS
from orchestrator.config import ConfigError, EvalConfig, RunSettings, TrainConfig
from orchestrator.flags import add_fields, given
from orchestrator.leaderboard import LeaderboardRow, append_row, read_leaderboard
from orchestrator.storage import local_root

if TYPE_CHECKING:
    from methods.data import Dataset
    from orchestrator.train import RunResult

__all__ = [
    "MODELS",
    "PlannedModel",
    "ShortcutPlan",
    "ShortcutReport",
    "add_shortcut_parser",
    "finished_trials",
    "format_summary",
    "plan_models",
    "run_shortcut",
    "shortcut_command",
    "summarize",
]

log = logging.getLogger(__name__)

DATASET = "digits_shortcut"
#: What --methods picks from: the training methods, and the random-position control.
MODELS = ("erm", "adversarial", "sgt", "asgt", "lgr", "control")
#: Train share of the control: patches at a uniformly drawn position of the ten.
CONTROL_SHARE = 0.1
#: A union of strategies on the command line: low_relevance+gradient.
UNION = "+"
#: The robust accuracy each row carries (PGD-10 at the data set's training eps): the
#: benchmark is about the shortcut, so the evaluation is the cheapest meaningful one.
EVAL_EPS = DIGITS_EPS
EVAL_PGD_STEPS = 10

# Defaults, measured on the 2-core machine (docs/shortcut.md): the default command
# trains 33 models (3 seeds x 11). ERM follows the patch by epoch 2 already; PGD-AT and
# ASGT (PGD-10 every step) are two thirds of the baselines' time.
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_EPOCHS = 10  # ERM: ~97% train accuracy, follows ~30% of wrong-class patches
# LGR: one round refines the ERM model, so all LIME strategies share one explanation
# of it (the mask store is keyed by checkpoint); a second round explains each refined
# model again (one LIME pass per strategy, three for unstable): about 2x the LGR time.
DEFAULT_ROUNDS = 1
DEFAULT_REFINE_EPOCHS = 3  # per round; PGD-10 and double backprop: the costly part
DEFAULT_LIME_SAMPLES = 100  # 16 grid cells (2x2 pixels) on 8x8: 100 samples fit 16 weights
DEFAULT_NAME = "shortcut"

_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ShortcutPlan:
    """The validated input of one benchmark (``ShortcutPlan.create`` checks it)."""

    name: str
    root: str  # absolute local results root
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    strategies: tuple[tuple[str, ...], ...]  # one LGR model each; a tuple is a union
    epochs: int
    rounds: int
    refine_epochs: int
    lime_samples: int
    explain_fraction: float
    lgr_attack_eps: float | None  # None: LGR's own default (the data set's eps)
    lgr_reg_weight: float | None  # None: LGR's own default
    train_share: float
    eval_limit: int | None
    settings: RunSettings  # device, actors, address; storage = root

    @classmethod
    def create(
        cls,
        *,
        name: str = DEFAULT_NAME,
        storage: str | None = None,
        seeds: str | Sequence[int] = DEFAULT_SEEDS,
        methods: str | Sequence[str] = MODELS,
        strategies: str | Sequence[str] = SPURIOUS,
        epochs: int = DEFAULT_EPOCHS,
        rounds: int = DEFAULT_ROUNDS,
        refine_epochs: int = DEFAULT_REFINE_EPOCHS,
        lime_samples: int = DEFAULT_LIME_SAMPLES,
        explain_fraction: float = 1.0,
        lgr_attack_eps: float | None = None,
        lgr_reg_weight: float | None = None,
        train_share: float = SHORTCUT_TRAIN_SHARE,
        eval_limit: int | None = None,
        device: str = "auto",
        actors: int = 2,
        address: str | None = None,
    ) -> ShortcutPlan:
        """Every check of the input; ``ConfigError`` names the field and what is allowed."""
        if not isinstance(name, str) or not _FOLDER_NAME.fullmatch(name):
            raise ConfigError(
                "name", f"{name!r} must be a plain folder name ([A-Za-z0-9_.-], not . or _ first)"
            )
        settings = RunSettings(storage=storage, device=device, actors=actors, address=address)
        root = local_root(settings.storage, "the benchmark writes run directories").resolve()
        settings = RunSettings(
            storage=str(root), device=device, actors=actors, address=address, workers=1
        )
        for field, value, low in (
            ("epochs", epochs, 1),
            ("rounds", rounds, 1),
            ("refine_epochs", refine_epochs, 1),
            ("lime_samples", lime_samples, 2),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(field, f"must be an integer >= {low}, got {value!r}")
        if eval_limit is not None and eval_limit < 1:
            raise ConfigError("limit", f"must be >= 1, got {eval_limit}")
        if not 0.0 < explain_fraction <= 1.0:
            raise ConfigError("explain_fraction", f"must be in (0, 1], got {explain_fraction:g}")
        if lgr_attack_eps is not None and not 0.0 <= lgr_attack_eps <= 1.0:
            raise ConfigError(
                "lgr_attack_eps", f"must be in [0, 1] (L-inf, [0,1] pixels), got {lgr_attack_eps:g}"
            )
        if lgr_reg_weight is not None and not lgr_reg_weight >= 0.0:
            raise ConfigError("lgr_reg_weight", f"must be >= 0, got {lgr_reg_weight:g}")
        if not CONTROL_SHARE < train_share <= 1.0:
            raise ConfigError(
                "train_share",
                f"must be in ({CONTROL_SHARE:g}, 1] (the control's share is {CONTROL_SHARE:g}: "
                f"patches at random positions), got {train_share:g}",
            )
        return cls(
            name=name,
            root=str(root),
            seeds=_parse_seeds(seeds),
            methods=_parse_names("methods", methods, MODELS),
            strategies=_parse_strategies(strategies),
            epochs=epochs,
            rounds=rounds,
            refine_epochs=refine_epochs,
            lime_samples=lime_samples,
            explain_fraction=explain_fraction,
            lgr_attack_eps=lgr_attack_eps,
            lgr_reg_weight=lgr_reg_weight,
            train_share=train_share,
            eval_limit=eval_limit,
            settings=settings,
        )

    def run_dir(self, trial_id: str) -> Path:
        return Path(self.root) / self.name / "runs" / trial_id

    def eval_config(self, seed: int) -> EvalConfig:
        return EvalConfig(
            eps=(EVAL_EPS,),
            attacks=("pgd",),
            pgd_steps=EVAL_PGD_STEPS,
            eval_mode="pgd",
            audit_probes=False,
            limit=self.eval_limit,
            seed=seed,
        )


def _split(text: str | Sequence[Any]) -> list[str]:
    if isinstance(text, str):
        return [part.strip() for part in text.split(",") if part.strip()]
    return [str(part).strip() for part in text]


def _parse_seeds(seeds: str | Sequence[int]) -> tuple[int, ...]:
    parts = _split(seeds)
    if not parts or not all(p.isdigit() for p in parts):
        raise ConfigError("seeds", f"give integers >= 0 separated by commas (0,1,2), got {seeds!r}")
    values = tuple(int(p) for p in parts)
    if len(set(values)) != len(values):
        raise ConfigError("seeds", f"a seed is repeated in {seeds!r}")
    return values


def _parse_names(field: str, names: str | Sequence[str], valid: Sequence[str]) -> tuple[str, ...]:
    parts = _split(names)
    unknown = [p for p in parts if p not in valid]
    if not parts or unknown:
        what = f"unknown {', '.join(map(repr, unknown))}" if unknown else "name at least one"
        raise ConfigError(field, f"{what}; valid: {', '.join(valid)}")
    return tuple(dict.fromkeys(parts))  # in the given order, without repeats


def _parse_strategies(strategies: str | Sequence[str]) -> tuple[tuple[str, ...], ...]:
    parts = _split(strategies)
    if not parts:
        raise ConfigError("strategies", f"name at least one; valid: {', '.join(SPURIOUS)}")
    parsed = []
    for part in parts:
        members = tuple(dict.fromkeys(m.strip() for m in part.split(UNION)))
        unknown = [m for m in members if m not in SPURIOUS]
        if unknown or not all(members):
            raise ConfigError(
                "strategies",
                f"unknown {', '.join(map(repr, unknown or ['']))} in {part!r}; valid: "
                f"{', '.join(SPURIOUS)}, or a union of them joined by {UNION}",
            )
        parsed.append(members)
    return tuple(dict.fromkeys(parsed))


@dataclass(frozen=True)
class PlannedModel:
    """One model of the benchmark: one run, one leaderboard row."""

    label: str  # erm, adversarial, sgt, asgt, control, lgr:<strategy>
    seed: int
    config: TrainConfig
    train_share: float
    strategy: str | None = None  # LGR: the spurious strategy (a union joined by +)

    @property
    def trial_id(self) -> str:
        return f"{self.label.replace(':', '-')}-seed{self.seed}"

    @property
    def control(self) -> bool:
        return self.label == "control"

    def marker(self) -> dict[str, Any]:
        """What the row's config holds beyond the TrainConfig: it tells the rows apart."""
        extra: dict[str, Any] = {"control": self.control, "train_share": self.train_share}
        if self.strategy is not None:
            extra["strategy"] = self.strategy
        return extra


def plan_models(plan: ShortcutPlan) -> list[PlannedModel]:
    """The models in the order they train: per seed, ERM first (LGR refines it)."""
    models = []
    for seed in plan.seeds:
        shared = {"dataset": DATASET, "seed": seed}
        base = {**shared, "epochs": plan.epochs, "monitor_every": plan.epochs}
        for method in ("erm", "control", "adversarial", "sgt", "asgt"):
            if method not in plan.methods:
                continue
            share = CONTROL_SHARE if method == "control" else plan.train_share
            config = TrainConfig.create(method="erm" if method == "control" else method, **base)
            models.append(PlannedModel(method, seed, config, share))
        if "lgr" not in plan.methods:
            continue
        start = plan.run_dir(_erm_trial(seed)) / "checkpoint.pt"
        chosen = {"attack_eps": plan.lgr_attack_eps, "reg_weight": plan.lgr_reg_weight}
        lgr_options = {key: value for key, value in chosen.items() if value is not None}
        for members in plan.strategies:
            strategy = UNION.join(members)
            config = TrainConfig.create(
                method="lgr",
                **shared,
                epochs=plan.refine_epochs,
                monitor_every=plan.refine_epochs,
                rounds=plan.rounds,
                spurious=members,
                lime_samples=plan.lime_samples,
                explain_fraction=plan.explain_fraction,
                start_checkpoint=str(start),
                **lgr_options,
            )
            models.append(PlannedModel(f"lgr:{strategy}", seed, config, plan.train_share, strategy))
    return models


def _erm_trial(seed: int) -> str:
    return f"erm-seed{seed}"


# ----------------------------------------------------------------------------- resuming


def _recorded(rows: pd.DataFrame) -> dict[str, tuple[str, dict[str, Any]]]:
    """trial_id -> (status, recorded config) of the benchmark's rows."""
    return {
        str(r["trial_id"]): (str(r["status"]), json.loads(r["config"]))
        for r in rows.to_dict("records")
    }


def _differences(model: PlannedModel, recorded: Mapping[str, Any]) -> list[str]:
    """Planned values a recorded row disagrees with (None in the plan: resolved later;
    the start checkpoint is a path under the root, which may have moved)."""
    planned = json.loads(json.dumps({**model.config.to_dict(), **model.marker()}, default=str))
    return [
        f"{key}: {recorded.get(key)!r} != {value!r}"
        for key, value in planned.items()
        if value is not None and key != "start_checkpoint" and recorded.get(key) != value
    ]


def finished_trials(plan: ShortcutPlan, models: Sequence[PlannedModel]) -> set[str]:
    """Trial ids whose row is already in the leaderboard with status ok.

    Raises ``ConfigError`` (before any work) when a row of this benchmark name was
    trained with other settings: mixing them would average different experiments.
    """
    recorded = _recorded(read_leaderboard(plan.root, plan.name))
    done = set()
    for model in models:
        if model.trial_id not in recorded:
            continue
        status, config = recorded[model.trial_id]
        differences = _differences(model, config)
        if differences:
            raise ConfigError(
                "name",
                f"benchmark {plan.name!r} under {plan.root} holds {model.trial_id} trained with "
                f"other settings ({'; '.join(sorted(differences))}); choose another --name",
            )
        if status == "ok":
            done.add(model.trial_id)
    return done


# ----------------------------------------------------------------------------- one model


@contextlib.contextmanager
def _train_share(share: float) -> Iterator[None]:
    """While open, ``load_dataset("digits_shortcut", seed=s)`` (what ``run()`` loads)
    plants label-coded patches in ``share`` of the training images.

    ``run()`` names its data set by registry name and seed only, and the registry's
    digits_shortcut always uses SHORTCUT_TRAIN_SHARE; the control (and --train-share)
    need another share. Safe here because every run is inline in this process (one
    worker: no Ray Train worker reloads the data by name; LIME actors get the images).
    """
    from methods.data import registry
    from methods.data.digits import load_digits_shortcut

    original = registry._LOADERS[DATASET]

    def loader(data_dir: Any, download: bool, seed: int):
        return load_digits_shortcut(seed=seed, train_share=share)

    registry._LOADERS[DATASET] = loader
    try:
        yield
    finally:
        registry._LOADERS[DATASET] = original


def _train(plan: ShortcutPlan, model: PlannedModel) -> RunResult:
    from orchestrator.run import run

    settings = RunSettings(
        storage=plan.root,
        out=f"{plan.name}/runs/{model.trial_id}",
        device=plan.settings.device,
        workers=1,
        actors=plan.settings.actors,
        address=plan.settings.address,
    )
    with _train_share(model.train_share):
        return run(model.config, settings, eval_config=plan.eval_config(model.seed))


def _final_flags_checkpoint(result: RunResult) -> Path:
    """The checkpoint the last round's flags were made from (``orchestrator.lgr``'s run
    directory: ``round<k>/`` per round; round 1 starts from ``start_checkpoint``)."""
    options = result.config.options
    if options.rounds == 1:
        return Path(options.start_checkpoint)
    return result.run_dir / f"round{options.rounds - 1}" / "checkpoint.pt"


def _flag_scores(
    plan: ShortcutPlan, result: RunResult, dataset: Dataset
) -> tuple[float | None, float | None]:
    """Precision and recall of the last round's flags over the images it explained.

    ``flag_masks`` reads the explanations back from the mask store (the run wrote
    them; nothing is explained again) and flags them as the round did.
    """
    from methods.shortcut import flag_precision_recall
    from orchestrator.lgr import flag_masks

    config = result.config
    masks = flag_masks(
        config,
        dataset,
        _final_flags_checkpoint(result),
        storage=plan.root,
        actors=plan.settings.actors,
    )
    explained = len(masks)
    if config.options.uses_lime:  # the rest carry empty masks: not a miss of the flags
        explained = max(1, round(config.options.explain_fraction * len(masks)))
    return flag_precision_recall(masks[:explained], dataset.train.masks[:explained])


def _score(plan: ShortcutPlan, model: PlannedModel, result: RunResult) -> dict[str, Any]:
    from methods.data import planted_class
    from methods.data.digits import load_digits_shortcut
    from methods.shortcut import shortcut_scores
    from orchestrator.checkpoints import read_checkpoint, restore_model

    dataset = load_digits_shortcut(seed=model.seed, train_share=model.train_share)
    images, labels = dataset.test.tensors()
    trained = restore_model(read_checkpoint(result.checkpoint))
    scores = shortcut_scores(trained, images, labels, planted_class(dataset.test))
    values: dict[str, Any] = {
        "shortcut_follow_rate": scores.follow_rate,
        "shortcut_acc": scores.accuracy,
    }
    if model.config.method == "lgr":
        values["flag_precision"], values["flag_recall"] = _flag_scores(plan, result, dataset)
    return values


def _row(
    plan: ShortcutPlan,
    model: PlannedModel,
    config: Mapping[str, Any],
    *,
    status: str,
    wall_s: float,
    result: RunResult | None = None,
    scores: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> LeaderboardRow:
    """The model's leaderboard row: a sweep trial's columns plus the shortcut scores."""
    from orchestrator.rows import config_id, result_row

    return result_row(
        sweep=plan.name,
        trial_id=model.trial_id,
        config_id=config_id(model.label, model.marker()),
        method=model.config.method,
        dataset=DATASET,
        config={**config, **model.marker()},
        eval_eps=EVAL_EPS,
        status=status,
        wall_s=wall_s,
        evaluation=None if result is None else result.evaluation,
        error=error,
        checkpoint=None if result is None else str(result.checkpoint),
        logdir=None if result is None else str(result.logdir),
        **dict(scores or {}),
    )


def _describe(values: Mapping[str, Any]) -> str:
    text = (
        f"follows {100 * values['shortcut_follow_rate']:.1f}%, "
        f"acc {100 * values['shortcut_acc']:.1f}%"
    )
    if values.get("flag_recall") is not None or values.get("flag_precision") is not None:
        text += f", flags P {_percent(values.get('flag_precision'))} R " + _percent(
            values.get("flag_recall")
        )
    return text


def _percent(value: float | None) -> str:
    return "-" if value is None or _missing(value) else f"{100 * value:.1f}%"


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class ShortcutReport:
    summary: pd.DataFrame  # one row per model label (``summarize``)
    trained: int
    skipped: int
    failed: int
    wall_s: float


def run_shortcut(
    plan: ShortcutPlan, *, progress: Callable[[str], None] = log.info
) -> ShortcutReport:
    """Train and score every planned model without a finished row, one row each.

    ``progress`` gets one line per model. A model whose run fails (a non-finite loss,
    a failed run) gets a row with status ``error`` and the benchmark goes on; a rerun
    tries it again. Bad input raises ``ConfigError`` before any training.
    """
    started = time.perf_counter()
    models = plan_models(plan)
    done = finished_trials(plan, models)
    trained = failed = 0
    for index, model in enumerate(models, start=1):
        prefix = f"[{index}/{len(models)}] {model.label} seed {model.seed}"
        if model.trial_id in done:
            progress(f"{prefix}: in the leaderboard, skipped")
            continue
        if model.config.method == "lgr":
            _ensure_start(plan, model, progress)
        began = time.perf_counter()
        try:
            result = _train(plan, model)
            scores = _score(plan, model, result)
        except (NonFiniteLossError, RuntimeError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            wall_s = time.perf_counter() - began
            append_row(plan.root, _row(
                plan, model, model.config.to_dict(), status="error", wall_s=wall_s,
                error=message,
            ))  # fmt: skip
            progress(f"{prefix}: failed ({message}), {wall_s:.1f}s")
            failed += 1
            continue
        wall_s = time.perf_counter() - began
        append_row(plan.root, _row(
            plan, model, result.config.to_dict(), status="ok", wall_s=wall_s, result=result,
            scores=scores,
        ))  # fmt: skip
        progress(f"{prefix}: {_describe(scores)}, {wall_s:.1f}s")
        trained += 1
    rows = read_leaderboard(plan.root, plan.name)
    return ShortcutReport(
        summary=summarize(rows, models),
        trained=trained,
        skipped=len(done),
        failed=failed,
        wall_s=time.perf_counter() - started,
    )


def _ensure_start(plan: ShortcutPlan, model: PlannedModel, progress: Callable[[str], None]) -> None:
    """LGR refines its seed's ERM model: train it here when --methods left ERM out or
    its checkpoint is gone (``run()`` resumes a finished run by evaluating it)."""
    start = Path(model.config.options.start_checkpoint)
    if start.is_file():
        return
    erm = PlannedModel(
        "erm",
        model.seed,
        TrainConfig.create(
            method="erm",
            dataset=DATASET,
            seed=model.seed,
            epochs=plan.epochs,
            monitor_every=plan.epochs,
        ),
        plan.train_share,
    )
    progress(f"  training erm seed {model.seed} for LGR to refine")
    _train(plan, erm)


# ----------------------------------------------------------------------------- the summary


def _label(config: Mapping[str, Any], method: str) -> str:
    if config.get("control"):
        return "control"
    if method == "lgr":
        return f"lgr:{config.get('strategy') or UNION.join(config.get('spurious', []))}"
    return method


def summarize(rows: pd.DataFrame, models: Sequence[PlannedModel]) -> pd.DataFrame:
    """One row per planned model label, over the seeds with a finished row: n, the mean
    and standard deviation (over seeds) of the follow rate and the accuracy, the
    accuracy's gap to the control's mean (percentage points / 100), and the mean flag
    precision and recall (LGR)."""
    wanted = {m.trial_id for m in models}
    order = list(dict.fromkeys(m.label for m in models))
    finished = rows[rows["trial_id"].isin(wanted) & (rows["status"] == "ok")].copy()
    finished["label"] = [
        _label(json.loads(c), m)
        for c, m in zip(finished["config"], finished["method"], strict=True)
    ]
    columns = ["shortcut_follow_rate", "shortcut_acc", "flag_precision", "flag_recall"]
    records = []
    for label in order:
        group = finished[finished["label"] == label]
        record: dict[str, Any] = {"model": label, "n": len(group)}
        for column in columns:
            values = pd.to_numeric(group[column], errors="coerce").dropna()
            record[f"{column}_mean"] = float(values.mean()) if len(values) else math.nan
            record[f"{column}_std"] = float(values.std()) if len(values) > 1 else math.nan
        records.append(record)
    summary = pd.DataFrame.from_records(records)
    control = summary.loc[summary["model"] == "control", "shortcut_acc_mean"]
    control_acc = float(control.iloc[0]) if len(control) else math.nan
    summary["acc_gap"] = summary["shortcut_acc_mean"] - control_acc
    return summary


def _mean_std(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{100 * mean:.1f}%" + ("" if math.isnan(std) else f" ± {100 * std:.1f}")


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as a fixed-width table (percentages; ± is the std over seeds)."""
    header = ["model", "seeds", "follows patch", "test acc", "gap vs control", "flag P", "flag R"]
    lines = []
    for r in summary.to_dict("records"):
        gap = r["acc_gap"]
        lines.append([
            r["model"],
            str(r["n"]),
            _mean_std(r["shortcut_follow_rate_mean"], r["shortcut_follow_rate_std"]),
            _mean_std(r["shortcut_acc_mean"], r["shortcut_acc_std"]),
            "-" if math.isnan(gap) or r["model"] == "control" else f"{100 * gap:+.1f} pt",
            _percent(r["flag_precision_mean"]),
            _percent(r["flag_recall_mean"]),
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, lines)])


# ----------------------------------------------------------------------------- the command


def add_shortcut_parser(verbs: argparse._SubParsersAction) -> None:
    """``limelight shortcut``: its flags, handled by ``shortcut_command``."""
    parser = verbs.add_parser(
        "shortcut",
        help="how much each method follows digits_shortcut's planted patch",
        description="Train ERM, PGD-AT, SGT, ASGT, LGR (once per flagging strategy) and a "
        "random-position control on digits_shortcut, per seed, and score each on the test "
        "split: the share of predictions that follow a wrong-class patch, accuracy (and its "
        "gap to the control), and for LGR the precision/recall of its flagged pixels against "
        "the true patch. One leaderboard row per model (sweep NAME); the same command again "
        "skips the finished rows. See docs/shortcut.md.",
    )
    parser.add_argument(
        "--name", default=DEFAULT_NAME, help=f"leaderboard sweep name (default: {DEFAULT_NAME})"
    )
    parser.add_argument(
        "--seeds",
        default=",".join(map(str, DEFAULT_SEEDS)),
        metavar="S[,S...]",
        help="seeds, one model of each kind per seed (default: %(default)s)",
    )
    parser.add_argument(
        "--methods",
        default=",".join(MODELS),
        metavar="M[,M...]",
        help=f"models to train: {', '.join(MODELS)} (default: all)",
    )
    parser.add_argument(
        "--strategies",
        default=",".join(SPURIOUS),
        metavar="S[,S...]",
        help=f"LGR flagging strategies, one LGR model each: {', '.join(SPURIOUS)}; a union "
        f"joins them with {UNION} (default: all, one by one)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help="epochs of ERM, PGD-AT, SGT, ASGT and the control; LGR refines the ERM model "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help="LGR rounds (default: %(default)s)"
    )
    parser.add_argument(
        "--refine-epochs",
        type=int,
        default=DEFAULT_REFINE_EPOCHS,
        help="LGR epochs per round (default: %(default)s)",
    )
    parser.add_argument(
        "--lime-samples",
        type=int,
        default=DEFAULT_LIME_SAMPLES,
        help="LIME perturbations per image (default: %(default)s)",
    )
    parser.add_argument(
        "--explain-fraction",
        type=float,
        default=1.0,
        help="share of the training images LGR explains each round (default: %(default)s)",
    )
    parser.add_argument(
        "--lgr-attack-eps",
        type=float,
        default=None,
        metavar="EPS",
        help="eps of LGR's adversarial term; 0 leaves it out (default: LGR's, the data "
        f"set's {DIGITS_EPS:g})",
    )
    parser.add_argument(
        "--lgr-reg-weight",
        type=float,
        default=None,
        metavar="W",
        help="weight of LGR's input-gradient penalty on the flagged pixels (default: LGR's)",
    )
    parser.add_argument(
        "--train-share",
        type=float,
        default=SHORTCUT_TRAIN_SHARE,
        help="share of training images with the label's own patch position (default: "
        f"%(default)s; the control always uses {CONTROL_SHARE:g})",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="the PGD evaluation on the first N test images (the follow rate and accuracy "
        "always use all 360)",
    )
    add_fields(parser, RunSettings, include=("storage", "device", "actors", "address"))
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    parser.set_defaults(handler=shortcut_command)


def shortcut_command(args: argparse.Namespace) -> int:
    """Run the benchmark the flags describe and print its summary; 1 if a model failed."""
    settings = given(args, RunSettings)
    plan = ShortcutPlan.create(
        name=args.name,
        seeds=args.seeds,
        methods=args.methods,
        strategies=args.strategies,
        epochs=args.epochs,
        rounds=args.rounds,
        refine_epochs=args.refine_epochs,
        lime_samples=args.lime_samples,
        explain_fraction=args.explain_fraction,
        lgr_attack_eps=args.lgr_attack_eps,
        lgr_reg_weight=args.lgr_reg_weight,
        train_share=args.train_share,
        eval_limit=args.limit,
        **settings,
    )
    report = run_shortcut(plan, progress=lambda line: print(line, flush=True))
    print(
        f"\nshortcut benchmark {plan.name!r} on {DATASET} (train share {plan.train_share:g}, "
        f"seeds {','.join(map(str, plan.seeds))}): {report.trained} trained, "
        f"{report.skipped} from the leaderboard, {report.failed} failed, {report.wall_s:.0f}s"
    )
    print(format_summary(report.summary))
    print(
        "follows patch: share of test predictions equal to a wrong-class patch's class; "
        "± = std over seeds"
    )
    print(f"rows: limelight leaderboard --storage {plan.root} --sweep {plan.name}")
    return 1 if report.failed else 0
