"""`limelight corrupt`: CIFAR-10-C generated from a small CIFAR-10 in its on-disk format.

The test set is 8 smooth images (coarse random colours, bilinearly upsampled): on
uniform noise every blur would look like a large change and severities would not
separate. One module-scoped run makes all 15 corruptions x 5 severities (~3 s);
other tests compare against it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import zoom

from methods.data import CIFAR10C_CORRUPTIONS, load_cifar10c, load_dataset
from methods.data import corrupt as gen
from methods.evaluate import corruption_accuracy
from methods.models import build_model
from orchestrator.cli import main
from tests.formats import write_cifar10

N = 8  # test images
# Generation needs the optional extra; install the test environment with .[dev,corrupt].
needs_extra = pytest.mark.skipif(
    importlib.util.find_spec("imagecorruptions") is None,
    reason="imagecorruptions-imaug is not installed (pip install 'limelight[corrupt]')",
)


def _smooth_images(n: int, seed: int) -> np.ndarray:
    coarse = np.random.default_rng(seed).uniform(40, 215, size=(n, 4, 4, 3))
    return np.clip(zoom(coarse, (1, 8, 8, 1), order=1), 0, 255).astype(np.uint8)


def _write_cifar(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 with the smooth images as its test batch; returns (images HWC, labels)."""
    write_cifar10(root, n=N)
    images = _smooth_images(N, seed=1)
    labels = np.arange(N) % 10
    rows = images.transpose(0, 3, 1, 2).reshape(N, 3072)  # R plane, G plane, B plane
    batch = {"batch_label": "test_batch", "data": rows, "labels": labels.tolist()}
    with open(root / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump(batch, f, protocol=2)  # the published files are protocol-2 pickles
    return images, labels


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(["corrupt", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_usage_error(code: int, err: str, *parts: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("limelight corrupt: error: ")
    for part in parts:
        assert part in lines[0], lines[0]


def _block(folder: Path, corruption: str, severity: int, n: int = N) -> np.ndarray:
    return np.load(folder / "CIFAR-10-C" / f"{corruption}.npy")[(severity - 1) * n : severity * n]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    root = tmp_path_factory.mktemp("cifar")
    images, labels = _write_cifar(root)
    return root, images, labels


@pytest.fixture(scope="module")
def full(cifar) -> tuple[Path, str]:
    """All 15 corruptions x 5 severities on the 8 images, through the command."""
    root = cifar[0]
    assert main(["corrupt", "--data-dir", str(root)]) == 0
    return root


# ----------------------------------------------------------------------------- layout


@needs_extra
def test_full_run_writes_the_published_layout(full, cifar) -> None:
    labels = cifar[2]
    folder = full / "CIFAR-10-C"
    stored = np.load(folder / "labels.npy")
    assert stored.dtype == np.uint8 and np.array_equal(stored, np.tile(labels, 5))
    manifest = json.loads((folder / "limelight_corrupt.json").read_text())
    for corruption in CIFAR10C_CORRUPTIONS:
        array = np.load(folder / f"{corruption}.npy")
        assert array.shape == (5 * N, 32, 32, 3) and array.dtype == np.uint8
        for severity in (1, 5):
            split = load_cifar10c(full, corruption, severity)
            expected = torch.from_numpy(_block(full, corruption, severity)).permute(0, 3, 1, 2)
            assert torch.equal(split.images, expected)
            assert torch.equal(split.labels, torch.from_numpy(labels))
        assert manifest[corruption]["seed"] == 0 and manifest[corruption]["images"] == N
    # finished blocks are dropped, temporary files renamed: nothing else is left
    names = {p.name for p in folder.iterdir()}
    assert names == {f"{c}.npy" for c in CIFAR10C_CORRUPTIONS} | {
        "labels.npy",
        "limelight_corrupt.json",
    }


@needs_extra
def test_severity_5_changes_images_more_than_severity_1(full, cifar) -> None:
    clean = cifar[1].astype(np.float64)
    for corruption in CIFAR10C_CORRUPTIONS:
        if corruption == "elastic_transform":
            # The recipe's severity 1 is a pure random affine warp (control points moved
            # by up to 2.56 px), its largest change in pixel terms; later severities swap
            # the warp for a small local displacement field.
            continue
        mild = np.abs(_block(full, corruption, 1) - clean).mean()
        severe = np.abs(_block(full, corruption, 5) - clean).mean()
        assert severe > mild, (corruption, mild, severe)


@needs_extra
def test_parameters_are_cifar10c_not_imagenet_c(full, cifar) -> None:
    """gaussian_noise's std at severity 1 is CIFAR-10-C's 0.04 (ImageNet-C's is 0.08);
    contrast scales deviations from the channel mean by 0.75 at severity 1."""
    clean = cifar[1].astype(np.float64)
    noise = _block(full, "gaussian_noise", 1) - clean
    assert noise.std() == pytest.approx(0.04 * 255, rel=0.1)
    x = clean / 255
    means = x.mean(axis=(1, 2), keepdims=True)
    expected = (np.clip((x - means) * 0.75 + means, 0, 1) * 255).astype(np.uint8)
    assert np.abs(_block(full, "contrast", 1).astype(int) - expected).max() <= 1


@needs_extra
def test_cifar10c_data_set_and_evaluation_read_the_output(full) -> None:
    dataset = load_dataset("cifar10c", data_dir=full)
    assert dataset.corruption_root == full.absolute()
    torch.manual_seed(0)
    model = build_model("tiny_cnn", dataset.input_shape, 10, dataset.mean, dataset.std).eval()
    # two corruptions at two severities: each forward pass costs ~0.1 s on a busy CPU
    points = corruption_accuracy(
        model, dataset.corruption_root, corruptions=("fog", "pixelate"), severities=(1, 5)
    )
    assert [(p.corruption, p.severity) for p in points] == [
        ("fog", 1),
        ("fog", 5),
        ("pixelate", 1),
        ("pixelate", 5),
    ]
    assert all(0.0 <= p.acc <= 1.0 for p in points)


def test_glass_shift_is_the_scripts_tuple_swap() -> None:
    """The script's loop `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on NumPy views."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    dx, dy = rng.integers(-1, 1, size=(2, 30, 30))
    looped = x.copy()
    for h in range(31, 1, -1):
        for w in range(31, 1, -1):
            hp, wp = h + dy[h - 2, w - 2], w + dx[h - 2, w - 2]
            looped[h, w], looped[hp, wp] = looped[hp, wp], looped[h, w]
    assert np.array_equal(gen._glass_shift(x, dx, dy), looped)
    assert not np.array_equal(looped, x)


def _imagemagick() -> str | None:
    """The `convert` of a real ImageMagick, or None (some machines carry a stand-in)."""
    for candidate in (shutil.which("convert"), "/usr/bin/convert"):
        if candidate and Path(candidate).exists():
            done = subprocess.run([candidate, "-version"], capture_output=True, text=True)
            if done.returncode == 0 and done.stdout.startswith("Version: ImageMagick"):
                return candidate
    return None


@needs_extra
@pytest.mark.skipif(_imagemagick() is None, reason="ImageMagick is not installed")
def test_motion_blur_matches_imagemagick(tmp_path) -> None:
    """The script blurs through ImageMagick (Wand); limelight through imagecorruptions."""
    from PIL import Image

    convert = _imagemagick()
    colour = _smooth_images(2, seed=4)
    rng = np.random.default_rng(0)
    flakes = (np.clip(rng.normal(0.3, 0.3, (32, 32)), 0, 1) * 255).astype(np.uint8)
    cases = [(colour[0], 6, 1, -40.0), (colour[1], 9, 2.5, 25.0), (flakes, 14, 12, -99.0)]
    for image, radius, sigma, angle in cases:
        Image.fromarray(image).save(tmp_path / "in.png")
        blur = f"{radius}x{sigma}+{angle}"
        subprocess.run([convert, tmp_path / "in.png", "-motion-blur", blur, tmp_path / "out.png"],
                       check=True)  # fmt: skip
        reference = np.asarray(
            Image.open(tmp_path / "out.png").convert(Image.open(tmp_path / "in.png").mode)
        )
        ours = gen._motion_blur(image, radius, sigma, angle)
        difference = np.abs(ours.astype(int) - reference.astype(int))
        assert difference.max() <= 1 and difference.mean() < 0.02, (blur, difference.mean())
        change = np.abs(ours.astype(int) - image).mean()  # the blur itself
        assert change > 2 and change > 50 * difference.mean()


# ----------------------------------------------------------------------------- seeding


@needs_extra
def test_same_seed_reproduces_and_a_limit_gives_the_first_rows(full, cifar, tmp_path, capsys):
    root = cifar[0]
    chosen = "gaussian_noise,contrast,glass_blur,frost"
    argv = ["--data-dir", str(root), "--corruptions", chosen, "--limit", "3"]
    assert _run([*argv, "--out", str(tmp_path / "a")], capsys)[0] == 0
    assert _run([*argv, "--out", str(tmp_path / "b"), "--seed", "1"], capsys)[0] == 0
    for corruption in chosen.split(","):
        for severity in (1, 3, 5):
            first = _block(tmp_path / "a", corruption, severity, n=3)
            assert np.array_equal(first, _block(full, corruption, severity)[:3])
            other = _block(tmp_path / "b", corruption, severity, n=3)
            # contrast draws nothing: only the random corruptions depend on the seed
            assert np.array_equal(other, first) == (corruption == "contrast")


@needs_extra
def test_workers_make_the_same_files(full, cifar, tmp_path) -> None:
    _, images, labels = cifar
    report = gen.generate_cifar10c(
        images, labels, tmp_path, corruptions=("snow", "shot_noise"), workers=2, chunk=3
    )
    assert report.written == ("shot_noise", "snow") and report.blocks == 10
    for corruption in report.written:
        ours = np.load(tmp_path / "CIFAR-10-C" / f"{corruption}.npy")
        assert np.array_equal(ours, np.load(full / "CIFAR-10-C" / f"{corruption}.npy"))


# ----------------------------------------------------------------------------- files


@needs_extra
def test_existing_files_are_kept_unless_overwrite(cifar, tmp_path, capsys) -> None:
    argv = ["--data-dir", str(cifar[0]), "--out", str(tmp_path), "--corruptions", "shot_noise"]
    path = tmp_path / "CIFAR-10-C" / "shot_noise.npy"
    assert _run([*argv, "--limit", "4"], capsys)[0] == 0
    before, stamp = path.read_bytes(), path.stat().st_mtime_ns
    code, out, _ = _run([*argv, "--limit", "4", "--seed", "5"], capsys)
    assert code == 0 and "1 already there" in out and "0 blocks computed" in out
    assert path.stat().st_mtime_ns == stamp
    code, out, _ = _run([*argv, "--limit", "4", "--seed", "5", "--overwrite"], capsys)
    assert code == 0 and "1 written" in out and path.read_bytes() != before


@needs_extra
def test_some_severities_wait_for_the_rest(full, cifar, tmp_path, capsys) -> None:
    argv = ["--data-dir", str(cifar[0]), "--out", str(tmp_path), "--corruptions", "fog"]
    code, out, _ = _run([*argv, "--severities", "1,2"], capsys)
    assert code == 0 and "fog: waiting for severities 3,4,5" in out
    folder = tmp_path / "CIFAR-10-C"
    assert not (folder / "fog.npy").exists()
    assert len(list((folder / ".parts").glob("fog-*.npy"))) == 2
    code, out, _ = _run([*argv, "--severities", "3"], capsys)
    assert code == 0 and "fog: waiting for severities 4,5" in out
    code, out, _ = _run([*argv, "--severities", "5,4"], capsys)
    assert code == 0 and "1 written" in out and "2 blocks computed" in out
    assert np.array_equal(np.load(folder / "fog.npy"), np.load(full / "CIFAR-10-C" / "fog.npy"))
    assert not (folder / ".parts").exists()


@needs_extra
def test_overwriting_one_severity_keeps_the_others(cifar, tmp_path, capsys) -> None:
    argv = ["--data-dir", str(cifar[0]), "--out", str(tmp_path), "--corruptions", "fog"]
    assert _run(argv, capsys)[0] == 0
    before = np.load(tmp_path / "CIFAR-10-C" / "fog.npy")
    assert _run([*argv, "--severities", "2", "--seed", "9", "--overwrite"], capsys)[0] == 0
    after = np.load(tmp_path / "CIFAR-10-C" / "fog.npy")
    changed = [not np.array_equal(after[s * N : (s + 1) * N], before[s * N : (s + 1) * N])
               for s in range(5)]  # fmt: skip
    assert changed == [False, True, False, False, False]
    manifest = json.loads((tmp_path / "CIFAR-10-C" / "limelight_corrupt.json").read_text())
    assert manifest["fog"]["severities_kept_from_the_previous_file"] == [1, 3, 4, 5]


@needs_extra
def test_an_interrupted_run_leaves_no_partial_file_and_resumes(full, cifar, tmp_path) -> None:
    _, images, labels = cifar
    calls = []

    def interrupt_third_block(done: int) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gen.generate_cifar10c(
            images, labels, tmp_path, corruptions=("fog",), progress=interrupt_third_block
        )
    folder = tmp_path / "CIFAR-10-C"
    assert not (folder / "fog.npy").exists()
    assert sorted(p.name.split("-")[1] for p in (folder / ".parts").iterdir()) == ["s1", "s2"]
    assert not [p for p in folder.rglob("*") if "tmp" in p.name]
    report = gen.generate_cifar10c(images, labels, tmp_path, corruptions=("fog",))
    assert report.written == ("fog",) and report.blocks == 3  # two blocks reused
    assert np.array_equal(np.load(folder / "fog.npy"), np.load(full / "CIFAR-10-C" / "fog.npy"))


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "fog.npy"
    np.save(target, np.arange(3))
    unpicklable = np.array([lambda: None], dtype=object)  # np.save fails after the header
    with pytest.raises((pickle.PicklingError, AttributeError)):
        gen._atomic_save(target, unpicklable)
    assert [p.name for p in tmp_path.iterdir()] == ["fog.npy"]
    assert np.array_equal(np.load(target), np.arange(3))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("argv", "parts"),
    [
        (["--corruptions", "fog,smog"], ["--corruptions", "'smog'", "gaussian_noise", "jpeg"]),
        (["--corruptions", ","], ["--corruptions", "at least one"]),
        (["--severities", "0,6"], ["--severities", "1,2,3,4,5", "'0,6'"]),
        (["--severities", "high"], ["--severities", "'high'"]),
        (["--limit", "0"], ["--limit", ">= 1"]),
        (["--workers", "0"], ["--workers", ">= 1"]),
        (["--seed", "-1"], ["--seed", ">= 0"]),
    ],
)
def test_bad_flags_are_one_line_exit_2(argv, parts, cifar, tmp_path, capsys) -> None:
    code, _, err = _run(["--data-dir", str(cifar[0]), "--out", str(tmp_path), *argv], capsys)
    _assert_usage_error(code, err, *parts)
    assert list(tmp_path.iterdir()) == []  # refused before writing anything


@needs_extra
def test_missing_cifar10_names_the_folder_and_the_fetch(tmp_path, capsys) -> None:
    code, _, err = _run(["--data-dir", str(tmp_path / "none")], capsys)
    _assert_usage_error(
        code, err, str(tmp_path / "none"), "CIFAR-10", "limelight corrupt", "--download"
    )
    assert not (tmp_path / "none").exists()


def test_missing_extra_names_the_install_command(cifar, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)  # import now fails
    gen._extra.cache_clear()
    try:
        code, _, err = _run(["--data-dir", str(cifar[0]), "--out", str(tmp_path)], capsys)
    finally:
        monkeypatch.undo()
        gen._extra.cache_clear()
    _assert_usage_error(code, err, "imagecorruptions-imaug", "pip install 'limelight[corrupt]'")
    assert list(tmp_path.iterdir()) == []


@needs_extra
def test_a_file_of_another_size_is_refused(cifar, tmp_path, capsys) -> None:
    argv = ["--data-dir", str(cifar[0]), "--out", str(tmp_path), "--corruptions", "contrast"]
    assert _run([*argv, "--limit", "3"], capsys)[0] == 0
    path = tmp_path / "CIFAR-10-C" / "contrast.npy"
    code, _, err = _run(argv, capsys)
    _assert_usage_error(code, err, str(path), "15 rows", "40 rows", "--overwrite")
    assert _run([*argv, "--overwrite"], capsys)[0] == 0
    assert np.load(path).shape[0] == 5 * N


def test_wired_into_the_limelight_command(capsys) -> None:
    from orchestrator.cli import build_parser

    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert "corrupt" in verbs.choices
    code = main(["corrupt", "--corruptions", "smog"])
    _assert_usage_error(code, capsys.readouterr().err, "--corruptions", "'smog'")
