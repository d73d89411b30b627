"""The benchmark's input and its models: ``ShortcutRequest`` (what the user chooses,
the flags of ``limelight shortcut``), ``ShortcutPlan`` (that request where it runs)
and ``plan_models`` (one ``PlannedModel`` per run and leaderboard row)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from methods.data.digits import DIGITS_EPS, SHORTCUT_TRAIN_SHARE
from methods.data.mnist5k import MNIST_EPS
from methods.data.mnist5k_decoy import DECOY_TRAIN_SHARE
from methods.lime import samples_option
from methods.options import option, validate
from methods.training._options import EPS_SCALE
from methods.training.lgr import SPURIOUS
from orchestrator.config import ConfigError, EvalConfig, RunSettings, TrainConfig, check_seeds
from orchestrator.layout import CHECKPOINT_NAME, trial_run_dir
from orchestrator.storage import check_folder_name, local_root

__all__ = [
    "CONTROL_SHARE",
    "DATASET",
    "GLOBAL",
    "MODELS",
    "ORACLE",
    "SHORTCUT_DATASETS",
    "UNION",
    "PlannedModel",
    "ShortcutPlan",
    "ShortcutRequest",
    "oracle_trial",
    "plan_models",
]

#: The default data set.
DATASET = "digits_shortcut"
#: The data sets with a planted feature that codes a class (a patch's position, a
#: swatch's shade), each with its default share of label-coded training images.
SHORTCUT_DATASETS: dict[str, float] = {
    "digits_shortcut": SHORTCUT_TRAIN_SHARE,
    "mnist5k_decoy": DECOY_TRAIN_SHARE,
}
#: What --methods picks from: the training methods, and the random-position control.
MODELS = ("erm", "adversarial", "sgt", "asgt", "lgr", "rrr", "control")
#: Train share of the control: the planted feature codes a uniformly drawn class.
CONTROL_SHARE = 0.1
#: A union of strategies on the command line: low_relevance+gradient.
UNION = "+"
#: A strategy with one global mask (LGR's global_mask_share): low_relevance@0.05.
GLOBAL = "@"
#: The strategy every other is measured against: the data set's true masks.
ORACLE = "annotated"
#: The robust accuracy each row carries (PGD-10 at the data set's training eps): the
#: benchmark is about the shortcut, so the evaluation is the cheapest meaningful one.
EVAL_EPS: dict[str, float] = {"digits_shortcut": DIGITS_EPS, "mnist5k_decoy": MNIST_EPS}
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
DEFAULT_REFINE_EPOCHS = 10  # per round: 3 cannot unlearn the shortcut (docs/shortcut.md)
DEFAULT_LIME_SAMPLES = 100  # 16 grid cells (2x2 pixels) on 8x8: 100 samples fit 16 weights
DEFAULT_NAME = "shortcut"


# ----------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class ShortcutRequest:
    """What one benchmark trains, as the user chose it: every field is a flag of
    ``limelight shortcut``. Lists also take text ("0,1,2"); the record normalizes them
    (``strategies``: each a union of members joined by ``+``, members without repeats)
    and raises ``ConfigError`` naming the field and what is allowed."""

    dataset: str = option(
        DATASET,
        help="data set with a planted feature: digits_shortcut (a patch whose position "
        "codes the class) or mnist5k_decoy (Decoy MNIST: a corner swatch whose shade does)",
        choices=tuple(SHORTCUT_DATASETS),
    )
    name: str | None = option(
        None,
        help=f"leaderboard sweep name (default: {DEFAULT_NAME}; {DEFAULT_NAME}-DATASET for "
        "another --dataset)",
    )
    seeds: tuple[int, ...] = option(
        DEFAULT_SEEDS, help="seeds, one model of each kind per seed", metavar="S[,S...]"
    )
    methods: tuple[str, ...] = option(
        MODELS,
        help=f"models to train: {', '.join(MODELS)} (default: all)",
        choices=MODELS,
        metavar="M[,M...]",
    )
    strategies: tuple[str, ...] = option(
        SPURIOUS,
        help=f"LGR flagging strategies, one LGR model each: {', '.join(SPURIOUS)}; a union "
        f"joins them with {UNION}; {GLOBAL}SHARE flags one global mask, the pixels flagged in "
        f"more than SHARE of the images (low_relevance{GLOBAL}0.05). Default: all, one by "
        f"one; {ORACLE} (the oracle) always runs, the other strategies are scored against it",
        metavar="S[,S...]",
    )
    epochs: int = option(
        DEFAULT_EPOCHS,
        help="epochs of ERM, PGD-AT, SGT, ASGT, RRR and the control; LGR refines the ERM model",
        low=1,
    )
    rounds: int = option(DEFAULT_ROUNDS, help="LGR rounds", low=1)
    refine_epochs: int = option(DEFAULT_REFINE_EPOCHS, help="LGR epochs per round", low=1)
    lime_samples: int = samples_option(DEFAULT_LIME_SAMPLES, "LIME perturbations per image")
    explain_fraction: float = option(
        1.0,
        help="share of the training images LGR explains each round",
        low=0.0,
        open_low=True,
        high=1.0,
    )
    lgr_attack_eps: float | None = option(
        None,
        help="eps of LGR's adversarial term; 0 leaves it out (default: LGR's, the data "
        f"set's: {DIGITS_EPS:g} digits_shortcut, {MNIST_EPS:g} mnist5k_decoy)",
        low=0.0,
        high=1.0,
        note=EPS_SCALE,
        metavar="EPS",
    )
    lgr_reg_weight: float | None = option(
        None,
        help="weight of LGR's input-gradient penalty on the flagged pixels (default: LGR's)",
        low=0.0,
        metavar="W",
    )
    rrr_reg_weight: float | None = option(
        None,
        help="weight of RRR's input-gradient penalty on the annotated pixels (default: RRR's)",
        low=0.0,
        metavar="W",
    )
    train_share: float | None = option(
        None,
        help="share of training images whose planted feature codes the label (default: the "
        f"data set's: {SHORTCUT_TRAIN_SHARE:g} digits_shortcut, {DECOY_TRAIN_SHARE:g} "
        f"mnist5k_decoy; the control always uses {CONTROL_SHARE:g})",
        low=CONTROL_SHARE,
        open_low=True,
        high=1.0,
        note=f"the control's share is {CONTROL_SHARE:g}: the feature codes a random class",
    )
    limit: int | None = option(
        None,
        help="the PGD evaluation on the first N test images (the follow rate and accuracy "
        "always use the whole test split)",
        low=1,
        metavar="N",
    )

    def __post_init__(self) -> None:
        if self.dataset not in SHORTCUT_DATASETS:  # checked first: the defaults below depend on it
            raise ConfigError(
                "dataset", f"unknown value {self.dataset!r}; valid: {', '.join(SHORTCUT_DATASETS)}"
            )
        if self.name is None:
            default = DEFAULT_NAME if self.dataset == DATASET else f"{DEFAULT_NAME}-{self.dataset}"
            object.__setattr__(self, "name", default)
        if self.train_share is None:
            object.__setattr__(self, "train_share", SHORTCUT_DATASETS[self.dataset])
        check_folder_name("name", self.name)
        object.__setattr__(self, "seeds", _parse_seeds(self.seeds))
        object.__setattr__(self, "methods", tuple(dict.fromkeys(_split(self.methods))))
        _check_integers(self)
        validate(self)
        if not self.methods:
            raise ConfigError("methods", f"name at least one; valid: {', '.join(MODELS)}")
        object.__setattr__(self, "strategies", _parse_strategies(self.strategies))


def _check_integers(record: Any) -> None:
    """An ``int`` field holds an integer (not a bool, not 1.5): the Python API's guard;
    flags are parsed as integers already."""
    hints = typing.get_type_hints(type(record))
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if hints[field.name] not in (int, int | None) or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(field.name, f"must be an integer, got {value!r}")


def _split(text: str | Sequence[Any]) -> list[str]:
    if isinstance(text, str):
        return [part.strip() for part in text.split(",") if part.strip()]
    return [str(part).strip() for part in text]


def _parse_seeds(seeds: str | Sequence[int]) -> tuple[int, ...]:
    """``"0,1,2"`` (a flag) or a list of seeds."""
    parts = _split(seeds)
    shown = seeds if isinstance(seeds, str) else ",".join(map(str, seeds))  # as typed
    if not parts or not all(p.isdigit() for p in parts):
        raise ConfigError("seeds", f"give integers >= 0 separated by commas (0,1,2), got {shown!r}")
    return check_seeds("seeds", [int(p) for p in parts])


def _parse_strategies(strategies: str | Sequence[str]) -> tuple[str, ...]:
    """Each strategy (a union: members joined by +, optionally @SHARE for one global
    mask) without repeated members, the strategies without repeats, in the given order."""
    parts = _split(strategies)
    if not parts:
        raise ConfigError("strategies", f"name at least one; valid: {', '.join(SPURIOUS)}")
    return tuple(dict.fromkeys(_parse_strategy(part) for part in parts))


def _parse_strategy(part: str) -> str:
    union, _, share = part.partition(GLOBAL)
    members = tuple(dict.fromkeys(m.strip() for m in union.split(UNION)))
    unknown = [m for m in members if m not in SPURIOUS]
    if unknown or not all(members):
        raise ConfigError(
            "strategies",
            f"unknown {', '.join(map(repr, unknown or ['']))} in {part!r}; valid: "
            f"{', '.join(SPURIOUS)}, or a union of them joined by {UNION}",
        )
    text = UNION.join(members)
    if not share:
        if GLOBAL in part:
            raise ConfigError("strategies", f"{part!r}: give a share after {GLOBAL} (0.05)")
        return text
    try:
        value = float(share)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise ConfigError(
            "strategies", f"{part!r}: the global mask share must be a number in [0, 1)"
        )
    return f"{text}{GLOBAL}{value:g}"


def strategy_options(strategy: str) -> dict[str, Any]:
    """LGR's options for one parsed strategy: ``spurious`` and, after @, the
    ``global_mask_share``."""
    union, _, share = strategy.partition(GLOBAL)
    options: dict[str, Any] = {"spurious": tuple(union.split(UNION))}
    if share:
        options["global_mask_share"] = float(share)
    return options


def lgr_strategies(request: ShortcutRequest) -> tuple[str, ...]:
    """The strategies LGR runs: the oracle first (every other row's share of its gain
    is computed from it, so it must exist before them), then the requested ones."""
    return tuple(dict.fromkeys((ORACLE, *request.strategies)))


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ShortcutPlan:
    """The validated input of one benchmark: the request, the absolute local results
    root and where it runs (device, actors, address; one worker, storage = root)."""

    request: ShortcutRequest
    root: str
    settings: RunSettings

    @classmethod
    def create(
        cls,
        *,
        storage: str | None = None,
        device: str = "auto",
        actors: int = 2,
        address: str | None = None,
        **inputs: Any,
    ) -> ShortcutPlan:
        """From flat values: ``ShortcutRequest``'s fields (``eval_limit`` is also taken
        for ``limit``) beside the run settings. ``ConfigError`` names a bad one."""
        if "eval_limit" in inputs:
            inputs["limit"] = inputs.pop("eval_limit")
        request = ShortcutRequest(**inputs)
        settings = RunSettings(storage=storage, device=device, actors=actors, address=address)
        return cls.of(request, settings)

    @classmethod
    def of(cls, request: ShortcutRequest, settings: RunSettings) -> ShortcutPlan:
        """``request`` under ``settings``' storage, which must be a local folder."""
        root = local_root(settings.storage, "the benchmark writes run directories").resolve()
        settings = dataclasses.replace(settings, storage=str(root), workers=1)
        return cls(request=request, root=str(root), settings=settings)

    @property
    def name(self) -> str:
        return self.request.name

    def run_dir(self, trial_id: str) -> Path:
        return trial_run_dir(self.root, self.name, trial_id)

    @property
    def dataset(self) -> str:
        return self.request.dataset

    @property
    def eval_eps(self) -> float:
        return EVAL_EPS[self.dataset]

    def eval_config(self, seed: int) -> EvalConfig:
        return EvalConfig(
            eps=(self.eval_eps,),
            attacks=("pgd",),
            pgd_steps=EVAL_PGD_STEPS,
            eval_mode="pgd",
            audit_probes=False,
            limit=self.request.limit,
            seed=seed,
        )


