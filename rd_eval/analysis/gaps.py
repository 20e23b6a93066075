"""Text-vs-image accuracy gaps per benchmark, and what an intervention gains back.

Input frames are those of :func:`rd_eval.lmms.runs.load_paired_samples` (columns task, form, pair_id,
correct, and optionally error, ...). Accuracies only ever use pair_ids present in both forms; pair_ids
seen in one form (or, for interventions, in one run) are counted and reported, never averaged in.

Error rows (a non-empty ``error``, ``correct`` <NA>: the model could not run that doc) are never
scored: not as wrong, not in any accuracy, gap, gain or text cost. A pair_id with an error in either
form is removed from *both* forms before pairing and shows up only in the per-form error counts
(``img_errors`` / ``txt_errors``, rows); its other form's outcome is not counted as unpaired either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from rd_eval.analysis.stats import PairedDifference, paired_difference
from rd_eval.vocabulary.task_names import benchmark_of

__all__ = [
    "GapRow",
    "InterventionEffect",
    "PairingReport",
    "RunGap",
    "compare_runs",
    "pair_forms",
]

REQUIRED_COLUMNS = ("task", "form", "pair_id", "correct")
LEVEL = 0.95  # confidence level of every CI below (paired_difference's default)


@dataclass(frozen=True)
class PairingReport:
    """How many pair_ids have both forms, how many only one, and how many rows per form were errors.

    ``img_only`` / ``txt_only`` count pair_ids with no error that appear in one form only; pair_ids
    with an error row in either form are in neither and counted only in ``img_errors`` / ``txt_errors``.
    """

    n_pairs: int
    img_only: int
    txt_only: int
    img_errors: int = 0
    txt_errors: int = 0


@dataclass(frozen=True)
class RunGap:
    """One run on one benchmark: accuracies (percent) over complete pairs and the txt - img gap.

    ``img_errors`` / ``txt_errors`` are the error rows per form, excluded as described in the module doc.
    """

    n_pairs: int
    img_only: int
    txt_only: int
    img_errors: int
    txt_errors: int
    acc_img: float
    acc_txt: float
    gap: PairedDifference


@dataclass(frozen=True)
class InterventionEffect:
    """Intervened vs base run on the pair_ids complete (img and txt) in both runs.

    ``gain`` is intervened minus base image accuracy, ``text_cost`` the same for text (negative
    means the intervention hurt text), ``recovery = gain / gap_base`` (None when the gap is 0).
    A pair_id with an error in any of its four cells (img/txt x base/intervened) is not complete in
    that run, so it is excluded and counted in ``dropped_base`` / ``dropped_intervened`` (the run in
    which it was complete) like any other pair_id missing from the other run.
    """

    n_pairs: int
    dropped_base: int
    dropped_intervened: int
    acc_img_base: float
    acc_txt_base: float
    acc_img: float
    acc_txt: float
    gap_base: PairedDifference
    gap: PairedDifference
    gain: PairedDifference
    text_cost: PairedDifference
    recovery: float | None


@dataclass(frozen=True)
class GapRow:
    """Everything reported for one benchmark."""

    benchmark: str
    tasks: tuple[str, ...]
    base: RunGap
    intervened: RunGap | None
    effect: InterventionEffect | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tasks"] = list(self.tasks)
        return out


def _check_frame(df: Any, name: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(
            f"{name} must be a pandas DataFrame from load_paired_samples, got {type(df).__name__}"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; has {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{name} has no samples")
    bad_form = sorted(set(df["form"]) - {"img", "txt"})
    if bad_form:
        raise ValueError(f"{name}: column 'form' must be 'img' or 'txt', got {bad_form}")
    errors = _error_mask(df, name)
    missing_correct = df["correct"].isna().to_numpy()
    scored_without = missing_correct & ~errors
    if scored_without.any():
        shown = df.loc[scored_without, ["task", "pair_id"]].astype(str).head(5).to_dict("records")
        raise ValueError(
            f"{name}: column 'correct' is missing for {int(scored_without.sum())} row(s) that are not marked "
            f"as errors (no 'error' reason), e.g. {shown}; only error rows may be unscored"
        )
    error_with = errors & ~missing_correct
    if error_with.any():
        shown = df.loc[error_with, ["task", "pair_id"]].astype(str).head(5).to_dict("records")
        raise ValueError(
            f"{name}: {int(error_with.sum())} error row(s) also carry a 'correct' value, e.g. {shown}; "
            f"an error row must have 'correct' missing (<NA>)"
        )
    bad_correct = sorted({repr(v) for v in df.loc[~missing_correct, "correct"] if v not in (0, 1)})
    if bad_correct:
        raise ValueError(f"{name}: column 'correct' must be 0 or 1 (or <NA> on error rows), got {bad_correct[:5]}")
    return df


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _error_mask(df: pd.DataFrame, name: str) -> np.ndarray:
    """Boolean mask of error rows: those with a reason string in the optional ``error`` column."""
    if "error" not in df.columns:
        return np.zeros(len(df), dtype=bool)
    values = df["error"].tolist()
    bad = sorted({repr(v) for v in values if not _is_missing(v) and not (isinstance(v, str) and v)})
    if bad:
        raise ValueError(
            f"{name}: column 'error' must be missing or a non-empty reason string, got {bad[:5]}"
        )
    return np.array([isinstance(v, str) for v in values], dtype=bool)


def pair_forms(df: pd.DataFrame) -> tuple[pd.DataFrame, PairingReport]:
    """Join the img and txt outcome of each pair_id (use on one benchmark at a time).

    Returns a frame indexed by pair_id (sorted) with int columns ``img`` and ``txt``, holding only
    pair_ids present in both forms with no error in either, and the counts of pair_ids found in one
    form only plus the error rows per form. A pair_id with an error in one form is dropped from both
    forms (its other form is not counted as unpaired); see the module doc.
    """
    df = _check_frame(df, "samples")
    keys = df[["form", "pair_id"]].astype(str)
    dup = keys.duplicated(keep=False)
    if dup.any():
        shown = keys[dup].drop_duplicates().head(5).to_dict("records")
        tasks = sorted(df.loc[dup, "task"].astype(str).unique())
        raise ValueError(
            f"duplicate pair_id within a form in task(s) {tasks}: {shown}; each pair_id must appear "
            f"once per form (were two benchmarks or repeated runs mixed?)"
        )
    errors = _error_mask(df, "samples")
    is_img = (df["form"] == "img").to_numpy()
    errored_ids = set(df.loc[errors, "pair_id"].astype(str))
    pair_ids = df["pair_id"].astype(str).to_numpy()
    keep = ~errors & ~pd.Series(pair_ids).isin(errored_ids).to_numpy()
    outcomes = pd.Series(df.loc[keep, "correct"].astype(int).to_numpy(), index=pair_ids[keep])
    by_form = {
        "img": outcomes[is_img[keep]],
        "txt": outcomes[~is_img[keep]],
    }
    img_ids = set(by_form["img"].index)
    txt_ids = set(by_form["txt"].index)
    common = sorted(img_ids & txt_ids)
    paired = pd.DataFrame(
        {
            "img": by_form["img"].reindex(common).astype(int).to_numpy(),
            "txt": by_form["txt"].reindex(common).astype(int).to_numpy(),
        },
        index=pd.Index(common, name="pair_id"),
    )
    report = PairingReport(
        n_pairs=len(common),
        img_only=len(img_ids - txt_ids),
        txt_only=len(txt_ids - img_ids),
        img_errors=int((errors & is_img).sum()),
        txt_errors=int((errors & ~is_img).sum()),
    )
    return paired, report


def _split_benchmarks(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    bench = df["task"].astype(str).map(benchmark_of)
    return {name: part for name, part in df.groupby(bench, sort=True)}


def _run_gap(paired: pd.DataFrame, report: PairingReport, *, n_boot: int, seed: int) -> RunGap:
    gap = paired_difference(
        paired["txt"].to_numpy(), paired["img"].to_numpy(), n_boot=n_boot, level=LEVEL, seed=seed
    )
    return RunGap(
        n_pairs=report.n_pairs,
        img_only=report.img_only,
        txt_only=report.txt_only,
        img_errors=report.img_errors,
        txt_errors=report.txt_errors,
        acc_img=gap.mean_b,
        acc_txt=gap.mean_a,
        gap=gap,
    )


def _no_pairs_message(entry: Mapping[str, Any]) -> str:
    return (
        f"{entry['run']} run, benchmark {entry['benchmark']!r}: no pair_id has both an img and a txt sample "
        f"(img-only {entry['img_only']}, txt-only {entry['txt_only']}; error rows img {entry['img_errors']}, "
        f"txt {entry['txt_errors']}); run both the _img and _txt tasks"
    )


def _unpaired_entry(report: PairingReport, *, benchmark: str, which: str) -> dict[str, Any]:
    return {"benchmark": benchmark, "run": which, "img_only": report.img_only, "txt_only": report.txt_only,
            "img_errors": report.img_errors, "txt_errors": report.txt_errors}


def _effect(
    base: pd.DataFrame, inter: pd.DataFrame, *, benchmark: str, n_boot: int, seed: int
) -> InterventionEffect:
    common = base.index.intersection(inter.index).sort_values()
    if len(common) == 0:
        raise ValueError(
            f"benchmark {benchmark!r}: no pair_id is complete (img and txt) in both the base and the "
            f"intervened run; were they run on the same data?"
        )
    b = base.loc[common]
    i = inter.loc[common]
    kw: dict[str, Any] = {"n_boot": n_boot, "level": LEVEL, "seed": seed}
    gap_base = paired_difference(b["txt"].to_numpy(), b["img"].to_numpy(), **kw)
    gap = paired_difference(i["txt"].to_numpy(), i["img"].to_numpy(), **kw)
    gain = paired_difference(i["img"].to_numpy(), b["img"].to_numpy(), **kw)
    text_cost = paired_difference(i["txt"].to_numpy(), b["txt"].to_numpy(), **kw)
    return InterventionEffect(
        n_pairs=len(common),
        dropped_base=len(base) - len(common),
        dropped_intervened=len(inter) - len(common),
        acc_img_base=gap_base.mean_b,
        acc_txt_base=gap_base.mean_a,
        acc_img=gap.mean_b,
        acc_txt=gap.mean_a,
        gap_base=gap_base,
        gap=gap,
        gain=gain,
        text_cost=text_cost,
        recovery=None if gap_base.diff == 0 else gain.diff / gap_base.diff,
    )


def _models(df: pd.DataFrame) -> dict[str, list[str]]:
    return {
        col: sorted(df[col].dropna().astype(str).unique().tolist()) if col in df.columns else []
        for col in ("model", "model_args")
    }


def compare_runs(
    base: pd.DataFrame,
    intervened: pd.DataFrame | None,
    *,
    n_boot: int = 10000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-benchmark gap table for ``base``; with ``intervened``, also gain / text cost / recovery.

    Returns a JSON-serialisable dict: run metadata, benchmarks found in only one run, and one
    ``rows`` entry (:meth:`GapRow.to_dict`) per benchmark. Percent units throughout.
    """
    base = _check_frame(base, "base")
    if intervened is not None:
        intervened = _check_frame(intervened, "intervened")
    base_parts = _split_benchmarks(base)
    inter_parts = _split_benchmarks(intervened) if intervened is not None else {}

    rows: list[dict[str, Any]] = []
    # A benchmark whose forms share no pair_id is listed with its counts, never averaged; it stops the
    # table only when it is all there is.
    unpaired: list[dict[str, Any]] = []
    for name, part in base_parts.items():
        paired_b, report_b = pair_forms(part)
        if report_b.n_pairs == 0:
            unpaired.append(_unpaired_entry(report_b, benchmark=name, which="base"))
            continue
        run_b = _run_gap(paired_b, report_b, n_boot=n_boot, seed=seed)
        run_i: RunGap | None = None
        effect: InterventionEffect | None = None
        if name in inter_parts:
            paired_i, report_i = pair_forms(inter_parts[name])
            if report_i.n_pairs == 0:
                unpaired.append(_unpaired_entry(report_i, benchmark=name, which="intervened"))
            else:
                run_i = _run_gap(paired_i, report_i, n_boot=n_boot, seed=seed)
                effect = _effect(paired_b, paired_i, benchmark=name, n_boot=n_boot, seed=seed)
        tasks = tuple(sorted(part["task"].astype(str).unique()))
        rows.append(GapRow(name, tasks, run_b, run_i, effect).to_dict())

    if not rows or (intervened is not None and not any(row.get("intervened") for row in rows)
                    and any(u["run"] == "intervened" for u in unpaired)):
        raise ValueError("; ".join(_no_pairs_message(u) for u in unpaired))
    only_base = sorted(set(base_parts) - set(inter_parts)) if intervened is not None else []
    return {
        "unpaired_benchmarks": unpaired,
        "n_boot": int(n_boot),
        "seed": int(seed),
        "level": LEVEL,
        "base_run": _models(base),
        "intervened_run": _models(intervened) if intervened is not None else None,
        "benchmarks_only_in_base": only_base,
        "benchmarks_only_in_intervened": sorted(set(inter_parts) - set(base_parts)),
        "rows": rows,
    }
