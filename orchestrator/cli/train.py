"""``limelight train``: one model through the run path, then its evaluation."""

from __future__ import annotations

import argparse
import typing

from methods.training import METHODS
from orchestrator.config import EvalConfig, RunSettings, TrainConfig, option_fields
from orchestrator.flags import add_fields, add_method_options, given

__all__ = ["DESCRIPTION", "EVAL_DEFAULTS", "add_arguments", "configs", "run"]

#: The final evaluation of a training command: the fast ensemble (APGD-CE and APGD-T
#: with 3 targets), the worst case over it, FGSM, PGD-20 and the audit. On digits it
#: took 74 s against 208 s for the standard one (loaded 2-core machine, 2026-12-03) and
#: gave the same worst case within 0.3 points (docs/evaluation.md); `limelight evaluate`
#: keeps the standard ensemble for the numbers one reports.
EVAL_DEFAULTS = {"eval_mode": "fast"}

DESCRIPTION = (
    "Train one model with a method, checkpoint every epoch (the same command again "
    "resumes; more --epochs extends), then evaluate clean, FGSM, PGD and the fast "
    "ensemble's accuracy on the test split (limelight evaluate: the standard ensemble). "
    "Everything goes under the results root: STORAGE/OUT holds checkpoint.pt, "
    "config.json, eval.json and tensorboard/. An option the chosen --method does not use "
    "is an error."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fields(parser, TrainConfig)
    method_options = parser.add_argument_group(
        "method options (each names the methods that use it)"
    )
    add_method_options(
        method_options,
        option_fields(),
        {name: typing.get_type_hints(cls.Options) for name, cls in METHODS.items()},
    )
    add_fields(parser.add_argument_group("where it runs (results root, Ray, data)"), RunSettings)
    add_fields(
        parser.add_argument_group("final evaluation (its seed is --seed)"),
        EvalConfig,
        defaults=EVAL_DEFAULTS,
    )


def configs(args: argparse.Namespace) -> tuple[TrainConfig, RunSettings, EvalConfig]:
    """The flags the user gave, as the three frozen configs (``ConfigError`` on bad input)."""
    names = set(option_fields())
    options = {k: v for k, v in vars(args).items() if k in names}
    config = TrainConfig.from_dict({**given(args, TrainConfig), **options})
    settings = RunSettings(**given(args, RunSettings))
    chosen = {**EVAL_DEFAULTS, **given(args, EvalConfig, exclude=("seed",))}
    eval_config = EvalConfig(**chosen, seed=config.seed)
    return config, settings, eval_config


def run(args: argparse.Namespace) -> int:
    from orchestrator.cli.output import format_results
    from orchestrator.run import run as run_config

    config, settings, eval_config = configs(args)
    result = run_config(config, settings, eval_config=eval_config)
    resolved = result.config
    train_eps = "" if resolved.attack_eps is None else f", train eps {resolved.attack_eps:g}"
    print(
        f"\n{resolved.method} on {resolved.dataset} ({resolved.model_name}), "
        f"{result.history[-1].epoch} epochs, seed {resolved.seed}{train_eps}: "
        f"{result.train_s:.1f}s training, {result.eval_s:.1f}s evaluation"
    )
    print(format_results([(resolved.method, result.evaluation)]))
    print(f"checkpoint: {result.checkpoint}\ntensorboard --logdir {result.logdir}")
    return 0
