"""Routing divergence between the image form and the text twin of a pair (docs/design.md §3.3).

Pure functions of numpy arrays: no I/O, no global RNG, no torch. Conventions:

- a *site* is one router, a row of the routing arrays; ``S`` sites, ``E`` experts. Most families have one
  router per MoE layer (site i = MoE layer i); ERNIE-4.5-VL has a text and a vision router per layer, so
  which MoE layer and group a row is comes from the site table (:mod:`rd_eval.routing.site_table`);
- selection counts ``[S, E]`` hold, per site, how many of a document's tokens (in one token scope) had
  expert ``e`` in their top-k; :func:`selection_distribution` normalises them per site, which is the
  selection frequency ``Φ`` divided by k, i.e. the share of the site's selections that went to ``e``;
- divergence is the Jensen–Shannon divergence in bits (base 2), so it lies in [0, 1]: 0 for identical
  distributions, 1 for distributions with disjoint support.

A site with no mass (a document with no tokens in the scope, e.g. the ``image`` scope of a text twin)
has no distribution; everything here returns NaN for it instead of guessing, and the summaries require
finite input, so the caller decides, visibly, which rows to drop.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import stdtr

if TYPE_CHECKING:
    from rd_eval.routing.site_table import SiteTable

__all__ = [
    "Correlation",
    "LayerSummary",
    "band_sites",
    "divergence_correctness_correlation",
    "jsd_base2",
    "layer_summary",
    "modality_separation",
    "selection_distribution",
    "student_t_two_sided_p",
]

_MAX_BOOT_CELLS = 4_000_000  # resampling-weight cells held at once (rows x pairs)
_CACHED_BOOT_CELLS = 12_000_000  # at most this many cells (96 MB) are kept in a caller's weights_cache per key


def _as_float_array(name: str, values: Any, *, min_ndim: int = 1) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    finite_by_type = arr.dtype.kind in "biu"  # integers and booleans are always finite
    arr = arr.astype(np.float64)
    if not finite_by_type and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _normalised(name: str, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(values / their sum over the last axis, rows whose sum is 0); those rows are left all 0."""
    arr = _as_float_array(name, values)
    if arr.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one category on its last axis, got shape {arr.shape}")
    if (arr < 0).any():
        raise ValueError(f"{name} must be non-negative (counts or probabilities), got minimum {arr.min()!r}")
    total = arr.sum(axis=-1, keepdims=True)
    empty = total <= 0
    arr /= np.where(empty, 1.0, total)  # in place: this is already a private float64 copy
    return arr, empty[..., 0]


def _normalise(name: str, values: Any) -> np.ndarray:
    """Divide by the sum over the last axis; rows summing to 0 become all-NaN."""
    arr, empty = _normalised(name, values)
    if empty.any():
        arr[empty] = np.nan
    return arr


