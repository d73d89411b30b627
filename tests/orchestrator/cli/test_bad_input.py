"""Bad input names what the user wrote: a spec file's key path as the YAML has it (not a
made-up flag), and a results root that does not exist is an error, not an empty result.
Each is one line on stderr and exit code 2, before any Ray work."""

from __future__ import annotations

import yaml

from orchestrator.cli import main


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_bad_spec_key_is_named_by_its_yaml_path(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    text = {
        "name": "bad",
        "method": "sgt",
        "search": {"mask_ratio": {"uniform": [0.8, 0.2]}},
        "eval": {"eval_eps": 0.1},
    }
    spec.write_text(yaml.safe_dump(text))
    assert main(["sweep", str(spec), "--storage", str(tmp_path / "r")]) == 2
    line = _error_line(capsys)
    assert f"{spec}: search.mask_ratio.uniform: low must be < high" in line, line
    assert "--search" not in line
    assert not (tmp_path / "r").exists()  # nothing written


def test_an_unknown_spec_key_is_named_by_its_yaml_path(tmp_path, capsys):
    spec = tmp_path / "typo.yaml"
    spec.write_text(yaml.safe_dump({"name": "t", "method": "sgt", "trian": {"epochs": 2}}))
    assert main(["sweep", str(spec), "--storage", str(tmp_path / "r")]) == 2
    line = _error_line(capsys)
    assert f"{spec}: trian: unknown key" in line, line


def test_a_missing_results_root_exits_2(tmp_path, capsys):
    missing = tmp_path / "no-such-root"
    assert main(["leaderboard", "--storage", str(missing)]) == 2
    line = _error_line(capsys)
    assert line == f"limelight leaderboard: error: --storage: {missing} does not exist " + (
        "(the results root of a sweep)"
    )
    assert main(["sweep", "--best", "demo", "--storage", str(missing)]) == 2
    assert "--storage" in _error_line(capsys)


def test_an_empty_results_root_has_no_rows(tmp_path, capsys):
    assert main(["leaderboard", "--storage", str(tmp_path)]) == 0
    assert "no rows found" in capsys.readouterr().out
