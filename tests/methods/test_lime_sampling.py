"""LIME mask samplers: i.i.d. parity, the shared estimand, seeds, mask invariants."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from methods.lime import LimeSettings, fit_surrogate
from methods.lime_sampling import (
    SAMPLERS,
    design_order,
    generator_seed,
    iid_masks,
    sample_masks,
)
from methods.options import ConfigError

SEGMENTS = 12
SETTINGS = LimeSettings()


def _benchmark():
    """benchmarks/lime_efficiency.py as a module (benchmarks/ is not a package)."""
    name = "lime_efficiency_under_test"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[2] / "benchmarks" / "lime_efficiency.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# A fixed, cheap nonlinear target of the mask: a sigmoid of main effects and pairwise
# interactions, standing in for a network's class probability.
_RNG = np.random.default_rng(0)
_MAIN = 0.6 * _RNG.normal(size=SEGMENTS)
_PAIRS = np.triu(_RNG.normal(scale=0.5, size=(SEGMENTS, SEGMENTS)), 1)


def _target(masks: np.ndarray) -> np.ndarray:
    logit = -2.0 + masks @ _MAIN + np.einsum("ni,ij,nj->n", masks, _PAIRS, masks)
    return 1.0 / (1.0 + np.exp(-logit))


def _estimand(num_samples: int) -> np.ndarray:
    """LIME's coefficients at n samples in expectation over i.i.d. masks, exactly: the
    all-ones row at weight 1 plus every one of the 2^S masks at weight (n - 1) / 2^S."""
    every = ((np.arange(2**SEGMENTS)[:, None] >> np.arange(SEGMENTS)) & 1).astype(float)
    masks = np.vstack([np.ones((1, SEGMENTS)), every])
    rows = np.concatenate([[1.0], np.full(2**SEGMENTS, (num_samples - 1) / 2**SEGMENTS)])
    return fit_surrogate(masks, _target(masks), SETTINGS, rows)[0]


def _fit(sampler: str, num_samples: int, seed: int, *, corrected: bool = True) -> np.ndarray:
    masks, rows = sample_masks(sampler, SEGMENTS, num_samples, seed, 3)
    z = masks.numpy().astype(np.float64)
    return fit_surrogate(z, _target(z), SETTINGS, rows if corrected else None)[0]


def _relative(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))


# ----------------------------------------------------------------------------- (a) parity


@pytest.mark.parametrize(
    ("segments", "samples", "seed", "index"), [(16, 63, 0, 0), (49, 1000, 3, 17)]
)
def test_iid_is_methods_lime_bit_for_bit(segments, samples, seed, index):
    masks, rows = sample_masks("iid", segments, samples, seed, index)
    assert rows is None
    assert torch.equal(masks, iid_masks(segments, samples, seed, index))


def test_unweighted_fit_is_fit_surrogate():
    masks, _ = sample_masks("iid", SEGMENTS, 300, 1, 2)
    z = masks.numpy().astype(np.float64)
    ours = fit_surrogate(z, _target(z), SETTINGS)
    theirs = fit_surrogate(z, _target(z), SETTINGS)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12, atol=1e-14)
    assert ours[1:] == pytest.approx(theirs[1:], rel=1e-12)


def test_row_weights_act_as_repeated_rows():
    # Weight 2 on a row must equal that row appearing twice: the correction multiplies
    # the kernel weight and nothing else.
    masks, _ = sample_masks("iid", SEGMENTS, 200, 4, 0)
    z = masks.numpy().astype(np.float64)
    rows = np.ones(len(z))
    rows[5:40] = 2.0
    weighted = fit_surrogate(z, _target(z), SETTINGS, rows)
    repeated = np.vstack([z, z[5:40]])
    plain = fit_surrogate(repeated, _target(repeated), SETTINGS)
    np.testing.assert_allclose(weighted[0], plain[0], rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- (b) estimand


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_converges_to_the_iid_estimand(sampler):
    seeds = range(6)
    errors = {
        n: np.mean([_relative(_fit(sampler, n, seed), _estimand(n)) for seed in seeds])
        for n in (64, 4096)
    }
    assert errors[4096] < errors[64] / 3, errors
    assert errors[4096] < 0.05, errors
    # Unbiased, not merely consistent: the mean over seeds is far closer than one run.
    mean = np.mean([_fit(sampler, 4096, seed) for seed in range(8)], axis=0)
    assert _relative(mean, _estimand(4096)) < 0.02


def test_large_iid_reference_is_the_estimand():
    # What the benchmark's 10,000-sample reference stands for.
    assert _relative(_fit("iid", 10_000, 7), _estimand(10_000)) < 0.05


def test_stratified_needs_its_corrections():
    # Its strata are drawn in proportion to the kernel, not to their probability: without
    # the corrections the fit converges to another problem.
    truth = _estimand(4096)
    without = np.mean([_fit("stratified", 4096, s, corrected=False) for s in range(8)], axis=0)
    with_ = np.mean([_fit("stratified", 4096, s) for s in range(8)], axis=0)
    assert _relative(without, truth) > 3 * _relative(with_, truth)


@pytest.mark.parametrize("segments", [16, 49])
def test_stratified_corrections_average_one(segments):
    # Their mean is 1 in expectation, so the ridge penalty keeps its weight relative to
    # the data, as in i.i.d. sampling.
    rows = np.concatenate([sample_masks("stratified", segments, 1000, s, 0)[1] for s in range(5)])
    assert rows.mean() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("segments", [16, 49])
def test_orthogonal_design_blocks_are_balanced_and_orthogonal(segments):
    order = design_order(segments)
    masks, _ = sample_masks("orthogonal", segments, 1 + 2 * order, 5, 1)
    block = masks[1:].numpy().astype(np.float64) * 2 - 1  # a design and its foldover
    np.testing.assert_array_equal(block.sum(0), 0)
    np.testing.assert_array_equal(block.T @ block, 2 * order * np.eye(segments))
    np.testing.assert_array_equal(block[:order], -block[order:])


def test_paired_rows_are_complements():
    masks, _ = sample_masks("paired", 16, 101, 2, 9)
    body = masks[1:].numpy()
    np.testing.assert_array_equal(body[0::2], 1 - body[1::2])


# ----------------------------------------------------------------------------- (c) seeds


def test_same_seed_replays_the_first_rows():
    # The pitfall the benchmark avoids: a reference from the run's own seed starts with
    # the run's masks.
    small = iid_masks(49, 63, 0, 5)
    large = iid_masks(49, 10_000, 0, 5)
    assert torch.equal(small, large[:63])


@pytest.mark.parametrize(("base", "count"), [(0, 5), (3, 1), (11, 40)])
def test_reference_seed_shares_no_stream_or_row_with_runs(base, count):
    derive_seeds = _benchmark().derive_seeds
    runs, reference = derive_seeds(base, count)
    assert len(set(runs)) == count and reference not in runs
    indices = range(0, 1000, 7)
    run_streams = {generator_seed(s, i) for s in runs for i in indices}
    assert not run_streams & {generator_seed(reference, i) for i in indices}
    index = 5
    ref_rows = {row.tobytes() for row in iid_masks(49, 10_000, reference, index)[1:].numpy()}
    for sampler in SAMPLERS:
        for seed in runs[:3]:
            masks, _ = sample_masks(sampler, 49, 1000, seed, index)
            assert not ref_rows & {row.tobytes() for row in masks[1:].numpy()}, sampler


def test_derive_seeds_rejects_too_many_runs():
    derive_seeds = _benchmark().derive_seeds
    with pytest.raises(ValueError):
        derive_seeds(0, _benchmark().REFERENCE_OFFSET)


# ----------------------------------------------------------------------------- (d) masks


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize(
    ("segments", "samples"), [(16, 63), (16, 1000), (49, 125), (49, 250), (3, 2)]
)
def test_mask_invariants(sampler, segments, samples):
    masks, rows = sample_masks(sampler, segments, samples, 1, 4)
    assert masks.shape == (samples, segments) and masks.dtype == torch.uint8
    assert bool((masks[0] == 1).all())
    assert set(masks.unique().tolist()) <= {0, 1}
    if rows is not None:
        assert rows.shape == (samples,) and rows[0] == 1.0 and (rows > 0).all()
    again, rows_again = sample_masks(sampler, segments, samples, 1, 4)
    assert torch.equal(masks, again)
    assert (rows is None) == (rows_again is None)
    if rows is not None:
        np.testing.assert_array_equal(rows, rows_again)
    other, _ = sample_masks(sampler, segments, samples, 2, 4)
    assert samples < 10 or not torch.equal(masks, other)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_segment_is_kept_half_the_time(sampler):
    # Under the corrections (1 where there are none): what uniform masks give.
    masks, rows = [], []
    for seed in range(8):
        z, r = sample_masks(sampler, 16, 500, seed, 0)
        masks.append(z[1:].numpy().astype(np.float64))
        rows.append(np.ones(499) if r is None else r[1:])
    z, r = np.concatenate(masks), np.concatenate(rows)
    np.testing.assert_allclose(r @ z / r.sum(), 0.5, atol=0.04)


# ----------------------------------------------------------------------------- (e) errors


def test_unknown_sampler_names_the_field():
    with pytest.raises(ConfigError) as err:
        sample_masks("sobol", 16, 100, 0, 0)
    assert err.value.field == "sampler"
    assert "'sobol'" in err.value.message
    for name in SAMPLERS:
        assert name in err.value.message


# ----------------------------------------------------------------------------- (e) two-stage


@pytest.mark.parametrize(("segments", "budget"), [(16, 125), (16, 500), (49, 125), (49, 250)])
def test_two_stage_first_stage_is_every_levels_prefix(segments, budget):
    # Stage 2 continues the image's own orthogonal stream: no stage-1 row is wasted.
    bench = _benchmark()
    n1 = bench.stage_one_size(budget, segments)
    assert 1 < n1 <= budget / 2 + 1 and (n1 - 1) % design_order(segments) == 0
    first, draws = bench.two_stage_designs(segments, budget, 2, 7)
    levels = [n for n, _ in draws]
    assert levels[0] == n1 and budget in levels and levels == sorted(levels)
    for n, masks in draws:
        assert masks.shape == (n, segments)
        assert np.array_equal(masks[:n1], first)
        assert np.array_equal(masks, sample_masks("orthogonal", segments, n, 2, 7)[0].numpy())


@pytest.mark.parametrize(("segments", "rows"), [(16, 41), (16, 61), (49, 61), (49, 241)])
def test_jackknife_units_are_foldover_pairs(segments, rows):
    masks = sample_masks("orthogonal", segments, rows, 0, 1)[0].numpy()
    units = _benchmark().jackknife_units(rows, segments)
    covered = np.sort(np.concatenate(units))
    assert np.array_equal(covered, np.arange(1, rows))
    for unit in units:
        if len(unit) == 2:
            assert np.array_equal(masks[unit[0]], 1 - masks[unit[1]])


def test_jackknife_ratio_falls_with_samples():
    ratio = _benchmark().jackknife_noise_ratio
    small = [ratio(*_xy(33, seed), SETTINGS)[0] for seed in range(4)]
    large = [ratio(*_xy(257, seed), SETTINGS)[0] for seed in range(4)]
    assert np.median(large) < np.median(small) / 3


def _xy(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    z = sample_masks("orthogonal", SEGMENTS, rows, seed, 3)[0].numpy().astype(np.float64)
    return z, _target(z)


def test_allocate_keeps_the_mean_budget_and_the_order():
    bench = _benchmark()
    levels = bench.stage_levels(250, 49)
    n1, cap = levels[0], levels[-1]
    ratios = np.random.default_rng(0).lognormal(size=300)
    ratios[:5] = 0.0
    ratios[5] = np.inf
    sizes = bench.allocate(ratios, levels, 250)
    assert 240 <= sizes.mean() <= 250
    assert set(sizes) <= set(levels) and sizes.min() == n1 and sizes[5] == cap
    assert (sizes[:5] == n1).all()
    order = np.argsort(ratios, kind="stable")
    assert (np.diff(sizes[order]) >= 0).all()
    with pytest.raises(ValueError):
        bench.allocate(ratios, levels, int(n1) - 1)
