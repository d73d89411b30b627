"""``limelight evaluate``: attack trained checkpoints and print their accuracy."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from methods.data import DATASETS
from methods.options import ConfigError, option, validate
from orchestrator.config import EvalConfig, RunSettings
from orchestrator.flags import add_fields, from_flags

__all__ = ["DESCRIPTION", "EvaluateRequest", "add_arguments", "run"]

DESCRIPTION = (
    "Evaluate one or more checkpoints: clean accuracy, FGSM and PGD accuracy over an eps "
    "grid ('worst' = survives every attack), and per-corruption accuracy on cifar10c. "
    "Writes CHECKPOINT_STEM.eval.json beside each."
)


@dataclass(frozen=True)
class EvaluateRequest:
    checkpoint: tuple[Path, ...] = option(
        help="checkpoint file(s) written by limelight train", metavar="C"
    )
    dataset: str | None = option(
        None, help="data set (default: the one each checkpoint was trained on)", choices=DATASETS
    )
    seed: int = option(0, help="seed of PGD's random start", low=0)

    def __post_init__(self) -> None:
        validate(self)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fields(parser, EvaluateRequest)
    add_fields(parser, EvalConfig, exclude=("seed",))
    add_fields(parser, RunSettings, include=("device", "data_dir", "download"))


def run(args: argparse.Namespace) -> int:
    from methods.data import load_dataset
    from orchestrator.checkpoints import CheckpointError, check_fits, read_checkpoint, restore_model
    from orchestrator.cli.output import format_results
    from orchestrator.run.evaluation import evaluate_split, lime_settings, write_json

    request = from_flags(args, EvaluateRequest)
    eval_config = from_flags(args, EvalConfig, seed=request.seed)
    settings = from_flags(args, RunSettings)
    states = []
    for path in request.checkpoint:  # read all first: a bad path fails before any attack
        try:
            states.append(read_checkpoint(path))
        except CheckpointError as error:
            raise ConfigError("checkpoint", str(error)) from error
    results = []
    datasets: dict[str, object] = {}
    for path, state in zip(request.checkpoint, states, strict=True):
        name = request.dataset or state["meta"]["dataset"]
        if name not in datasets:
            datasets[name] = load_dataset(
                name, data_dir=settings.data_dir, download=settings.download
            )
        dataset = datasets[name]
        try:
            check_fits(state["meta"], dataset)
            model = restore_model(state)
        except CheckpointError as error:
            raise ConfigError("checkpoint", f"{path}: {error}") from error
        recorded = state["meta"]["config"]
        train_eps = recorded.get("attack_eps") or recorded.get("monitor_eps")
        result = evaluate_split(
            model, dataset, eval_config, train_eps, settings.device, lime=lime_settings(recorded)
        )
        write_json(
            path.with_name(path.stem + ".eval.json"),
            {"checkpoint": str(path), "dataset": dataset.name, **result.to_dict()},
        )
        results.append((path.parent.name or str(path), result))
    print(format_results(results))
    return 0
