"""The sampler's seed: fixed by default, so one spec samples the same configurations
(reproducible), and set in the spec or on the command line to sample others. Optuna's
own INFO lines and colours stay out of plain logs. No Ray: the searcher samples alone."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from orchestrator.config import ConfigError
from orchestrator.sweeps.spec import load_spec, parse_spec
from orchestrator.sweeps.tune import _quiet_libraries, optuna_searcher

DEMO = Path(__file__).resolve().parents[3] / "search_spaces" / "demo.yaml"


def _sampled(seed: int | None, count: int = 3) -> list[dict]:
    spec = load_spec(DEMO)
    if seed is not None:
        spec = dataclasses.replace(spec, sampler_seed=seed)
    searcher = optuna_searcher(spec)
    return [searcher.suggest(f"t{i}") for i in range(count)]


def test_one_seed_samples_the_same_configurations_and_another_seed_others():
    assert load_spec(DEMO).sampler_seed == 0
    assert _sampled(None) == _sampled(0)
    assert _sampled(1) != _sampled(0)
    assert _sampled(1) == _sampled(1)


def test_the_spec_key_is_validated_and_saved():
    text = {"name": "s", "method": "sgt", "eval": {"eval_eps": 0.1}, "sampler_seed": 7}
    assert parse_spec(text).sampler_seed == 7
    assert parse_spec(text).to_dict()["sampler_seed"] == 7
    with pytest.raises(ConfigError) as error:
        parse_spec({**text, "sampler_seed": -1})
    assert error.value.field == "sampler_seed"


def test_the_command_line_takes_a_sampler_seed():
    from orchestrator.cli import build_parser
    from orchestrator.cli.sweep import SweepRequest
    from orchestrator.flags import from_flags

    args = build_parser(["sweep"]).parse_args(["sweep", "--sampler-seed", "3"])
    assert from_flags(args, SweepRequest).sampler_seed == 3


def test_optuna_says_nothing_in_plain_logs_without_v(capfd):
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)  # what a non-terminal run logs at
    try:
        _quiet_libraries()
        _sampled(0, count=1)
    finally:
        root.setLevel(level)
    err = capfd.readouterr().err
    assert "A new study created" not in err
    assert "\x1b[" not in err
