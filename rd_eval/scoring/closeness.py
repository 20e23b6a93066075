"""When a predicted number states a gold number: the one rule shared by "number" and "expression" answers.

The first rule that applies decides:

1. ``abs_tolerance`` (DynaMath's rule): right when ``|pred - gold| <= abs_tolerance``; nothing else is consulted.
2. ``precision`` (MathVista's decimal places): right when both, rounded half-up to ``precision`` places, are equal.
3. Equal values are right: two integers (below 2**53, where a float is still exact) must be equal, other values
   within ``EXACT_TOL``, relative (float noise: ``(\\sqrt{2})^2`` is 2). ``11111111101`` is not ``11111111100``.
4. A gold written as a decimal with d >= 1 places is taken as known to d places: a response that rounds (half-up)
   to it at d places is right. Gold ``3.5`` accepts ``3.50``, ``3.4999``, ``3.45`` and ``3.54``, rejects ``3.44``,
   ``3.55`` and ``3.6``; gold ``8.6`` accepts ``8.602`` (``\\sqrt{74}``). An integer gold is exact: ``12`` rejects
   ``12.4``.
5. A response written as a decimal of at least ``MIN_APPROX_DECIMALS`` places is right when it is the gold
   rounded (half-up) to those places (``4.67`` for ``\\frac{14}{3}``, ``3.14`` for ``\\pi`` or for ``3.14159``);
   one place (``4.7``) is too coarse to say so.

Why rule 4 holds for both types: a gold with decimals is most often a rounded value (a length measured off a figure,
``8.6`` for ``\\sqrt{74}``), and a response that reports more places of that value gave the answer; rejecting it was
the wrong verdict on real records. The price, accepted and documented: an exact gold ``0.5`` also accepts ``0.54``
(as MathVista's own rule does at precision 1).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

__all__ = ["EXACT_TOL", "MIN_APPROX_DECIMALS", "check_abs_tolerance", "numbers_agree", "to_decimal"]

EXACT_TOL = Decimal("1e-9")
MIN_APPROX_DECIMALS = 2
_FLOAT_EXACT = Decimal(2**53)  # integers below this are exact as floats: no noise to forgive
_SLACK = Decimal("1.000000001")  # a computed value (a float) sits a hair off the tolerance's edge


def check_abs_tolerance(abs_tolerance: object) -> None:
    """Raise ValueError unless ``abs_tolerance`` is None or a finite number >= 0."""
    if abs_tolerance is None:
        return
    if isinstance(abs_tolerance, bool) or not isinstance(abs_tolerance, (int, float, Decimal)) \
            or not math.isfinite(abs_tolerance) or abs_tolerance < 0:
        raise ValueError(f"abs_tolerance must be a finite number >= 0 or None (DynaMath uses 0.001), "
                         f"got {abs_tolerance!r}")


def to_decimal(value: float | int | Decimal) -> Decimal:
    """A float as the decimal it prints as (``0.1`` -> ``Decimal("0.1")``, not the binary expansion)."""
    return value if isinstance(value, Decimal) else Decimal(repr(float(value)))


def _small_integer(value: Decimal) -> bool:
    return value == value.to_integral_value() and abs(value) < _FLOAT_EXACT


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def numbers_agree(
    gold: float | Decimal,
    pred: float | Decimal,
    *,
    gold_places: int | None,
    pred_places: int | None,
    precision: int | None = None,
    abs_tolerance: float | None = None,
) -> bool:
    """Whether ``pred`` states ``gold`` under the module's rule.

    ``gold_places`` / ``pred_places``: the decimal places a value was written with (``3.50`` -> 2), None when it was
    not written as a decimal (an integer, a fraction, ``\\pi``...), since then it is exact.
    """
    g, p = to_decimal(gold), to_decimal(pred)
    if not (g.is_finite() and p.is_finite()):
        return g == p
    if abs_tolerance is not None:
        return abs(g - p) <= to_decimal(abs_tolerance) * _SLACK
    if precision is not None:
        return _round(g, precision) == _round(p, precision)
    if _small_integer(g) and _small_integer(p):
        return g == p
    if abs(g - p) <= EXACT_TOL * max(Decimal(1), abs(g), abs(p)):
        return True
    if gold_places and _round(p, gold_places) == g:
        return True  # the gold is rounded: the response agrees with it at the gold's places
    return pred_places is not None and pred_places >= MIN_APPROX_DECIMALS and _round(g, pred_places) == p
