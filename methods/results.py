"""The typed result records of an evaluation: what ``methods.evaluate`` and
``methods.faithfulness`` build, what ``methods.audit`` reads, and what ``eval.json``
holds (``to_dict`` / ``from_dict``).

Plain frozen dataclasses of floats, ints and strings; this module imports no other
``methods`` module, so any of them (and the orchestrator) can import it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["CorruptionPoint", "EvalResult", "FaithfulnessCurve", "RobustPoint"]


@dataclass(frozen=True)
class RobustPoint:
    # "fgsm", "pgd", "autoattack" (the eval mode's ensemble) or "worst" (the
    # per-example minimum over every attack run at this eps, the audit's included)
    attack: str
    eps: float  # L-inf on the [0,1] scale
    acc: float  # in [0,1]


@dataclass(frozen=True)
class CorruptionPoint:
    corruption: str
    severity: int  # 1..5
    acc: float


@dataclass(frozen=True)
class FaithfulnessCurve:
    """Accuracy as the top-ranked pixels are removed, against a random order
    (``methods.faithfulness``).

    Attributes:
        fractions: nominal share of each image's pixels removed at each step.
        acc: accuracy in [0,1] at each step, removing in the explanation's order.
        random_acc: the same removing pixels (or superpixels) in a random order.
        auc, random_auc: ``faithfulness_auc`` of the two curves; lower: faster fall.
        order: what ranked the pixels: ``"saliency"`` or ``"lime"``.
    """

    fractions: tuple[float, ...]
    acc: tuple[float, ...]
    random_acc: tuple[float, ...]
    auc: float
    random_auc: float
    order: str

    @property
    def gap(self) -> float:
        """``auc - random_auc``: negative when the explanation beats a random order."""
        return self.auc - self.random_auc

    def points(self) -> tuple[dict[str, float], ...]:
        """The curve as the leaderboard's ``faithfulness_curve`` column stores it."""
        return tuple(
            {"fraction": f, "acc": a, "random_acc": r}
            for f, a, r in zip(self.fractions, self.acc, self.random_acc, strict=True)
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FaithfulnessCurve:
        """The inverse of ``to_dict`` (JSON lists become tuples again)."""
        return cls(
            fractions=tuple(float(f) for f in values["fractions"]),
            acc=tuple(float(a) for a in values["acc"]),
            random_acc=tuple(float(a) for a in values["random_acc"]),
            auc=float(values["auc"]),
            random_auc=float(values["random_auc"]),
            order=str(values["order"]),
        )


@dataclass(frozen=True)
class EvalResult:
    """One model's evaluation (``methods.evaluate.evaluate``). Accuracies are floats in
    [0,1]."""

    n_eval: int
    clean_acc: float
    robust_curve: tuple[RobustPoint, ...] = ()
    corruption_curve: tuple[CorruptionPoint, ...] = ()
    corruption_acc: float | None = None  # plain mean over corruption_curve
    audit_flags: tuple[str, ...] = ()
    attack_settings: dict[str, str] = field(default_factory=dict)
    eval_mode: str = "pgd"  # results written before the ensemble existed were PGD-only
    fast_eps: tuple[float, ...] = ()  # where the fast ensemble stood in for eval_mode
    audit_measures: dict[str, float] = field(default_factory=dict)
    faithfulness: FaithfulnessCurve | None = None  # SGT's masked-accuracy curve
    lime_faithfulness: FaithfulnessCurve | None = None  # the same in LIME's order (LGR)

    def acc(self, attack: str, eps: float) -> float:
        """Robust accuracy of ``attack`` at ``eps`` (``KeyError`` if not evaluated)."""
        for point in self.robust_curve:
            if point.attack == attack and abs(point.eps - eps) < 1e-9:
                return point.acc
        raise KeyError(f"no {attack} accuracy at eps={eps:g} in this result")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> EvalResult:
        """The inverse of ``to_dict`` (``eval.json``); unknown keys are ignored."""

        return cls(
            n_eval=int(values["n_eval"]),
            clean_acc=float(values["clean_acc"]),
            robust_curve=tuple(RobustPoint(**p) for p in values.get("robust_curve", ())),
            corruption_curve=tuple(
                CorruptionPoint(**p) for p in values.get("corruption_curve", ())
            ),
            corruption_acc=values.get("corruption_acc"),
            audit_flags=tuple(values.get("audit_flags", ())),
            attack_settings=dict(values.get("attack_settings", {})),
            eval_mode=str(values.get("eval_mode", "pgd")),
            fast_eps=tuple(float(e) for e in values.get("fast_eps", ())),
            audit_measures={k: float(v) for k, v in values.get("audit_measures", {}).items()},
            faithfulness=_curve_from(values.get("faithfulness")),
            lime_faithfulness=_curve_from(values.get("lime_faithfulness")),
        )


def _curve_from(values: dict | None) -> FaithfulnessCurve | None:
    return None if values is None else FaithfulnessCurve.from_dict(values)
