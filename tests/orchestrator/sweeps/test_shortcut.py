"""`limelight shortcut` end to end on a tiny setting (1 seed, 2 epochs, ERM, the control
and LGR with one LIME strategy through real Ray actors): its rows, resuming, and the
exit-2 contract of its flags."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from methods.data import load_dataset, planted_class
from orchestrator.cli import main
from orchestrator.leaderboard import append_row, read_leaderboard
from orchestrator.sweeps.report import shortcut_table
from orchestrator.sweeps.shortcut import CONTROL_SHARE, ShortcutPlan, plan_models
from orchestrator.sweeps.shortcut.benchmark import _oracle_shares, _row, _train_share
from orchestrator.sweeps.shortcut.plan import oracle_trial
from orchestrator.sweeps.shortcut.summary import format_summary, oracle_share, summarize

TINY = [
    "shortcut", "--seeds", "0", "--epochs", "1", "--strategies", "irrelevant",
    "--rounds", "1", "--refine-epochs", "1", "--lime-samples", "20",
    "--explain-fraction", "0.05", "--limit", "40", "--device", "cpu", "--actors", "2",
    "--name", "tiny",
]  # fmt: skip


def _label_coded(seed: int = 0) -> float:
    train = load_dataset("digits_shortcut", seed=seed).train
    return (planted_class(train) == train.labels).float().mean().item()


def test_the_control_trains_on_random_positions_and_the_registry_is_restored():
    with _train_share(CONTROL_SHARE):
        assert abs(_label_coded() - CONTROL_SHARE) < 0.02
    assert _label_coded() > 0.95


def _rows(root):
    rows = read_leaderboard(str(root), "tiny")
    return {r["trial_id"]: r for r in rows.to_dict("records")}


def test_benchmark_writes_one_row_per_model_and_resumes(local_ray, tmp_path, capsys):
    argv = [*TINY, "--storage", str(tmp_path)]
    # LGR without ERM in --methods: the ERM model it refines is trained, but gets no row.
    # The oracle (lgr:annotated) runs too, before the strategy: the rows after it are
    # scored against it.
    assert main([*argv, "--methods", "control,lgr"]) == 0
    out = capsys.readouterr().out
    assert out.count("seed 0: follows") == 3, out  # one progress line per model
    assert "training erm seed 0 for LGR to refine" in out
    assert out.index("lgr:annotated seed 0") < out.index("lgr:irrelevant seed 0"), out
    rows = _rows(tmp_path)
    assert set(rows) == {"control-seed0", "lgr-annotated-seed0", "lgr-irrelevant-seed0"}
    for row in rows.values():
        assert row["status"] == "ok" and row["dataset"] == "digits_shortcut"
        for column in ("shortcut_follow_rate", "shortcut_acc", "clean_acc", "pgd_acc"):
            assert 0.0 <= row[column] <= 1.0, (row["trial_id"], column)
        assert row["n_eval"] == 40 and row["eval_mode"] == "pgd"  # --limit: PGD eval only
    lgr, control = rows["lgr-irrelevant-seed0"], rows["control-seed0"]
    assert 0.0 <= lgr["flag_precision"] <= 1.0 and 0.0 <= lgr["flag_recall"] <= 1.0
    assert pd.isna(control["flag_precision"]) and pd.isna(control["flag_recall"])
    configs = {trial: json.loads(row["config"]) for trial, row in rows.items()}
    assert control["method"] == "erm" and configs["control-seed0"]["control"] is True
    assert configs["control-seed0"]["train_share"] == CONTROL_SHARE
    assert configs["lgr-irrelevant-seed0"]["control"] is False
    assert configs["lgr-irrelevant-seed0"]["train_share"] == 0.97
    assert configs["lgr-irrelevant-seed0"]["strategy"] == "irrelevant"
    assert "lgr:irrelevant" in out and "gap vs control" in out

    # Resuming with ERM added: the finished rows are skipped and not rewritten; ERM's
    # run directory holds its finished model, which is evaluated and gets its row.
    created = {trial: row["created_at"] for trial, row in rows.items()}
    assert main([*argv, "--methods", "erm,control,lgr"]) == 0
    out = capsys.readouterr().out
    assert out.count("in the leaderboard, skipped") == 3, out
    assert "[1/4] erm seed 0: follows" in out
    rows = _rows(tmp_path)
    assert set(rows) == {
        "erm-seed0",
        "control-seed0",
        "lgr-annotated-seed0",
        "lgr-irrelevant-seed0",
    }
    assert {t: rows[t]["created_at"] for t in created} == created
    recorded = json.loads(rows["lgr-irrelevant-seed0"]["config"])
    assert recorded["start_checkpoint"] == rows["erm-seed0"]["checkpoint"]

    # The same name with other settings would mix two experiments: refused, nothing run.
    code = main([*argv, "--epochs", "3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--name" in err and "epochs: 1 != 3" in err, err
    assert set(_rows(tmp_path)) == set(rows)


@pytest.mark.parametrize(
    ("extra", "parts"),
    [
        (["--methods", "erm,bogus"], ["--methods", "'bogus'", "erm, adversarial"]),
        (["--methods", ""], ["--methods", "name at least one"]),
        (["--strategies", "annotated,nope"], ["--strategies", "'nope'", "low_relevance"]),
        (["--strategies", "gradient+nope"], ["--strategies", "'nope'", "joined by +"]),
        (["--seeds", "0,a"], ["--seeds", "integers >= 0"]),
        (["--seeds", "-1"], ["--seeds", "integers >= 0"]),
        (["--seeds", "1,1"], ["--seeds", "repeated"]),
        (["--seeds", "x", "--methods", "bogus"], ["--seeds"]),
        (["--epochs", "0"], ["--epochs", ">= 1"]),
        (["--lime-samples", "1"], ["--lime-samples", ">= 2"]),
        (["--train-share", "0.05"], ["--train-share", "(0.1, 1]"]),
        (["--explain-fraction", "0"], ["--explain-fraction", "(0, 1]"]),
        (["--name", "a/b"], ["--name", "plain folder name"]),
        (["--lgr-attack-eps", "2"], ["--lgr-attack-eps", "[0, 1]"]),
        (["--lgr-reg-weight", "-1"], ["--lgr-reg-weight", ">= 0"]),
        (["--epochs", "two"], ["--epochs", "invalid int"]),
        (["--dataset", "mnist5k"], ["--dataset", "'digits_shortcut', 'mnist5k_decoy'"]),
        (["--rrr-reg-weight", "-1"], ["--rrr-reg-weight", ">= 0"]),
        (["--strategies", "gradient@x"], ["--strategies", "'gradient@x'", "[0, 1)"]),
        (["--strategies", "gradient@1"], ["--strategies", "[0, 1)"]),
        (["--strategies", "gradient@"], ["--strategies", "give a share after @"]),
    ],
)
def test_bad_input_exits_2_before_any_work(extra, parts, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["shortcut", "--storage", str(tmp_path / "root"), *extra])
    except SystemExit as exit_:  # argparse's own errors (a non-integer --epochs)
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert all(part in err for part in parts), err
    assert list(tmp_path.iterdir()) == []


def test_rrr_gets_a_row_scored_like_the_others(tmp_path, capsys):
    argv = ["shortcut", "--seeds", "0", "--epochs", "1", "--methods", "rrr", "--limit", "20"]
    assert main([*argv, "--device", "cpu", "--name", "rrr", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rrr seed 0: follows" in out and "on digits_shortcut" in out
    row = read_leaderboard(str(tmp_path), "rrr").to_dict("records")[0]
    assert row["trial_id"] == "rrr-seed0" and row["method"] == "rrr" and row["status"] == "ok"
    assert 0.0 <= row["shortcut_follow_rate"] <= 1.0 and 0.0 <= row["shortcut_acc"] <= 1.0
    config = json.loads(row["config"])
    assert config["reg_weight"] == 1.0 and config["train_share"] == 0.97


def test_the_decoy_benchmark_plans_its_own_name_share_and_eps(tmp_path):
    plan = ShortcutPlan.create(
        dataset="mnist5k_decoy", storage=str(tmp_path), methods="erm,control,rrr",
        rrr_reg_weight=0.5,
    )  # fmt: skip
    assert plan.name == "shortcut-mnist5k_decoy" and plan.request.train_share == 1.0
    assert plan.eval_eps == 0.3 and plan.eval_config(0).eps == (0.3,)
    models = {m.label: m for m in plan_models(plan) if m.seed == 0}
    assert set(models) == {"erm", "control", "rrr"}
    assert all(m.config.dataset == "mnist5k_decoy" for m in models.values())
    assert models["control"].train_share == CONTROL_SHARE and models["rrr"].train_share == 1.0
    assert models["rrr"].config.options.reg_weight == 0.5
    default = ShortcutPlan.create(storage=str(tmp_path))
    assert (default.name, default.dataset, default.request.train_share) == (
        "shortcut", "digits_shortcut", 0.97,
    )  # fmt: skip
    assert "rrr" in default.request.methods


def test_the_decoy_control_draws_random_shades_and_the_registry_is_restored():
    def coded() -> float:
        train = load_dataset("mnist5k_decoy").train
        return (planted_class(train) == train.labels).float().mean().item()

    with _train_share(CONTROL_SHARE, "mnist5k_decoy"):
        assert abs(coded() - CONTROL_SHARE) < 0.01
    assert coded() == 1.0


def test_the_decoy_benchmark_scores_rrr_on_the_swatch(tmp_path, capsys):
    argv = ["shortcut", "--dataset", "mnist5k_decoy", "--seeds", "0", "--epochs", "1"]
    argv += ["--methods", "rrr", "--limit", "20", "--device", "cpu", "--storage", str(tmp_path)]
    assert main(argv) == 0
    assert "on mnist5k_decoy (train share 1" in capsys.readouterr().out
    row = read_leaderboard(str(tmp_path), "shortcut-mnist5k_decoy").to_dict("records")[0]
    assert row["dataset"] == "mnist5k_decoy" and row["status"] == "ok"
    assert 0.0 <= row["shortcut_follow_rate"] <= 1.0 and row["shortcut_acc"] > 0.3


def test_strategies_take_a_global_share_and_the_oracle_always_runs_first(tmp_path):
    plan = ShortcutPlan.create(
        storage=str(tmp_path), methods="erm,lgr,rrr", seeds="0",
        strategies="gradient@0.30,low_relevance+gradient,gradient@0.3",
    )  # fmt: skip
    assert plan.request.strategies == ("gradient@0.3", "low_relevance+gradient")
    labels = [m.label for m in plan_models(plan)]
    assert labels == [
        "erm", "lgr:annotated", "lgr:gradient@0.3", "lgr:low_relevance+gradient", "rrr",
    ]  # fmt: skip
    models = {m.label: m for m in plan_models(plan)}
    global_ = models["lgr:gradient@0.3"]
    assert global_.config.options.spurious == ("gradient",)
    assert global_.config.options.global_mask_share == 0.3
    assert global_.trial_id == "lgr-gradient-global0.3-seed0"
    assert models["lgr:low_relevance+gradient"].config.options.global_mask_share is None
    assert oracle_trial(0) == models["lgr:annotated"].trial_id


@pytest.mark.parametrize(
    ("erm", "oracle", "value", "expected"),
    [
        (0.40, 0.05, 0.05, 1.0),  # follow rate: as low as the oracle's
        (0.40, 0.05, 0.40, 0.0),  # no better than ERM
        (0.40, 0.05, 0.50, -0.1 / 0.35),  # worse than ERM: negative
        (0.55, 0.90, 0.725, 0.5),  # accuracy: half way from ERM to the oracle
        (0.55, 0.90, 0.95, 0.4 / 0.35),  # better than the oracle: above 1
    ],
)
def test_the_share_of_the_oracle_gain(erm, oracle, value, expected):
    assert oracle_share(erm, oracle, value) == pytest.approx(expected)


def test_no_share_when_the_oracle_does_not_move_or_a_value_is_missing():
    assert oracle_share(0.007, 0.009, 0.006) is None  # mnist5k_decoy: no shortcut to remove
    assert oracle_share(0.3, 0.1, float("nan")) is None
    assert oracle_share(None, 0.1, 0.2) is None


def _write(plan, model, follow: float, acc: float) -> None:
    scores = {"shortcut_follow_rate": follow, "shortcut_acc": acc}
    scores.update(_oracle_shares(plan, model, scores))
    append_row(plan.root, _row(plan, model, model.config.to_dict(), status="ok", wall_s=1.0,
                               scores=scores))  # fmt: skip


def test_rows_summary_and_leaderboard_carry_the_share_of_the_oracle_gain(tmp_path, capsys):
    """Real rows through the benchmark's writer (no training): each row after its
    seed's ERM and oracle rows gets its share; the summary's is a ratio of the means."""
    plan = ShortcutPlan.create(
        storage=str(tmp_path), methods="erm,control,lgr,rrr", seeds="0,1",
        strategies="gradient", name="shares",
    )  # fmt: skip
    scores = {  # (follow rate, accuracy) per label and seed
        "erm": [(0.40, 0.55), (0.30, 0.65)],
        "control": [(0.0, 0.96), (0.01, 0.95)],
        "lgr:annotated": [(0.05, 0.90), (0.10, 0.85)],
        "lgr:gradient": [(0.30, 0.60), (0.20, 0.75)],
        "rrr": [(0.10, 0.80), (0.12, 0.82)],
    }
    for model in plan_models(plan):
        _write(plan, model, *scores[model.label][model.seed])
    rows = read_leaderboard(plan.root, "shares").set_index("trial_id")
    assert rows.loc["lgr-gradient-seed0", "oracle_follow_share"] == pytest.approx(0.1 / 0.35)
    assert rows.loc["lgr-gradient-seed1", "oracle_acc_share"] == pytest.approx(0.1 / 0.2)
    assert rows.loc["rrr-seed1", "oracle_follow_share"] == pytest.approx(0.18 / 0.2)
    for trial in ("erm-seed0", "control-seed1", "lgr-annotated-seed0"):
        assert pd.isna(rows.loc[trial, "oracle_follow_share"]), trial

    summary = summarize(read_leaderboard(plan.root, "shares"), plan_models(plan))
    shares = summary.set_index("model")
    assert shares.loc["lgr:gradient", "oracle_follow_share"] == pytest.approx(
        (0.35 - 0.25) / (0.35 - 0.075)
    )
    assert shares.loc["rrr", "oracle_acc_share"] == pytest.approx((0.81 - 0.60) / (0.875 - 0.60))
    assert pd.isna(shares.loc["lgr:annotated", "oracle_acc_share"])
    table = format_summary(summary)
    assert "oracle share: follow" in table
    assert f"{100 * (0.1 / 0.275):.0f}%" in table.splitlines()[-2]  # lgr:gradient's row

    report = {
        line.split(" | ")[0]: line for line in shortcut_table(rows.reset_index()).splitlines()
    }
    assert "share of the oracle's gain" in report["| model"]
    assert f"| {100 * (0.1 / 0.275):.0f}% |" in report["| LGR (gradient)"]
    assert "| RRR" in report and "| - | - |" in report["| LGR (annotated)"]

    assert main(["leaderboard", "--storage", str(tmp_path), "--sweep", "shares"]) == 0
    out = capsys.readouterr().out
    assert "oracle_follow_share" in out and "oracle_acc_share" in out
    assert f"{100 * 0.1 / 0.35:.1f}%" in out  # a share, shown as a percentage
