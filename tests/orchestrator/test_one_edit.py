"""A new hyperparameter is one field: add one line to ``SGTOptions`` and the flag, the
spec key, ``config.json``, the refusal by other methods and ASGT (whose options extend
SGT's) all follow, with no other edit.

The edit is made for real: ``methods/`` is copied, the one line is inserted into the
copy's ``methods/training/sgt.py``, and a fresh interpreter imports that copy ahead of
the repository's (no Ray: the run trains inline).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANCHOR = "class SGTOptions(Options):\n"
# The shared builder of a ">= 0 weight" option (methods/training/_options.py): default 1.
ONE_LINE = '    dummy_gain: float = _options.reg_weight("dummy term of the test")\n'

CHECKS = r"""
import json, sys
from pathlib import Path

from methods.training import build_method
from orchestrator.cli import build_parser, main
from orchestrator.config import ConfigError, TrainConfig
from orchestrator.sweeps.spec import parse_spec

out = Path(sys.argv[1])
result = {}
train = build_parser(["train"])._subparsers._group_actions[0].choices["train"]
result["flag_in_help"] = "--dummy-gain" in train.format_help()
quick = ["--epochs", "1", "--eps", "0.1", "--attacks", "pgd", "--pgd-steps", "1",
         "--limit", "20", "--eval-mode", "pgd", "--no-audit-probes", "--no-faithfulness",
         "--storage", str(out)]
def train(method, gain, out_dir):
    return main(["train", "--method", method, "--dummy-gain", gain, "--out", out_dir, *quick])

result["sgt_exit"] = train("sgt", "2.5", "sgt")
result["config_json"] = json.loads((out / "sgt" / "config.json").read_text()).get("dummy_gain")
result["erm_exit"] = train("erm", "2.5", "erm")
result["erm_wrote"] = (out / "erm").exists()
result["range_exit"] = train("sgt", "-1", "neg")
spec = {
    "name": "t", "method": ["sgt", "asgt"], "dataset": "digits",
    "train": {"epochs": 1, "dummy_gain": 3.0},
    "search": {"dummy_gain": {"uniform": [0.5, 4.0]}},
    "eval": {"eval_eps": 0.1}, "objective": {"robust_acc": "max"}, "trials": 1, "seeds": [0],
}
searched = parse_spec({**spec, "train": {"epochs": 1}})
result["spec_searches"] = sorted(searched.searched("asgt"))
try:
    parse_spec({**spec, "method": ["erm"], "search": {}})
    result["spec_erm"] = "accepted"
except ConfigError as error:
    result["spec_erm"] = error.field
result["asgt_option"] = build_method("asgt", attack_eps=0.1, dummy_gain=3.0).options.dummy_gain
result["asgt_config"] = TrainConfig.create(method="asgt", dummy_gain=0.75).to_dict()["dummy_gain"]
print(json.dumps(result))
"""


def test_one_field_in_sgt_options_reaches_every_surface(tmp_path):
    copy = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "methods", copy / "methods", ignore=skip)
    sgt = copy / "methods" / "training" / "sgt.py"
    text = sgt.read_text()
    assert text.count(ANCHOR) == 1, "SGTOptions moved: update the anchor of this test"
    sgt.write_text(text.replace(ANCHOR, ANCHOR + ONE_LINE))

    env = {**os.environ, "PYTHONPATH": f"{copy}{os.pathsep}{REPO}"}
    env.pop("LIMELIGHT_STORAGE", None)
    done = subprocess.run(
        [sys.executable, "-c", CHECKS, str(tmp_path / "results")],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["flag_in_help"]
    assert result["sgt_exit"] == 0
    assert result["config_json"] == 2.5
    assert result["erm_exit"] == 2 and not result["erm_wrote"]
    assert "--dummy-gain" in done.stderr  # the refusal names the flag
    assert result["range_exit"] == 2
    assert "dummy_gain" in result["spec_searches"]
    assert result["spec_erm"].endswith("dummy_gain")
    assert result["asgt_option"] == 3.0
    assert result["asgt_config"] == 0.75
