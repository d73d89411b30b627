"""Sweep specs: ``search_spaces/*.yaml`` -> a frozen, validated ``SweepSpec``.

The whole spec is checked before any Ray work: an unknown key or name, a bad range,
``low >= high``, a log-uniform bound <= 0, a searched or fixed field that a method
does not use, an objective metric that does not exist. Each raises ``ConfigError``
whose field is the key path (``search.mask_ratio.uniform``), which the CLI prints as
one line with exit code 2. Specs are read with ``yaml.safe_load``: nothing in a spec
is ever evaluated as code.

A spec::

    name: demo
    method: [sgt, asgt]           # one method, or a list
    dataset: digits
    train: {epochs: 15}           # fixed settings: TrainConfig fields and method options
    search:                       # shared by every listed method that uses the field...
      reg_weight: {loguniform: [0.1, 10]}
      mask_ratio: {uniform: [0.2, 0.8]}
      asgt:                       # ...and a subspace per method
        attack_eps: {uniform: [0.02, 0.2]}
    eval: {eval_eps: 0.1}         # the fixed yardstick, never the training eps
    objective: {robust_acc: max}  # one metric, or several for a multi-objective search
    trials: 8
    seeds: [0, 1, 2]
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from methods.training import METHODS
from orchestrator.config import ConfigError, EvalConfig, TrainConfig, check_seeds
from orchestrator.storage import check_folder_name

__all__ = [
    "METRICS",
    "Asha",
    "Choice",
    "Domain",
    "IntRange",
    "LogUniform",
    "Objective",
    "Resources",
    "SweepSpec",
    "Uniform",
    "load_spec",
    "parse_spec",
]

#: Metrics a sweep can optimize; all are measured on the validation split.
#: Evaluation images a trial uses in a ``--smoke`` run (one epoch a trial).
SMOKE_LIMIT = 64
METRICS = ("clean_acc", "robust_acc", "fgsm_acc", "pgd_acc")
#: Per-epoch metrics ASHA can stop on (reported through on_epoch).
EPOCH_METRICS = ("val_acc", "val_robust_acc", "train_acc", "loss")
MODES = ("max", "min")
TOP_KEYS = (
    "name", "method", "dataset", "model", "train", "search", "eval", "objective",
    "trials", "seeds", "max_concurrent", "resources", "asha", "val_fraction",
    "keep_checkpoints", "sampler", "sampler_seed",
)  # fmt: skip
#: How trials are chosen: Optuna (TPE, or NSGA-II for several objectives) over the
#: search space, or every combination (each method x its choice lists x the seeds).
SAMPLERS = ("optuna", "grid")


# ----------------------------------------------------------------------------- domains


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high)

    def endpoints(self) -> tuple[Any, ...]:
        return (self.low, self.high)


@dataclass(frozen=True)
class LogUniform(Uniform):
    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high)

    def endpoints(self) -> tuple[Any, ...]:
        return (self.low, self.high)


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def endpoints(self) -> tuple[Any, ...]:
        return self.values


Domain = Uniform | LogUniform | IntRange | Choice
DOMAINS = ("uniform", "loguniform", "int", "choice")


def _domain(path: str, text: Any) -> Domain:
    if not isinstance(text, Mapping) or len(text) != 1:
        raise ConfigError(path, f"give one domain as {{name: args}}; valid: {', '.join(DOMAINS)}")
    ((kind, args),) = text.items()
    where = f"{path}.{kind}"
    if kind not in DOMAINS:
        raise ConfigError(where, f"unknown domain; valid: {', '.join(DOMAINS)}")
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(where, "give a non-empty list of values")
        return Choice(tuple(args))
    if not (isinstance(args, list) and len(args) == 2):
        raise ConfigError(where, "give [low, high]")
    low, high = args
    numbers = (int,) if kind == "int" else (int, float)
    if not all(isinstance(v, numbers) and not isinstance(v, bool) for v in args):
        raise ConfigError(
            where, f"low and high must be {'integers' if kind == 'int' else 'numbers'}"
        )
    if not low < high:
        raise ConfigError(where, f"low must be < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(where, f"low must be > 0 on a log scale, got {low}")
    if kind == "int":
        return IntRange(int(low), int(high))
    cls = LogUniform if kind == "loguniform" else Uniform
    return cls(float(low), float(high))


# ----------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class Objective:
    """What Optuna optimizes: metric -> mode; several metrics give a Pareto front."""

    metrics: tuple[tuple[str, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.metrics)

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(mode for _, mode in self.metrics)

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1


@dataclass(frozen=True)
class Resources:
    """Per trial: CPUs and GPUs of an inline trial, or Train workers (DDP) and each
    worker's GPU share; and the LIME actors of an LGR trial (a CPU each)."""

    cpus: float = 1.0
    gpus: float = 0.0
    workers: int = 1
    actors: int = 1


