"""rd_eval.analysis.divergence against scipy (the oracle) and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import pointbiserialr
from scipy.stats import t as student_t

from rd_eval.analysis.divergence import (
    band_sites,
    divergence_correctness_correlation,
    jsd_base2,
    layer_summary,
    modality_separation,
    selection_distribution,
    student_t_two_sided_p,
)
from rd_eval.analysis.stats import paired_bootstrap_ci


def test_jsd_matches_scipy_on_random_distributions() -> None:
    rng = np.random.default_rng(0)
    p = rng.random((50, 16))
    q = rng.random((50, 16))
    p[::3, :5] = 0.0  # zeros on one side only
    q[1::4, 8:] = 0.0
    expected = np.array([jensenshannon(a, b, base=2) ** 2 for a, b in zip(p, q, strict=True)])
    got = jsd_base2(p, q)
    assert got.shape == (50,)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert ((got >= 0) & (got <= 1)).all()


def test_jsd_normalises_inputs_and_is_symmetric() -> None:
    p = np.array([3.0, 1.0, 0.0, 4.0])
    q = np.array([1.0, 1.0, 1.0, 1.0])
    assert jsd_base2(p, q) == pytest.approx(jsd_base2(p / p.sum(), q / 4))
    assert jsd_base2(p, q) == pytest.approx(jsd_base2(q, p))
    assert isinstance(jsd_base2(p, q), float)


def test_identical_is_zero_and_disjoint_is_one() -> None:
    p = np.array([[1.0, 2.0, 3.0, 0.0], [5.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(jsd_base2(p, 2 * p), [0.0, 0.0], atol=1e-15)
    assert jsd_base2([1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 7.0]) == 1.0


def test_zero_mass_row_gives_nan_and_others_are_unaffected() -> None:
    p = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    q = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    got = jsd_base2(p, q)
    assert math.isnan(got[0]) and got[1] == pytest.approx(0.0)
    assert math.isnan(jsd_base2(q[0], np.zeros(3)))


@pytest.mark.parametrize(
    ("p", "q", "match"),
    [
        ([1.0, -1.0], [1.0, 1.0], "non-negative"),
        ([1.0, np.nan], [1.0, 1.0], "NaN"),
        ([1.0, 1.0, 1.0], [1.0, 1.0], "same number of categories"),
        (["a", "b"], [1.0, 1.0], "numbers"),
    ],
)
def test_jsd_rejects_bad_input(p: list, q: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        jsd_base2(p, q)


def test_selection_distribution_and_pair_jsd() -> None:
    counts = np.array([[2, 2, 0, 0], [0, 0, 0, 0], [1, 3, 0, 4]])
    dist = selection_distribution(counts)
    np.testing.assert_allclose(dist[0], [0.5, 0.5, 0, 0])
    assert np.isnan(dist[1]).all()
    np.testing.assert_allclose(dist[2].sum(), 1.0)
    other = np.array([[0, 0, 3, 3], [1, 1, 1, 1], [1, 3, 0, 4]])
    got = jsd_base2(counts, other)  # a pair's JSD per site: [S, E] against [S, E]
    assert got[0] == 1.0 and math.isnan(got[1]) and got[2] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="do not broadcast"):
        jsd_base2(counts, other[:2])
    with pytest.raises(ValueError, match=r"\[sites, experts\]"):
        selection_distribution(np.ones((2, 3, 4)))


def test_modality_separation_pools_documents_before_comparing() -> None:
    image = np.array([[[4, 0, 0, 0]], [[0, 4, 0, 0]]])  # 2 docs, 1 site, 4 experts
    text = np.array([[[0, 0, 4, 0]], [[4, 0, 0, 4]]])
    pooled_img, pooled_txt = np.array([4, 4, 0, 0]), np.array([4, 0, 4, 4])
    np.testing.assert_allclose(modality_separation(image, text), [jsd_base2(pooled_img, pooled_txt)])
    np.testing.assert_allclose(modality_separation(image[0], text[0]), [1.0])


def test_correlation_matches_scipy_pointbiserialr() -> None:
    rng = np.random.default_rng(3)
    for n in (3, 7, 40, 500):
        y = (rng.random(n) < 0.4).astype(int)
        y[0], y[1] = 0, 1  # both outcomes present
        x = rng.random(n) + 0.3 * y
        got = divergence_correctness_correlation(x, y)
        ref = pointbiserialr(y, x)
        assert got.n == n and got.n_correct == int(y.sum())
        assert got.r == pytest.approx(ref.statistic, abs=1e-12)
        assert got.p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


def test_correlation_undefined_cases_are_nan() -> None:
    assert math.isnan(divergence_correctness_correlation([0.1, 0.2, 0.3], [1, 1, 1]).r)  # constant outcome
    assert math.isnan(divergence_correctness_correlation([0.2, 0.2, 0.2], [0, 1, 1]).r)  # constant JSD
    assert math.isnan(divergence_correctness_correlation([0.1, 0.2], [0, 1]).p)  # n < 3
    perfect = divergence_correctness_correlation([0.1, 0.1, 0.9, 0.9], [0, 0, 1, 1])
    assert perfect.r == pytest.approx(1.0) and perfect.p == 0.0
    with pytest.raises(ValueError, match="0/1"):
        divergence_correctness_correlation([0.1, 0.2, 0.3], [0, 1, 2])


@pytest.mark.parametrize(("t", "df"), [(0.0, 5), (0.5, 3), (2.1, 10), (-4.0, 1), (8.0, 200), (1.96, 1e6)])
def test_student_t_p_matches_scipy(t: float, df: float) -> None:
    assert student_t_two_sided_p(t, df) == pytest.approx(2 * student_t.sf(abs(t), df), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, -6.0, 50.0, 1e4])
def test_student_t_p_matches_closed_forms_for_one_and_two_df(t: float) -> None:
    # Independent of scipy: df = 1 is the Cauchy distribution, p = 1 - (2/pi) atan|t|; df = 2 has
    # p = 1 - |t| / sqrt(2 + t^2), written here as 2 / (sqrt(2 + t^2) (sqrt(2 + t^2) + |t|)) to keep its tail.
    cauchy = 1.0 - 2.0 / math.pi * math.atan(abs(t)) if abs(t) < 10 else 2.0 / math.pi * math.atan(1.0 / abs(t))
    root = math.sqrt(2.0 + t * t)
    assert student_t_two_sided_p(t, 1) == pytest.approx(cauchy, rel=1e-12)
    assert student_t_two_sided_p(t, 2) == pytest.approx(2.0 / (root * (root + abs(t))), rel=1e-12)


@pytest.mark.parametrize(
    ("t", "df", "p"),
    [(12.706, 1, 0.05), (4.303, 2, 0.05), (2.571, 5, 0.05), (2.228, 10, 0.05), (2.042, 30, 0.05),
     (3.169, 10, 0.01), (2.750, 30, 0.01), (1.812, 10, 0.10), (4.587, 10, 0.001)],
)
def test_student_t_p_at_printed_table_critical_values(t: float, df: int, p: float) -> None:
    # Two-sided critical values as printed in standard t tables (3 decimals), so the p-values agree to the
    # table's rounding.
    assert student_t_two_sided_p(t, df) == pytest.approx(p, rel=2e-3)


@pytest.mark.parametrize(("t", "df"), [(0.5, 3), (2.1, 10), (8.0, 200), (40.0, 3), (1.96, 1e6), (3.3, 7.5)])
def test_student_t_p_matches_mpmath_incomplete_beta(t: float, df: float) -> None:
    # The definition, p = I_{df/(df+t^2)}(df/2, 1/2), evaluated by mpmath at 50 digits: another implementation.
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    x = mpmath.mpf(df) / (mpmath.mpf(df) + mpmath.mpf(t) ** 2)
    expected = float(mpmath.betainc(mpmath.mpf(df) / 2, mpmath.mpf(1) / 2, 0, x, regularized=True))
    assert student_t_two_sided_p(t, df) == pytest.approx(expected, rel=1e-9)


def test_student_t_p_edges_and_bad_df() -> None:
    assert student_t_two_sided_p(0.0, 4) == 1.0
    assert student_t_two_sided_p(math.inf, 4) == 0.0 and student_t_two_sided_p(-math.inf, 4) == 0.0
    assert math.isnan(student_t_two_sided_p(math.nan, 4))
    for df in (0, -3, math.nan):
        with pytest.raises(ValueError, match="df must be positive"):
            student_t_two_sided_p(1.0, df)


def test_layer_summary_hand_example() -> None:
    # Two pairs with JSD 0 and 1 at site 0: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% percentiles are 0 and 1. Site 1 is 0.3 for both pairs: a point CI.
    summary = layer_summary([[0.0, 0.3], [1.0, 0.3]], n_boot=4000, seed=0)
    assert summary.n == 2 and summary.n_boot == 4000 and summary.level == 0.95
    assert summary.mean == pytest.approx((0.5, 0.3))
    assert summary.ci_low == pytest.approx((0.0, 0.3))
    assert summary.ci_high == pytest.approx((1.0, 0.3))


def test_layer_summary_one_site_reproduces_paired_bootstrap_ci() -> None:
    x = np.random.default_rng(5).random(30)
    summary = layer_summary(x[:, None], n_boot=3000, seed=9)
    low, high = paired_bootstrap_ci(x, np.zeros_like(x), n_boot=3000, seed=9)
    assert summary.ci_low[0] == pytest.approx(low) and summary.ci_high[0] == pytest.approx(high)


def test_layer_summary_is_deterministic_and_rejects_nan() -> None:
    jsd = np.random.default_rng(1).random((20, 6))
    assert layer_summary(jsd, 500, 2) == layer_summary(jsd, 500, 2)
    jsd[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        layer_summary(jsd, 500, 2)
    with pytest.raises(ValueError, match="n_boot"):
        layer_summary(np.ones((2, 2)), 0, 0)


def test_band_sites_is_the_middle_half() -> None:
    assert band_sites(8) == (2, 3, 4, 5)
    assert band_sites(48) == tuple(range(12, 36))
    assert band_sites(1) == (0,)


def test_layer_summary_weights_cache_gives_identical_summaries(monkeypatch: pytest.MonkeyPatch) -> None:
    import rd_eval.analysis.divergence as divergence

    monkeypatch.setattr(divergence, "_MAX_BOOT_CELLS", 700)  # several chunks per call
    rng = np.random.default_rng(3)
    a, b = rng.random((40, 5)), rng.random((40, 5))
    cache: dict = {}
    assert layer_summary(a, 300, 4, weights_cache=cache) == layer_summary(a, 300, 4)
    assert list(cache) == [(40, 300, 4)] and len(cache[(40, 300, 4)]) > 1
    assert layer_summary(b, 300, 4, weights_cache=cache) == layer_summary(b, 300, 4)  # drawn once, reused
    assert layer_summary(b[:39], 300, 4, weights_cache=cache) == layer_summary(b[:39], 300, 4)
    assert len(cache) == 2
    monkeypatch.setattr(divergence, "_CACHED_BOOT_CELLS", 100)  # too big to keep: computed, not cached
    assert layer_summary(b[:38], 300, 4, weights_cache=cache) == layer_summary(b[:38], 300, 4)
    assert len(cache) == 2


def test_jsd_over_a_stack_of_pairs_equals_jsd_pair_by_pair() -> None:
    rng = np.random.default_rng(8)
    img = rng.integers(0, 6, (7, 4, 9)).astype(float)
    txt = rng.integers(0, 6, (7, 4, 9)).astype(float)
    img[2, 1] = 0  # a site without mass
    stacked = jsd_base2(img, txt)
    for i in range(7):
        np.testing.assert_array_equal(stacked[i], jsd_base2(img[i], txt[i]))
    assert math.isnan(stacked[2, 1])
