"""Run configuration: flags, spec files and notebooks -> frozen, validated dataclasses.

Raw dicts stop here. ``TrainConfig`` is what is trained (the same for ``limelight
train``, a Ray job and a Tune trial); ``RunSettings`` is where and on what it runs;
``EvalConfig`` is how the result is attacked. A bad value raises ``ConfigError``
naming the field and what is allowed, before any data is read or Ray work starts.
Each field's default, range, choices and help are declared once (``option``); the
CLI derives its flags from them (``orchestrator.flags``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from methods.attacks import ATTACKS
from methods.data import DATASETS
from methods.evaluate import EVAL_MODES
from methods.loop import resolve_device
from methods.models import MODELS, default_model
from methods.options import ConfigError, Options, option, validate
from methods.training import METHODS, TrainingMethod, method_class
from methods.training._options import EPS_SCALE
from orchestrator.storage import DEFAULT_STORAGE, STORAGE_ENV, default_root, is_uri, local_root

__all__ = [
    "ConfigError",
    "EvalConfig",
    "RunSettings",
    "TrainConfig",
    "check_seeds",
    "in_ray_job",
    "is_uri",
]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "onecycle", "constant")

#: Why a method refuses an option it does not have, where a hint helps more than the list.
_MISPLACED_HINTS = {
    "attack_eps": "it trains without an attack; the evaluation eps grid is --eps, "
    "the per-epoch robust accuracy's eps is --monitor-eps",
}


@dataclass(frozen=True)
class TrainConfig:
    """One training run: the fields every method shares, then the method's own
    ``options`` (``method.Options``). Build from flat values with ``TrainConfig.create``
    (``TrainConfig.create(method="sgt", mask_ratio=0.3)``); ``to_dict`` gives them back.
    """

    method: str = option("erm", help="training method", choices=lambda: tuple(METHODS))
    dataset: str = option("digits", help="data set (digits is embedded)", choices=DATASETS)
    model: str | None = option(
        None,
        help="model (default per data set: small_cnn for digits, sgt_mnist_cnn for mnist "
        "and mnist5k(_decoy), resnet18 for cifar)",
        choices=lambda: tuple(MODELS),
    )
    epochs: int = option(30, help="epochs", low=1)
    batch_size: int = option(128, help="batch size (global, split across --workers)", low=1)
    optimizer: str = option("sgd", help="sgd (Nesterov) or adam (AdamW)", choices=OPTIMIZERS)
    lr: float = option(0.05, help="peak learning rate", low=0.0, open_low=True)
    momentum: float = option(0.9, help="SGD momentum", low=0.0, high=1.0, open_high=True)
    weight_decay: float = option(5e-4, help="weight decay", low=0.0)
    schedule: str = option(
        "cosine", help="learning-rate schedule, stepped per batch", choices=SCHEDULES
    )
    seed: int = option(0, help="random seed", low=0)
    monitor_eps: float | None = option(
        None,
        help="eps of the per-epoch PGD-10 accuracy on test images (default: the training "
        "attack's eps, else the data set's)",
        low=0.0,
        high=1.0,
        note=EPS_SCALE,
    )
    monitor_every: int | None = option(
        None,
        help="per-epoch robust accuracy every N epochs and at the last (default: about "
        "10 points a run; a PGD-10 pass costs about an ERM epoch on digits)",
        low=1,
    )
    val_fraction: float | None = option(
        None,
        help="hold out this share of the training split (stratified; the same images for "
        "every seed) for the per-epoch metrics and a sweep's objective (default: none; the "
        "per-epoch metrics use test images)",
        low=0.0,
        high=1.0,
        open_low=True,
        open_high=True,
    )
    options: Options = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        validate(self)
        cls = self.method_class
        if self.options is None:
            object.__setattr__(self, "options", cls.Options())
        elif type(self.options) is not cls.Options:
            raise ConfigError(
                "options",
                f"{self.method} takes {cls.Options.__name__}, got {type(self.options).__name__}",
            )

    # ------------------------------------------------------------------ flat form

    @classmethod
    def create(cls, **values: Any) -> TrainConfig:
        """From flat values: shared fields and the method's options side by side."""
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Strict: an unknown key, or an option of another method, names the key."""
        shared = {f.name for f in dataclasses.fields(cls)} - {"options"}
        method = values.get("method", "erm")
        method_cls = method_class(method)
        own = method_cls.Options.field_names()
        for key in values:
            if key not in shared and key not in own:
                raise ConfigError(key, _refusal(key, method, shared))
        options = method_cls.Options(**{k: v for k, v in values.items() if k in own})
        return cls(**{k: v for k, v in values.items() if k in shared}, options=options)

    def to_dict(self) -> dict[str, Any]:
        """Flat: the shared fields, then the method's options (no ``options`` key)."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del flat["options"]
        return {**flat, **dataclasses.asdict(self.options)}

    # ------------------------------------------------------------------ resolution

    @property
    def method_class(self) -> type[TrainingMethod]:
        return method_class(self.method)

    @property
    def model_name(self) -> str:
        return self.model or default_model(self.dataset)

    @property
    def attack_eps(self) -> float | None:
        """The training attack's eps; None for methods without one (or not resolved)."""
        return getattr(self.options, "attack_eps", None)

    def resolved(self, default_eps: float) -> TrainConfig:
        """This config with every per-data-set and per-method default filled in, so that
        config.json, checkpoints and leaderboard rows record the values actually used."""
        options = self.options.resolved(default_eps=default_eps, epochs=self.epochs)
        train_eps = getattr(options, "attack_eps", None)
        monitor = self.monitor_eps
        if monitor is None:
            monitor = train_eps if train_eps else default_eps
        # monitor_every stays None ("about ten points a run"): resolving it from the
        # epochs would make a run extended to more epochs look like other settings.
        return dataclasses.replace(
            self,
            model=self.model_name,
            monitor_eps=monitor,
            options=options,
        )

    def differences(self, other: TrainConfig, ignore: tuple[str, ...] = ("epochs",)) -> list[str]:
        """Fields that differ, as ``name: this != other`` (for resume checks)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{k}: {mine.get(k)!r} != {theirs.get(k)!r}"
            for k in {**mine, **theirs}
            if k not in ignore and mine.get(k) != theirs.get(k)
        ]


def _refusal(key: str, method: str, shared: set[str]) -> str:
    users = [name for name, cls in METHODS.items() if key in cls.Options.field_names()]
    if not users:
        valid = sorted(shared | set(method_class(method).Options.field_names()))
        return f"unknown key; valid for {method}: {', '.join(valid)}"
    hint = _MISPLACED_HINTS.get(key, f"only {', '.join(users)} use it")
    return f"not used by --method {method}: {hint}"


def option_fields() -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """Every method option by name, with the methods that declare it (for the CLI)."""
    fields: dict[str, list[tuple[str, dataclasses.Field]]] = {}
    for name, cls in METHODS.items():
        for f in dataclasses.fields(cls.Options):
            fields.setdefault(f.name, []).append((name, f))
    return fields


# ----------------------------------------------------------------------------- where it runs


def check_seeds(field: str, seeds: Any) -> tuple[int, ...]:
    """Seeds as given in a spec or on the command line: integers >= 0, at least one, none
    twice. ``ConfigError`` names ``field`` and the seed at fault."""
    seeds = list(seeds) if isinstance(seeds, (list, tuple)) else seeds
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(field, f"give one or more integers >= 0, got {seeds!r}")
    for seed in seeds:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(field, f"seeds are integers >= 0, got {seed!r}")
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ConfigError(field, f"seed {repeated[0]} is repeated")
    return tuple(seeds)


def in_ray_job() -> bool:
    """True inside the entrypoint of ``ray job submit`` (Ray's job supervisor sets this
    variable for the driver it starts)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