# ----------------------------------------------------------------------------- the models


@dataclass(frozen=True)
class PlannedModel:
    """One model of the benchmark: one run, one leaderboard row."""

    label: str  # erm, adversarial, sgt, asgt, rrr, control, lgr:<strategy>
    seed: int
    config: TrainConfig
    train_share: float
    strategy: str | None = None  # LGR: the spurious strategy (a union joined by +)

    @property
    def trial_id(self) -> str:
        folder = self.label.replace(":", "-").replace(GLOBAL, "-global")
        return f"{folder}-seed{self.seed}"

    @property
    def control(self) -> bool:
        return self.label == "control"

    def marker(self) -> dict[str, Any]:
        """What the row's config holds beyond the TrainConfig: it tells the rows apart."""
        extra: dict[str, Any] = {"control": self.control, "train_share": self.train_share}
        if self.strategy is not None:
            extra["strategy"] = self.strategy
        return extra


def erm_trial(seed: int) -> str:
    """The trial id of the seed's ERM model, whose checkpoint LGR refines."""
    return f"erm-seed{seed}"


def erm_model(plan: ShortcutPlan, seed: int) -> PlannedModel:
    """The seed's ERM model (LGR refines its checkpoint)."""
    return _baseline(plan.request, "erm", seed)


def oracle_trial(seed: int) -> str:
    """The trial id of the seed's LGR oracle (``lgr:annotated``)."""
    return f"lgr-{ORACLE}-seed{seed}"