@dataclass(frozen=True)
class Asha:
    """Early stopping on a per-epoch metric (ASHA: ``grace_period`` epochs at least)."""

    metric: str = "val_acc"
    mode: str = "max"
    grace_period: int = 2
    reduction_factor: int = 2


@dataclass(frozen=True)
class SweepSpec:
    name: str
    methods: tuple[str, ...]
    dataset: str
    model: str | None
    # Plain dicts (not read-only proxies): Tune pickles the spec with every trial. They
    # are never mutated after parsing.
    fixed: Mapping[str, Mapping[str, Any]]  # method -> settings the same in every trial
    search: Mapping[str, Mapping[str, Domain]]  # method -> field -> domain
    eval_config: EvalConfig  # its eps is the fixed eval_eps
    objective: Objective
    trials: int = 8
    seeds: tuple[int, ...] = (0,)
    max_concurrent: int = 2
    resources: Resources = field(default_factory=Resources)
    asha: Asha | None = None
    val_fraction: float = 0.1
    keep_checkpoints: int = 3
    sampler: str = "optuna"
    #: Optuna's seed: fixed by default (the same spec samples the same configurations);
    #: another seed samples others (``limelight sweep --sampler-seed``).
    sampler_seed: int = 0

    @property
    def eval_eps(self) -> float:
        assert self.eval_config.eps is not None
        return self.eval_config.eps[0]

    def searched(self, method: str) -> Mapping[str, Domain]:
        return self.search.get(method, {})

    def grid(self) -> list[dict[str, Any]]:
        """The grid sampler's configurations: per method, every combination of its
        choice lists, as ``{"method": m, m: {field: value}}`` (a trial's config shape)."""
        variants = []
        for method in self.methods:
            space = self.searched(method)
            names = list(space)
            for values in itertools.product(*(space[n].values for n in names)):  # type: ignore[union-attr]
                variants.append({"method": method, method: dict(zip(names, values, strict=True))})
        return variants

    def trial_config(self, method: str, sampled: Mapping[str, Any], seed: int) -> TrainConfig:
        """The frozen config of one trial: the fixed settings, the sampled values, the seed."""
        values = {**self.fixed[method], **sampled, "method": method, "dataset": self.dataset}
        if self.model is not None:
            values["model"] = self.model
        return TrainConfig.from_dict({**values, "seed": seed})

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec, as saved with the sweep (YAML-safe types only)."""
        return {
            "name": self.name,
            "method": list(self.methods),
            "dataset": self.dataset,
            "model": self.model,
            "train": {method: dict(values) for method, values in self.fixed.items()},
            "search": {
                method: {key: _domain_dict(domain) for key, domain in space.items()}
                for method, space in self.search.items()
            },
            "eval": {
                "eval_eps": self.eval_eps,
                "grid": list(self.eval_config.eps or ())[1:],
                "eval_mode": self.eval_config.eval_mode,
                "attacks": list(self.eval_config.attacks),
                "pgd_steps": self.eval_config.pgd_steps,
                "pgd_restarts": self.eval_config.pgd_restarts,
                "audit_probes": self.eval_config.audit_probes,
                "probe_eps": list(self.eval_config.probe_eps or ()),
                "fast_eps": list(self.eval_config.fast_eps),
                "faithfulness": self.eval_config.faithfulness,
                "limit": self.eval_config.limit,
            },
            "objective": dict(self.objective.metrics),
            "trials": self.trials,
            "seeds": list(self.seeds),
            "max_concurrent": self.max_concurrent,
            "resources": dataclasses.asdict(self.resources),
            "asha": None if self.asha is None else dataclasses.asdict(self.asha),
            "val_fraction": self.val_fraction,
            "keep_checkpoints": self.keep_checkpoints,
            "sampler": self.sampler,
            "sampler_seed": self.sampler_seed,
        }


def _domain_dict(domain: Domain) -> dict[str, Any]:
    if isinstance(domain, Choice):
        return {"choice": list(domain.values)}
    kind = (
        "loguniform"
        if isinstance(domain, LogUniform)
        else ("int" if isinstance(domain, IntRange) else "uniform")
    )
    return {kind: [domain.low, domain.high]}


# ----------------------------------------------------------------------------- parsing


class SpecError(ConfigError):
    """A bad key of a spec file: ``field`` is its key path as the YAML has it
    (``search.mask_ratio.uniform``), shown with the file, never as a flag."""

    names_a_flag = False

    def __init__(self, spec: Path, field: str, message: str) -> None:
        super().__init__(field, message)
        self.args = (f"{spec}: {field}: {message}",)
        self.spec = spec


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec file (``yaml.safe_load``); a bad key raises
    ``SpecError`` naming the file and the key path."""
    path = Path(path)
    try:
        text = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError("spec", f"cannot read {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0]
        raise ConfigError("spec", f"{path} is not valid YAML ({first})") from error
    if not isinstance(text, Mapping):
        raise ConfigError("spec", f"{path} must hold a mapping of keys, got {type(text).__name__}")
    try:
        return parse_spec(text, default_name=path.stem)
    except ConfigError as error:
        raise SpecError(path, error.field, error.message) from error


def parse_spec(text: Mapping[str, Any], *, default_name: str = "sweep") -> SweepSpec:
    """Validate a spec's mapping; ``ConfigError`` names the first bad key path."""
    _known("", text, TOP_KEYS)
    name = check_folder_name("name", str(text.get("name", default_name)))
    methods = _methods(text.get("method", "erm"))
    dataset = _string("dataset", text.get("dataset", "digits"))
    model = text.get("model")
    fixed = _per_method("train", _mapping("train", text.get("train", {})), methods, dict)
    for method in methods:
        for key in ("method", "dataset", "model", "seed"):
            if key in fixed[method]:
                where = "the top level (seeds: [0, 1, 2])" if key == "seed" else "the top level"
                raise ConfigError(f"train.{key}", f"give {key} at {where}")
    search = _per_method("search", _mapping("search", text.get("search", {})), methods, _domain)
    for method in methods:
        _check_method(method, dataset, model, fixed[method], search[method], text)
    eval_config = _eval(_mapping("eval", text.get("eval", {})))
    spec = SweepSpec(
        name=name,
        methods=methods,
        dataset=dataset,
        model=model,
        fixed=fixed,
        search=search,
        eval_config=eval_config,
        objective=_objective(text.get("objective", {"robust_acc": "max"})),
        trials=_count("trials", text.get("trials", 8)),
        seeds=_seeds(text.get("seeds", [0])),
        max_concurrent=_count("max_concurrent", text.get("max_concurrent", 2)),
        resources=_resources(_mapping("resources", text.get("resources", {}))),
        asha=None if text.get("asha") is None else _asha(_mapping("asha", text["asha"])),
        val_fraction=_fraction("val_fraction", text.get("val_fraction", 0.1)),
        keep_checkpoints=_count("keep_checkpoints", text.get("keep_checkpoints", 3)),
        sampler=_sampler(text.get("sampler", "optuna"), search),
        sampler_seed=_seed_count("sampler_seed", text.get("sampler_seed", 0)),
    )
    return spec


def _sampler(value: Any, search: Mapping[str, Mapping[str, Domain]]) -> str:
    if value not in SAMPLERS:
        raise ConfigError("sampler", f"unknown sampler {value!r}; valid: {', '.join(SAMPLERS)}")
    if value == "grid":
        for method, space in search.items():
            for name, domain in space.items():
                if not isinstance(domain, Choice):
                    raise ConfigError(
                        f"search.{name}",
                        f"a grid sweep takes choice lists only ({method} has "
                        f"{_kind(domain)}); give {{choice: [a, b]}}",
                    )
    return str(value)


def _known(prefix: str, mapping: Mapping[str, Any], valid: tuple[str, ...]) -> None:
    for key in mapping:
        if key not in valid:
            path = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(path, f"unknown key; valid: {', '.join(valid)}")


def _mapping(path: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"must be a mapping of keys, got {type(value).__name__}")
    return value


def _string(path: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a name, got {value!r}")
    return value


def _methods(value: Any) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise ConfigError("method", f"give a method or a list; valid: {', '.join(METHODS)}")
    for name in names:
        if name not in METHODS:
            raise ConfigError("method", f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise ConfigError("method", "a method is listed twice")
    return tuple(names)


def _per_method(
    section: str, text: Mapping[str, Any], methods: tuple[str, ...], parse: Any
) -> dict[str, dict[str, Any]]:
    """method -> key -> parsed value. A key named after a method holds that method's
    own part; the other keys are shared by every listed method."""
    shared = {k: v for k, v in text.items() if k not in METHODS}
    per_method = {k: v for k, v in text.items() if k in METHODS}
    for method in per_method:
        if method not in methods:
            raise ConfigError(
                f"{section}.{method}", f"{method} is not among method: {list(methods)}"
            )
    parts: dict[str, dict[str, Any]] = {}
    for method in methods:
        own = _mapping(f"{section}.{method}", per_method.get(method, {}))
        values = {k: _parsed(parse, f"{section}.{k}", v) for k, v in shared.items()}
        values.update({k: _parsed(parse, f"{section}.{method}.{k}", v) for k, v in own.items()})
        parts[method] = values
    return parts


def _parsed(parse: Any, path: str, value: Any) -> Any:
    return value if parse is dict else parse(path, value)


def _check_method(
    method: str, dataset: str, model: str | None, fixed: Mapping[str, Any],
    search: Mapping[str, Domain], text: Mapping[str, Any],
) -> None:  # fmt: skip
    """Build the method's config at every end of every domain: an unknown field, one the
    method does not use, or a value outside its range names the key path as the spec
    wrote it (``train.sgt.mask_ratio`` for a key under the method's own part)."""
    base = {**fixed, "method": method, "dataset": dataset}
    if model is not None:
        base["model"] = model
    _as_config(
        base, lambda key: "model" if key == "model" else _key_path(text, "train", method, key)
    )
    for key, domain in search.items():
        path = _key_path(text, "search", method, key)
        for value in domain.endpoints():
            _as_config({**base, key: value}, lambda _k, p=path, d=domain: f"{p}.{_kind(d)}")


def _key_path(text: Mapping[str, Any], section: str, method: str, key: str) -> str:
    """``section.method.key`` where the spec gave ``key`` under the method, else
    ``section.key``."""
    own = (text.get(section) or {}).get(method)
    return (
        f"{section}.{method}.{key}"
        if isinstance(own, Mapping) and key in own
        else f"{section}.{key}"
    )


def _as_config(values: dict[str, Any], path_of: Any) -> TrainConfig:
    try:
        return TrainConfig.from_dict(values)
    except ConfigError as error:
        raise ConfigError(path_of(error.field), error.message) from error


def _kind(domain: Domain) -> str:
    return next(iter(_domain_dict(domain)))


def _eval(text: Mapping[str, Any]) -> EvalConfig:
    valid = (
        "eval_eps",
        "grid",
        "eval_mode",
        "attacks",
        "pgd_steps",
        "pgd_restarts",
        "audit_probes",
        "probe_eps",
        "fast_eps",
        "faithfulness",
        "limit",
    )
    _known("eval", text, valid)
    if "eval_eps" not in text:
        raise ConfigError("eval.eval_eps", "give the fixed eps of the headline robust accuracy")
    eps = text["eval_eps"]
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps <= 1:
        raise ConfigError(
            "eval.eval_eps", f"must lie in (0, 1] (L-inf on the [0,1] scale), got {eps!r}"
        )
    grid = _grid(text.get("grid", []), float(eps))
    options = {k: v for k, v in text.items() if k not in ("eval_eps", "grid")}
    # A sweep evaluates every trial: the fast ensemble, unless the spec asks for more.
    # `limelight sweep --best` re-evaluates the winners with the standard one.
    options.setdefault("eval_mode", "fast")
    # ... and the audit's probes at the headline eps only: they cost more than the fast
    # ensemble itself (methods.evaluate.evaluate's probe_eps).
    options["probe_eps"] = _grid(options.get("probe_eps", [eps]), -1.0, "eval.probe_eps")
    if "fast_eps" in options:
        options["fast_eps"] = _grid(options["fast_eps"], -1.0, "eval.fast_eps")
    if "attacks" in options:
        options["attacks"] = tuple(options["attacks"])
    try:
        # eval_eps first: it is the headline (SweepSpec.eval_eps), the rest the curve.
        return EvalConfig(eps=(float(eps), *grid), **options)
    except ConfigError as error:
        raise ConfigError(f"eval.{error.field}", error.message) from error


def _grid(value: Any, eval_eps: float, field: str = "eval.grid") -> tuple[float, ...]:
    """``eval.grid``: more eps to evaluate every trial at (the robust curve); the list
    less ``eval_eps``, sorted."""
    if not isinstance(value, list) or not all(
        isinstance(e, (int, float)) and not isinstance(e, bool) and 0 < e <= 1 for e in value
    ):
        raise ConfigError(field, f"must be a list of eps in (0, 1], got {value!r}")
    return tuple(sorted({float(e) for e in value} - {eval_eps}))


def _objective(text: Any) -> Objective:
    if not isinstance(text, Mapping) or not text:
        raise ConfigError(
            "objective",
            f"give metric: mode, e.g. {{robust_acc: max}}; metrics: {', '.join(METRICS)}",
        )
    for metric, mode in text.items():
        if metric not in METRICS:
            raise ConfigError(f"objective.{metric}", f"no such metric; valid: {', '.join(METRICS)}")
        if mode not in MODES:
            raise ConfigError(f"objective.{metric}", f"mode must be max or min, got {mode!r}")
    return Objective(tuple(text.items()))


def _count(path: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(path, f"must be an integer >= 1, got {value!r}")
    return value


def _seed_count(path: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(path, f"must be an integer >= 0, got {value!r}")
    return value


def _seeds(value: Any) -> tuple[int, ...]:
    """A count (``3``: seeds 0, 1, 2) or a list of seeds."""
    seeds = list(range(value)) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(seeds, list):
        raise ConfigError("seeds", f"give a count or a list of integers >= 0, got {value!r}")
    return check_seeds("seeds", seeds)


def _fraction(path: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
        raise ConfigError(path, f"must lie in (0, 1), got {value!r}")
    return float(value)


def _resources(text: Mapping[str, Any]) -> Resources:
    _known("resources", text, ("cpus", "gpus", "workers", "actors"))
    cpus, gpus = text.get("cpus", 1.0), text.get("gpus", 0.0)
    for key, value, low in (("cpus", cpus, 0.0), ("gpus", gpus, 0.0)):
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or value < low
            or (key == "cpus" and value == 0)
        ):
            raise ConfigError(
                f"resources.{key}",
                f"must be a number {'> 0' if key == 'cpus' else '>= 0'}, got {value!r}",
            )
    workers = _count("resources.workers", text.get("workers", 1))
    actors = _count("resources.actors", text.get("actors", 1))
    return Resources(float(cpus), float(gpus), workers, actors)


def _asha(text: Mapping[str, Any]) -> Asha:
    _known("asha", text, ("metric", "mode", "grace_period", "reduction_factor"))
    asha = Asha(**text)
    if asha.metric not in EPOCH_METRICS:
        raise ConfigError(
            "asha.metric", f"no such per-epoch metric; valid: {', '.join(EPOCH_METRICS)}"
        )
    if asha.mode not in MODES:
        raise ConfigError("asha.mode", f"must be max or min, got {asha.mode!r}")
    _count("asha.grace_period", asha.grace_period)
    if not isinstance(asha.reduction_factor, int) or asha.reduction_factor < 2:
        raise ConfigError(
            "asha.reduction_factor", f"must be an integer >= 2, got {asha.reduction_factor!r}"
        )
    return asha