@dataclass(frozen=True)
class RunSettings:
    """Where a run writes, what it runs on, where its data lives. Changing these never
    changes what is trained, so a rerun with other settings resumes the same run."""

    storage: str | None = option(
        None,
        help="results root: the run directory, Ray Train storage and the LIME mask store "
        f"go under it (default: ${STORAGE_ENV}, else ./{DEFAULT_STORAGE})",
        metavar="ROOT",
    )
    out: str | None = option(
        None,
        help="run directory, relative to --storage (default: train/DATASET-METHOD-seedSEED)",
        metavar="DIR",
    )
    device: str = option("auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    workers: int = option(1, help="Ray Train workers (DDP); 1 trains inline without Ray", low=1)
    gpus_per_worker: float = option(
        0.0, help="GPU share per Train worker; > 0 also uses Ray Train", low=0.0
    )
    actors: int = option(2, help="Ray actors explaining with LIME (lgr)", low=1)
    address: str | None = option(
        None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)"
    )
    data_dir: str = option("data", help="where mnist/cifar10/cifar100/cifar10c live", metavar="DIR")
    download: bool = option(False, help="download mnist/cifar10/cifar100 if missing")

    def __post_init__(self) -> None:
        validate(self)
        object.__setattr__(self, "storage", default_root(self.storage))
        _check_device(self.device)
        if in_ray_job() and not is_uri(self.storage) and not Path(self.storage).is_absolute():
            raise ConfigError(
                "storage",
                f"{self.storage!r} is relative, and a Ray job runs in a temporary copy of "
                "--working-dir that Ray deletes: give an absolute path every node reaches "
                f"(--storage or {STORAGE_ENV}; limelight explain also takes a URI)",
            )

    @property
    def distributed(self) -> bool:
        """Whether training runs on a Ray Train ``TorchTrainer``."""
        return self.workers > 1 or self.gpus_per_worker > 0

    def check_fits(self, config: TrainConfig) -> None:
        """Settings that must agree with the config."""
        if config.batch_size % self.workers:
            raise ConfigError(
                "batch_size",
                f"{config.batch_size} must be a multiple of --workers ({self.workers}): "
                "each worker takes an equal shard of every batch",
            )

    def run_dir(self, config: TrainConfig) -> Path:
        """The run directory: ``out`` (default by data set, method, seed) under the root."""
        root = local_root(self.storage, "a run writes its run directory (checkpoint, TensorBoard)")
        return root / (self.out or f"train/{config.dataset}-{config.method}-seed{config.seed}")


