"""``limelight train``: one model through the run path, then its evaluation."""

from __future__ import annotations

import argparse
import typing

from methods.training import METHODS
from orchestrator.config import EvalConfig, RunSettings, TrainConfig, option_fields
from orchestrator.flags import add_fields, add_method_options, given

__all__ = ["DESCRIPTION", "add_arguments", "configs", "run"]

DESCRIPTION = (
    "Train one model with a method, checkpoint every epoch (the same command again "
    "resumes; more --epochs extends), then evaluate clean, FGSM and PGD accuracy on the "
    "test split. Everything goes under the results root: STORAGE/OUT holds checkpoint.pt, "
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
    add_fields(parser.add_argument_group("final evaluation (its seed is --seed)"), EvalConfig)


def configs(args: argparse.Namespace) -> tuple[TrainConfig, RunSettings, EvalConfig]:
    """The flags the user gave, as the three frozen configs (``ConfigError`` on bad input)."""
    names = set(option_fields())
    options = {k: v for k, v in vars(args).items() if k in names}
    config = TrainConfig.from_dict({**given(args, TrainConfig), **options})
    settings = RunSettings(**given(args, RunSettings))
    eval_config = EvalConfig(**given(args, EvalConfig, exclude=("seed",)), seed=config.seed)
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
