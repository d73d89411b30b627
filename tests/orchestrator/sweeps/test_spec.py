"""Sweep specs: every spec in search_spaces/ parses, and each kind of bad input names
its key path (no Ray: the whole spec is checked before any cluster work)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from orchestrator.config import ConfigError
from orchestrator.sweeps.spec import Choice, LogUniform, Uniform, load_spec, parse_spec

SPECS = sorted((Path(__file__).resolve().parents[3] / "search_spaces").glob("*.yaml"))

BASE = {
    "name": "t",
    "method": ["sgt", "asgt"],
    "dataset": "digits",
    "train": {"epochs": 2, "asgt": {"attack_steps": 2}},
    "search": {
        "mask_ratio": {"uniform": [0.2, 0.8]},
        "reg_weight": {"loguniform": [0.1, 10]},
        "asgt": {"attack_eps": {"uniform": [0.02, 0.2]}},
    },
    "eval": {"eval_eps": 0.1},
    "objective": {"robust_acc": "max"},
    "trials": 2,
    "seeds": [0, 1],
}


def _with(path: str, value) -> dict:
    spec = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return spec


def _without(path: str) -> dict:
    spec = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node[key]
    del node[last]
    return spec


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_shipped_spec_parses_and_round_trips(path):
    spec = load_spec(path)
    assert spec.name == path.stem
    again = parse_spec(yaml.safe_load(yaml.safe_dump(spec.to_dict())))
    assert again == spec


def test_demo_searches_the_three_headline_fields():
    spec = load_spec(next(p for p in SPECS if p.stem == "demo"))
    searched = set().union(*(spec.searched(m) for m in spec.methods))
    assert {"mask_ratio", "reg_weight", "attack_eps"} <= searched
    assert spec.trials * len(spec.seeds) >= 4 and spec.dataset == "digits"
    for method in spec.methods:
        eps = spec.searched(method).get("attack_eps")
        assert eps is None or (eps.low >= 0.02 and eps.high <= 0.2)


def test_a_valid_spec_gives_typed_parts():
    spec = parse_spec(BASE)
    assert spec.methods == ("sgt", "asgt")
    assert spec.searched("sgt") == {
        "mask_ratio": Uniform(0.2, 0.8), "reg_weight": LogUniform(0.1, 10.0)
    }  # fmt: skip
    assert spec.searched("asgt")["attack_eps"] == Uniform(0.02, 0.2)
    assert spec.eval_eps == 0.1 and spec.seeds == (0, 1)
    config = spec.trial_config("asgt", {"mask_ratio": 0.3, "attack_eps": 0.05}, seed=1)
    assert config.options.attack_steps == 2 and config.options.attack_eps == 0.05
    assert config.seed == 1 and config.epochs == 2
    assert parse_spec(
        _with("search.sgt", {"saliency_target": {"choice": ["logit", "log_prob"]}})
    ).searched("sgt")["saliency_target"] == Choice(("logit", "log_prob"))


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        (_with("colour", "red"), "colour", "unknown key"),
        (_with("method", ["sgt", "magic"]), "method", "valid: erm"),
        (_with("train.lr_schedule", "cos"), "train.lr_schedule", "unknown key"),
        (_with("train.seed", 3), "train.seed", "seeds"),
        (_with("search.mask_ratio", {"gaussian": [0, 1]}), "search.mask_ratio.gaussian",
         "valid: uniform, loguniform, int, choice"),
        (_with("search.mask_ratio", {"uniform": [0.8, 0.2]}), "search.mask_ratio.uniform",
         "low must be < high"),
        (_with("search.mask_ratio", {"uniform": [0.5, 0.5]}), "search.mask_ratio.uniform",
         "low must be < high"),
        (_with("search.reg_weight", {"loguniform": [0, 10]}), "search.reg_weight.loguniform",
         "> 0 on a log scale"),
        (_with("search.mask_ratio", {"uniform": [0.2, 1.5]}), "search.mask_ratio.uniform",
         "(0, 1)"),
        (_with("search.mask_ratio", {"uniform": [0.2]}), "search.mask_ratio.uniform",
         "[low, high]"),
        (_with("search.epochs", {"int": [1.5, 4]}), "search.epochs.int", "integers"),
        # A searched field that a method does not use: SGT trains without an attack.
        (_with("search.attack_eps", {"uniform": [0.02, 0.2]}), "search.attack_eps.uniform",
         "not used by --method sgt"),
        (_with("search.erm", {"lr": {"uniform": [0.01, 0.1]}}), "search.erm", "not among method"),
        # A key under the method's own part is named as the spec wrote it.
        (_with("train.sgt", {"mask_ratio": 3}), "train.sgt.mask_ratio", "(0, 1)"),
        (_with("search.sgt", {"mask_ratio": {"uniform": [0.2, 1.5]}}),
         "search.sgt.mask_ratio.uniform", "(0, 1)"),
        (_with("objective", {"accuracy": "max"}), "objective.accuracy", "no such metric"),
        (_with("objective", {"robust_acc": "up"}), "objective.robust_acc", "max or min"),
        (_without("eval.eval_eps"), "eval.eval_eps", "fixed eps"),
        (_with("eval.eval_eps", 0), "eval.eval_eps", "(0, 1]"),
        (_with("eval.attacks", ["cw"]), "eval.attacks", "valid: fgsm, pgd"),
        # A sweep evaluates with the fast ensemble unless told: nothing to replace.
        (_with("eval.fast_eps", [0.2]), "eval.fast_eps", "replaces the standard ensemble"),
        (_with("eval.fast_eps", [2]), "eval.fast_eps", "list of eps in (0, 1]"),
        (_with("trials", 0), "trials", ">= 1"),
        (_with("seeds", [0, 0]), "seeds", "repeated"),
        (_with("val_fraction", 1.0), "val_fraction", "(0, 1)"),
        (_with("resources", {"gpu": 1}), "resources.gpu", "unknown key"),
        (_with("asha", {"metric": "test_acc"}), "asha.metric", "per-epoch metric"),
        (_with("name", "a/b"), "name", "plain folder name"),
        (_with("model", "vit"), "model", "valid: small_cnn"),
    ],
)  # fmt: skip
def test_bad_specs_name_the_key_path(spec, path, words):
    with pytest.raises(ConfigError) as error:
        parse_spec(spec)
    assert error.value.field == path, error.value
    assert words in error.value.message, error.value.message


def test_unreadable_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read") as error:
        load_spec(tmp_path / "missing.yaml")
    assert error.value.field == "spec"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_spec(bad)
    code = tmp_path / "code.yaml"
    code.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):  # safe_load: no code runs
        load_spec(code)


def test_the_pareto_front_keeps_the_undominated_trials():
    from types import SimpleNamespace

    from orchestrator.sweeps.tune import pareto_front

    spec = parse_spec({**BASE, "objective": {"robust_acc": "max", "clean_acc": "max"}})
    points = {"a": (0.5, 0.9), "b": (0.6, 0.8), "c": (0.4, 0.7), "d": (0.6, 0.9), "e": (0.7, 0.5)}
    grid = [
        SimpleNamespace(metrics={"trial_id": t, "robust_acc": r, "clean_acc": c, "final": 1})
        for t, (r, c) in points.items()
    ] + [SimpleNamespace(metrics={"trial_id": "f", "robust_acc": 0.9})]  # not finished
    assert pareto_front(spec, grid) == ("d", "e")


def test_grid_sampler_lists_every_method_and_choice_combination():
    spec = parse_spec(
        {
            "method": ["erm", "sgt"],
            "sampler": "grid",
            "search": {"sgt": {"mask_ratio": {"choice": [0.3, 0.5]}}},
            "eval": {"eval_eps": 0.1, "grid": [0.2, 0.05, 0.1]},
            "seeds": [0, 1, 2],
        }
    )
    assert spec.eval_config.eps == (0.1, 0.05, 0.2)  # the headline first, then the curve
    assert spec.eval_eps == 0.1
    with pytest.raises(ConfigError, match="list of eps") as info:
        parse_spec({"eval": {"eval_eps": 0.1, "grid": [0.1, 2]}})
    assert info.value.field == "eval.grid"
    assert spec.grid() == [
        {"method": "erm", "erm": {}},
        {"method": "sgt", "sgt": {"mask_ratio": 0.3}},
        {"method": "sgt", "sgt": {"mask_ratio": 0.5}},
    ]
    assert spec.eval_config.eval_mode == "fast"  # a sweep's default ensemble
    assert spec.eval_config.probe_eps == (0.1,)  # the audit's probes at the headline only


def test_probe_eps_is_a_list_of_eps():
    spec = parse_spec({"eval": {"eval_eps": 0.1, "grid": [0.2], "probe_eps": [0.2, 0.1]}})
    assert spec.eval_config.probe_eps == (0.1, 0.2)
    with pytest.raises(ConfigError, match="list of eps") as info:
        parse_spec({"eval": {"eval_eps": 0.1, "probe_eps": 0.2}})
    assert info.value.field == "eval.probe_eps"


def test_grid_sampler_refuses_ranges_and_unknown_samplers():
    grid = {"method": "sgt", "sampler": "grid", "eval": {"eval_eps": 0.1}}
    with pytest.raises(ConfigError, match="choice lists only") as info:
        parse_spec({**grid, "search": {"mask_ratio": {"uniform": [0.2, 0.8]}}})
    assert info.value.field == "search.mask_ratio"
    with pytest.raises(ConfigError, match="valid: optuna, grid") as info:
        parse_spec({**grid, "sampler": "random"})
    assert info.value.field == "sampler"


def test_fast_eps_put_the_fast_ensemble_beside_a_standard_headline():
    text = _with("eval", {"eval_eps": 0.1, "grid": [0.05, 0.2], "eval_mode": "standard",
                          "fast_eps": [0.2, 0.05]})  # fmt: skip
    spec = parse_spec(text)
    assert spec.eval_config.eval_mode == "standard"
    assert spec.eval_config.fast_eps == (0.05, 0.2)
    assert parse_spec(spec.to_dict()).eval_config == spec.eval_config  # round trip