def _check_device(name: str) -> None:
    """The one check of a device name: known, and present on this machine."""
    if not (name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ConfigError("device", f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")
    try:
        resolve_device(name)
    except (ValueError, RuntimeError) as error:
        raise ConfigError("device", str(error).splitlines()[0]) from error


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings: attacks at each eps of the grid."""

    eval_mode: str = option(
        "standard",
        help="the ensemble behind the headline robust accuracy: standard (APGD-CE, "
        "APGD-T, Square), fast (APGD-CE, APGD-T; sweeps), pgd (the papers' FGSM/PGD only)",
        choices=EVAL_MODES,
    )

    eps: tuple[float, ...] | None = option(
        None,
        help="evaluation eps grid (default: the data set's grid plus the training eps)",
        low=0.0,
        high=1.0,
        note=EPS_SCALE,
        metavar="E[,E...]",
    )
    attacks: tuple[str, ...] = option(
        ("fgsm", "pgd"),
        help="the papers' curves: attacks run on every example at each eps",
        choices=ATTACKS,
        metavar="A[,A...]",
    )
    pgd_steps: int = option(20, help="PGD steps", low=1)
    pgd_restarts: int = option(1, help="PGD restarts", low=1)
    audit_probes: bool = option(
        True,
        help="run the audit's extra attacks (stronger PGD, Square, eps 0.5, gradients) "
        "on what the evaluation left standing",
    )
    probe_eps: tuple[float, ...] | None = option(
        None,
        help="the eps at which the audit's attack probes run (default: every eps of the "
        "grid; sweeps: the headline eval_eps)",
        low=0.0,
        high=1.0,
        note=EPS_SCALE,
        metavar="E[,E...]",
    )
    fast_eps: tuple[float, ...] = option(
        (),
        help="with --eval-mode standard: the eps at which the fast ensemble runs instead "
        "(e.g. a curve's eps beside the headline one; default: none)",
        low=0.0,
        high=1.0,
        note=EPS_SCALE,
        metavar="E[,E...]",
    )
    faithfulness: bool = option(
        True,
        help="SGT's masked-accuracy curve: accuracy as the most salient pixels are "
        "replaced, against a random order (docs/faithfulness.md)",
    )
    limit: int | None = option(
        None, help="evaluate on the first N test images only", low=1, metavar="N"
    )
    batch_size: int = option(256, help="evaluation batch size", low=1, flag=False)
    seed: int = option(0, help="seed of the attacks' random starts", low=0, flag=False)

    def __post_init__(self) -> None:
        validate(self)
        if not self.attacks:
            raise ConfigError("attacks", f"name at least one; valid: {', '.join(ATTACKS)}")
        if self.fast_eps and self.eval_mode != "standard":
            raise ConfigError(
                "fast_eps",
                f"replaces the standard ensemble at some eps; eval_mode is {self.eval_mode!r}",
            )
