from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from rd_eval.analysis.stats import PairedDifference, mcnemar_exact, paired_bootstrap_ci, paired_difference


@pytest.mark.parametrize("b", [0, 1, 2, 3, 5, 8, 13, 21, 40, 77, 150])
@pytest.mark.parametrize("c", [0, 1, 2, 4, 7, 12, 25, 40, 99, 151])
def test_mcnemar_matches_scipy_binomtest(b: int, c: int) -> None:
    got = mcnemar_exact(b, c)
    if b + c == 0:
        assert got == 1.0
        return
    want = binomtest(min(b, c), b + c, 0.5).pvalue
    assert got == pytest.approx(want, rel=1e-9, abs=1e-300)
    assert mcnemar_exact(c, b) == got


def test_mcnemar_large_counts_and_numpy_ints() -> None:
    assert mcnemar_exact(np.int64(2000), np.int64(2150)) == pytest.approx(
        binomtest(2000, 4150, 0.5).pvalue, rel=1e-9
    )
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(7, 7) == 1.0


@pytest.mark.parametrize("b, c", [(-1, 3), (3, -2), (1.5, 2), (True, 2), ("3", 1), (None, 0)])
def test_mcnemar_rejects_bad_counts(b: object, c: object) -> None:
    with pytest.raises(ValueError, match="non-negative integer count"):
        mcnemar_exact(b, c)  # type: ignore[arg-type]


def test_bootstrap_ci_is_deterministic_with_seed() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2, 150)
    y = rng.integers(0, 2, 150)
    first = paired_bootstrap_ci(x, y, n_boot=2000, seed=3)
    assert paired_bootstrap_ci(x, y, n_boot=2000, seed=3) == first
    assert paired_bootstrap_ci(x, y, n_boot=2000, seed=4) != first
    low, high = first
    assert low <= float(np.mean(x - y)) <= high


def test_bootstrap_ci_leaves_global_rng_alone() -> None:
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    paired_bootstrap_ci(np.ones(10), np.zeros(10), n_boot=100)
    assert np.random.random() == expected


def test_bootstrap_ci_chunking_matches_single_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunked resampling must give a valid CI even when many chunks are used.
    import rd_eval.analysis.stats as stats

    monkeypatch.setattr(stats, "_MAX_BOOT_CELLS", 50)
    x = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1])
    y = np.array([0, 0, 1, 0, 0, 1, 0, 1, 0, 0])
    low, high = paired_bootstrap_ci(x, y, n_boot=500, seed=1)
    assert -1.0 <= low <= 0.4 <= high <= 1.0


def test_bootstrap_ci_constant_difference_is_degenerate() -> None:
    assert paired_bootstrap_ci(np.ones(20), np.zeros(20), n_boot=100) == (1.0, 1.0)
    assert paired_bootstrap_ci(np.array([1.0]), np.array([0.0]), n_boot=10) == (1.0, 1.0)


def test_bootstrap_ci_coverage_on_correlated_bernoulli_pairs() -> None:
    # Paired outcomes share a latent ability u, so txt and img are strongly correlated.
    rng = np.random.default_rng(2024)
    n_pairs, n_sims = 200, 200
    # P(img=1) after flipping 10% of image answers: 0.55 * 0.9 + 0.45 * 0.1 = 0.54.
    truth = 0.70 - (0.55 * 0.90 + 0.45 * 0.10)
    covered = 0
    for sim in range(n_sims):
        u = rng.random(n_pairs)
        txt = (u < 0.70).astype(int)
        img = (u < 0.55).astype(int)
        # Flip a few image answers independently so the pairs are not perfectly nested.
        flip = rng.random(n_pairs) < 0.10
        img = np.where(flip, 1 - img, img)
        low, high = paired_bootstrap_ci(txt, img, n_boot=1000, seed=sim)
        covered += low <= truth <= high
    coverage = covered / n_sims
    assert 0.90 <= coverage <= 0.99, coverage


def test_paired_difference_counts_on_hand_example() -> None:
    # a: 1 1 1 0 0 1 0 0 ; b: 1 0 0 1 0 1 0 0 -> both 2, a_only 2, b_only 1, neither 3
    a = np.array([1, 1, 1, 0, 0, 1, 0, 0])
    b = np.array([1, 0, 0, 1, 0, 1, 0, 0])
    res = paired_difference(a, b, n_boot=500, seed=0)
    assert isinstance(res, PairedDifference)
    assert (res.n, res.both, res.a_only, res.b_only, res.neither) == (8, 2, 2, 1, 3)
    assert res.mean_a == pytest.approx(50.0)
    assert res.mean_b == pytest.approx(37.5)
    assert res.diff == pytest.approx(12.5)
    assert res.ci_low <= res.diff <= res.ci_high
    assert res.p_mcnemar == pytest.approx(binomtest(1, 3, 0.5).pvalue)
    assert res.to_dict()["a_only"] == 2
    assert res.level == 0.95
    with pytest.raises(AttributeError):
        res.n = 3  # type: ignore[misc]


def test_paired_difference_accepts_bools_and_lists() -> None:
    res = paired_difference([True, False, True], [False, False, True], n_boot=50)
    assert (res.both, res.a_only, res.b_only, res.neither) == (1, 1, 0, 1)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.zeros(3), np.zeros(4), "same length"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "1-D"),
        (np.array([]), np.array([]), "at least one pair"),
        (np.array([0.0, np.nan]), np.zeros(2), "NaN"),
        (np.array(["a", "b"]), np.zeros(2), "numbers"),
    ],
)
def test_paired_bootstrap_ci_input_errors(x: np.ndarray, y: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        paired_bootstrap_ci(x, y, n_boot=10)
    with pytest.raises(ValueError, match=match):
        paired_difference(x, y, n_boot=10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_boot": 0}, "n_boot"),
        ({"n_boot": 2.5}, "n_boot"),
        ({"level": 1.0}, "level"),
        ({"level": 0}, "level"),
    ],
)
def test_bootstrap_argument_errors(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        paired_bootstrap_ci(np.ones(3), np.zeros(3), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        paired_difference(np.ones(3), np.zeros(3), **kwargs)  # type: ignore[arg-type]


def test_paired_difference_rejects_non_binary_outcomes() -> None:
    with pytest.raises(ValueError, match=r"b must hold only 0/1 outcomes.*position 1"):
        paired_difference(np.array([1, 0]), np.array([1, 0.5]))
    with pytest.raises(ValueError, match="a must hold only 0/1"):
        paired_difference(np.array([2, 0]), np.array([1, 0]))