def _kl_to_mixture_bits(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    # Terms with p == 0 contribute 0 (limit of x log x); m > 0 wherever p > 0. Written as a few whole-array
    # passes with `where=` (no full-size temporaries from np.where): this runs over pairs x sites x experts.
    positive = p > 0
    terms = np.zeros(np.broadcast_shapes(p.shape, m.shape))
    np.divide(p, m, out=terms, where=positive)
    np.log2(terms, out=terms, where=positive)
    terms *= p
    return terms.sum(axis=-1)


def jsd_base2(p: Any, q: Any) -> np.ndarray | float:
    """Jensen–Shannon divergence in bits between ``p`` and ``q`` over their last axis, in [0, 1].

    Inputs are non-negative weights (counts or probabilities) and are normalised inside, so
    ``jsd_base2(counts_a, counts_b)`` is the divergence of the two frequency distributions. Leading
    axes broadcast. A row whose total mass is 0 (in either input) has no distribution and gives NaN.
    Returns a float for 1-D inputs, else an array of the broadcast leading shape.
    """
    pn, p_empty = _normalised("p", p)
    qn, q_empty = _normalised("q", q)
    if pn.shape[-1] != qn.shape[-1]:
        raise ValueError(f"p and q must have the same number of categories, got {pn.shape[-1]} and {qn.shape[-1]}")
    try:
        pn, qn = np.broadcast_arrays(pn, qn)
    except ValueError:
        raise ValueError(f"p and q shapes do not broadcast: {np.shape(p)} and {np.shape(q)}") from None
    m = pn + qn
    m *= 0.5
    value = 0.5 * _kl_to_mixture_bits(pn, m) + 0.5 * _kl_to_mixture_bits(qn, m)
    missing = p_empty | q_empty
    # Rounding can leave values a few ulps outside [0, 1].
    value = np.where(missing, np.nan, np.clip(value, 0.0, 1.0))
    return float(value) if value.ndim == 0 else value


def selection_distribution(counts: Any) -> np.ndarray:
    """Per-site normalised selection frequencies: ``counts [S, E]`` divided by each site's total.

    A site with no selections (no tokens in the scope) is a row of NaN.
    """
    arr = _as_float_array("counts", counts, min_ndim=2)
    if arr.ndim != 2:
        raise ValueError(f"counts must be [sites, experts], got shape {arr.shape}")
    return _normalise("counts", arr)


def modality_separation(image_token_counts: Any, text_token_counts: Any) -> np.ndarray:
    """Visual-vs-text routing separation per site: JSD (bits) of pooled selection distributions.

    ``image_token_counts`` and ``text_token_counts`` are ``[docs, S, E]`` (or one ``[S, E]``) selection
    counts of the *same* documents restricted to their image tokens (scope ``prompt_image``) and to their
    text prompt tokens (scope ``prompt_text``). Counts are summed over documents first (every token weighs
    the same), then each site's two pooled distributions are compared. 0 = image and text tokens use the
    experts in the same proportions at that site; 1 = they use disjoint experts. NaN where either pool is
    empty at a site.
    """
    img = _as_float_array("image_token_counts", image_token_counts, min_ndim=2)
    txt = _as_float_array("text_token_counts", text_token_counts, min_ndim=2)
    if img.shape != txt.shape or img.ndim not in (2, 3):
        raise ValueError(
            "image_token_counts and text_token_counts must both be [docs, sites, experts] (or [sites, experts]) "
            f"of the same shape, got {img.shape} and {txt.shape}"
        )
    if img.ndim == 3:
        img, txt = img.sum(axis=0), txt.sum(axis=0)
    return np.asarray(jsd_base2(img, txt), dtype=np.float64)


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class LayerSummary:
    """Per-site mean of a ``[pairs, S]`` statistic with a percentile-bootstrap CI over pairs."""

    n: int
    mean: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    level: float
    n_boot: int
    seed: int


def _resample_weights(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Chunks of the bootstrap's resampling weights (how often each of n pairs was drawn per replicate), float64
    [replicates, n], drawn chunk by chunk from ``default_rng(seed)`` (the chunking is part of the stream)."""
    rng = np.random.default_rng(seed)
    rows = max(1, _MAX_BOOT_CELLS // n)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        idx += (np.arange(stop - start) * n)[:, None]
        # float64, so that the replicate means are one BLAS matmul (an integer-by-float matmul is not BLAS).
        yield np.bincount(idx.ravel(), minlength=(stop - start) * n).reshape(stop - start, n).astype(np.float64)


def layer_summary(jsd: Any, n_boot: int = 10000, seed: int = 0, *, level: float = 0.95,
                  weights_cache: dict[tuple[int, int, int], list[np.ndarray]] | None = None) -> LayerSummary:
    """Mean per site of ``jsd [pairs, S]`` and its percentile bootstrap CI, resampling pairs (rows).

    All sites share the same resamples (one draw of pair indices per bootstrap replicate), so the CIs of
    neighbouring sites are comparable. Input must be finite: drop NaN rows (pairs without routing mass)
    before calling. Deterministic for a given ``seed``; with one site it reproduces
    ``rd_eval.analysis.stats.paired_bootstrap_ci(x, zeros)``.

    ``weights_cache``: a dict the caller keeps across calls; the resampling weights depend only on (pairs,
    n_boot, seed), so summaries over the same number of pairs (a benchmark's plain and intervened settings)
    draw them once. Only weights of up to _CACHED_BOOT_CELLS cells are kept.
    """
    arr = _as_float_array("jsd", jsd, min_ndim=2)
    if arr.ndim != 2:
        raise ValueError(f"jsd must be [pairs, sites], got shape {arr.shape}")
    n, sites = arr.shape
    if n < 1 or sites < 1:
        raise ValueError(f"jsd must hold at least one pair and one site, got shape {arr.shape}")
    n_boot = _check_int("n_boot", n_boot, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    if not (isinstance(level, numbers.Real) and 0.0 < float(level) < 1.0):
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
    key = (n, n_boot, seed)
    if weights_cache is not None and key in weights_cache:
        chunks: Iterable[np.ndarray] = weights_cache[key]
    elif weights_cache is not None and n * n_boot <= _CACHED_BOOT_CELLS:
        chunks = weights_cache[key] = list(_resample_weights(n, n_boot, seed))
    else:
        chunks = _resample_weights(n, n_boot, seed)
    means = np.empty((n_boot, sites), dtype=np.float64)
    start = 0
    for weights in chunks:
        means[start : start + weights.shape[0]] = (weights @ arr) / n
        start += weights.shape[0]
    alpha = 1.0 - float(level)
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return LayerSummary(
        n=n,
        mean=tuple(float(v) for v in arr.mean(axis=0)),
        ci_low=tuple(float(v) for v in low),
        ci_high=tuple(float(v) for v in high),
        level=float(level),
        n_boot=n_boot,
        seed=seed,
    )


def student_t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value of Student's t statistic ``t`` with ``df`` degrees of freedom.

    scipy's Student t CDF at ``-|t|`` (the lower tail directly, so it stays accurate far out where ``1 - cdf``
    would round to 0); scipy.special rather than scipy.stats because it imports in a third of the time."""
    if not df > 0:
        raise ValueError(f"df must be positive, got {df!r}")
    if math.isnan(t):
        return math.nan
    return min(1.0, float(2.0 * stdtr(df, -abs(t))))


@dataclass(frozen=True)
class Correlation:
    """Point-biserial correlation of a continuous score with a 0/1 outcome.

    ``r`` and ``p`` are NaN when undefined (fewer than 3 pairs, or either variable constant). ``p`` is
    the two-sided test of r = 0 with ``t = r sqrt((n - 2) / (1 - r^2))``, n - 2 degrees of freedom.
    """

    n: int
    r: float
    p: float
    n_correct: int


def divergence_correctness_correlation(mid_band_jsd: Any, img_correct: Any) -> Correlation:
    """Point-biserial r (and p) between each pair's middle-band JSD and its image-form correctness.

    ``mid_band_jsd [pairs]``: a pair's JSD averaged over the band sites (see :func:`band_sites`);
    ``img_correct [pairs]``: 1 if the image form was answered correctly, else 0. A negative r means
    pairs whose image routing strays further from the text routing are answered wrongly more often.
    """
    x = _as_float_array("mid_band_jsd", mid_band_jsd)
    y = _as_float_array("img_correct", img_correct)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"mid_band_jsd and img_correct must be 1-D of the same length, got {x.shape} and {y.shape}")
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"img_correct must hold only 0/1, got {y[first]!r} at position {first}")
    n = int(x.shape[0])
    n_correct = int(y.sum())
    # Constancy is tested exactly: rounding in the mean can leave the sum of squares a few ulps above 0.
    if n < 3 or x.min() == x.max() or y.min() == y.max():
        return Correlation(n=n, r=math.nan, p=math.nan, n_correct=n_correct)
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    r = float(np.clip((dx @ dy) / math.sqrt(sxx * syy), -1.0, 1.0))
    if abs(r) == 1.0:
        return Correlation(n=n, r=r, p=0.0, n_correct=n_correct)
    t = r * math.sqrt((n - 2) / (1.0 - r * r))
    return Correlation(n=n, r=r, p=student_t_two_sided_p(t, n - 2), n_correct=n_correct)


def band_sites(n_sites: int, fractions: tuple[float, float] = (0.25, 0.75), sites: SiteTable | None = None,
               ) -> tuple[int, ...]:
    """Site rows of the middle band (default fractions 0.25-0.75 of the MoE layers), as the intervention resolves
    them: every site (each group) of a band MoE layer. Without a site table, row i is MoE layer i."""
    from rd_eval.routing.spec import LayerBand

    n_sites = _check_int("n_sites", n_sites, minimum=1)
    if sites is None:
        return LayerBand(fractions=fractions).resolve(n_sites)
    sites.check_rows(n_sites, "band_sites")
    return tuple(row.site for row in sites.rows_in(LayerBand(fractions=fractions).resolve(sites.num_moe_layers)))
