"""Paired statistics for image-vs-text accuracy comparisons.

Everything here is a pure function of its inputs: no global RNG, no I/O. Only numpy is used at
runtime (scipy serves as the test oracle), so the report path stays light.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "PairedDifference",
    "mcnemar_exact",
    "paired_bootstrap_ci",
    "paired_difference",
]

# Bound on resampled indices held in memory at once (rows x n); keeps 10k x 50k-pair bootstraps
# from allocating gigabytes while staying vectorised.
_MAX_BOOT_CELLS = 4_000_000


def _check_count(name: str, value: Any) -> int:
    # bool is an int subclass, but True/False as a count is almost surely a caller bug.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{name} must be a non-negative integer count, got {value!r} ({type(value).__name__})"
        )
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer count, got {value}")
    return int(value)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for discordant counts ``b`` and ``c``.

    This is the two-sided exact binomial test of ``min(b, c)`` successes in ``b + c`` trials with
    p = 0.5. Returns 1.0 when there are no discordant pairs.
    """
    b = _check_count("b", b)
    c = _check_count("c", c)
    n = b + c
    k = min(b, c)
    if n == 0 or 2 * k == n:
        return 1.0
    # Exact integer arithmetic: sum C(n, i) for i <= k, built by the ratio recurrence so it
    # stays O(k) big-int steps instead of calling comb() k times.
    term = 1
    tail = 1
    for i in range(k):
        term = term * (n - i) // (i + 1)
        tail += term
    # By symmetry of Bin(n, 1/2) the two-sided p is twice the lower tail: 2 * tail / 2**n.
    # Python's int/int true division is correctly rounded even for huge operands.
    return min(1.0, tail / (1 << (n - 1)))


def _as_paired_arrays(
    x: Any, y: Any, *, names: tuple[str, str] = ("x", "y")
) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, values in zip(names, (x, y), strict=True):
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
        ):
            raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values; paired statistics need finite scores")
        arrays.append(arr)
    a, b = arrays
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must be paired (same length), got {a.shape[0]} and {b.shape[0]}"
        )
    if a.shape[0] < 1:
        raise ValueError(f"{names[0]} and {names[1]} must hold at least one pair, got 0")
    return a, b


def _check_boot_args(n_boot: int, level: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not (isinstance(level, numbers.Real) and 0.0 < float(level) < 1.0):
        raise ValueError(f"level must be a number strictly between 0 and 1 (e.g. 0.95), got {level!r}")


def paired_bootstrap_ci(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_boot: int = 10000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI for ``mean(x - y)``, resampling pairs (rows) with replacement.

    Units are those of the inputs (0/1 inputs give a CI on the difference of proportions).
    Deterministic for a given ``seed``; uses its own ``np.random.default_rng``.
    """
    a, b = _as_paired_arrays(x, y)
    _check_boot_args(n_boot, level)
    d = a - b
    n = d.shape[0]
    rng = np.random.default_rng(seed)
    means = np.empty(int(n_boot), dtype=np.float64)
    rows = max(1, _MAX_BOOT_CELLS // n)
    for start in range(0, int(n_boot), rows):
        stop = min(int(n_boot), start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = d[idx].mean(axis=1)
    alpha = 1.0 - float(level)
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedDifference:
    """Difference of two paired 0/1 accuracies, A minus B.

    ``mean_a``, ``mean_b``, ``diff``, ``ci_low`` and ``ci_high`` are all percentage points
    (accuracy x 100), so ``diff = mean_a - mean_b`` (up to rounding). Counts form the 2x2 table:
    ``both`` right, ``a_only`` right, ``b_only`` right, ``neither`` right; McNemar uses ``a_only``
    and ``b_only``.
    """

    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_mcnemar: float
    both: int
    a_only: int
    b_only: int
    neither: int
    level: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_difference(
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_boot: int = 10000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Compare paired 0/1 outcomes ``a`` and ``b`` (same items, same order).

    Returns accuracies, their difference and its percentile-bootstrap CI (all in points), the
    exact McNemar p-value and the 2x2 table.
    """
    x, y = _as_paired_arrays(a, b, names=("a", "b"))
    for name, arr in (("a", x), ("b", y)):
        bad = ~np.isin(arr, (0.0, 1.0))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name} must hold only 0/1 outcomes for McNemar, got {arr[first]!r} at position {first}"
            )
    _check_boot_args(n_boot, level)
    xa = x.astype(bool)
    yb = y.astype(bool)
    both = int(np.sum(xa & yb))
    a_only = int(np.sum(xa & ~yb))
    b_only = int(np.sum(~xa & yb))
    neither = int(np.sum(~xa & ~yb))
    low, high = paired_bootstrap_ci(x, y, n_boot=n_boot, level=level, seed=seed)
    n = int(x.shape[0])
    # Difference from integer counts, so equal accuracies give exactly 0.0 (recovery = gain / gap
    # relies on that) and 5/6 - 2/6 prints as 50.0, not 50.000000000000014.
    return PairedDifference(
        n=n,
        mean_a=100.0 * (both + a_only) / n,
        mean_b=100.0 * (both + b_only) / n,
        diff=100.0 * (a_only - b_only) / n,
        ci_low=100.0 * low,
        ci_high=100.0 * high,
        p_mcnemar=mcnemar_exact(a_only, b_only),
        both=both,
        a_only=a_only,
        b_only=b_only,
        neither=neither,
        level=float(level),
    )