def plan_models(plan: ShortcutPlan) -> list[PlannedModel]:
    """The models in the order they train: per seed, ERM and the control first (LGR
    refines ERM), then LGR with its oracle first, then the other methods: every row
    after the oracle's is scored against it (``oracle_*_share``)."""
    request = plan.request
    models = []
    for seed in request.seeds:
        chosen = [m for m in ("erm", "control") if m in request.methods]
        models += [_baseline(request, method, seed) for method in chosen]
        if "lgr" in request.methods:
            models += _lgr_models(plan, seed)
        chosen = [m for m in ("adversarial", "sgt", "asgt", "rrr") if m in request.methods]
        models += [_baseline(request, method, seed) for method in chosen]
    return models


def _baseline(request: ShortcutRequest, method: str, seed: int) -> PlannedModel:
    """A model trained from scratch for ``request.epochs`` (the control: ERM on the
    control's share)."""
    share = CONTROL_SHARE if method == "control" else request.train_share
    options = {}
    if method == "rrr" and request.rrr_reg_weight is not None:
        options["reg_weight"] = request.rrr_reg_weight
    config = TrainConfig.create(
        method="erm" if method == "control" else method,
        dataset=request.dataset,
        seed=seed,
        epochs=request.epochs,
        monitor_every=request.epochs,
        **options,
    )
    return PlannedModel(method, seed, config, share)


def _lgr_models(plan: ShortcutPlan, seed: int) -> list[PlannedModel]:
    """One LGR model per strategy, each refining the seed's ERM model."""
    request = plan.request
    start = plan.run_dir(erm_trial(seed)) / CHECKPOINT_NAME
    chosen = {"attack_eps": request.lgr_attack_eps, "reg_weight": request.lgr_reg_weight}
    lgr_options = {key: value for key, value in chosen.items() if value is not None}
    models = []
    for strategy in lgr_strategies(request):
        config = TrainConfig.create(
            method="lgr",
            dataset=request.dataset,
            seed=seed,
            epochs=request.refine_epochs,
            monitor_every=request.refine_epochs,
            rounds=request.rounds,
            **strategy_options(strategy),
            lime_samples=request.lime_samples,
            explain_fraction=request.explain_fraction,
            start_checkpoint=str(start),
            **lgr_options,
        )
        models.append(PlannedModel(f"lgr:{strategy}", seed, config, request.train_share, strategy))
    return models
