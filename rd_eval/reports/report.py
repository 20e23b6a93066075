"""`rd-eval report`: seeing-vs-thinking gaps, intervention effects and routing divergence of lmms-eval runs.

:func:`build_report` reads every lmms-eval run (``*_results.json`` + ``--log_samples`` files) under the
given folders and groups them into *settings*: one per (lmms-eval model id, checkpoint, intervention
hash). The intervention hash is ``"none"`` for a plain run; otherwise it is the content hash of the
intervention spec named in the run's ``model_args`` (the same hash the adapter puts in routing records
and in the routing folder's name). Per setting it gives:

- the gap table of :func:`rd_eval.analysis.gaps.compare_runs`: a plain setting on its own; an intervened setting
  against the plain setting of the same model id and checkpoint (gain, text cost, recovery);
- when the run wrote routing records (``<output_path>/rd_routing/<checkpoint>__<hash>/routing_rank*.jsonl`` + ``.bin``,
  the output path found from the run's own results file, so a copied or moved run reads its own; or
  ``routing_dir=`` when given), the run's own records among them (its model id, ``pretrained`` and intervention
  hash: a folder shared by several runs is never mixed), per benchmark:

  * ``layers``: per routing site, the mean over pairs of the JSD (bits) between the pair's image-form and
    text-twin selection distributions in the chosen token scope, with a bootstrap CI over pairs. Sites are the
    rows of the records' site table (:mod:`rd_eval.routing.site_table`): one per MoE layer for most families;
    where they are not (ERNIE-4.5-VL: a text and a vision router per layer; a dense layer before the MoE
    layers), each site also names its MoE layer, group and decoder layer, the band is taken over MoE layers
    (every group of a band layer), and a group's sites that no pair routes in both forms (ERNIE's vision
    router never sees a text twin) are shown without a pair JSD instead of dropping every pair;
  * ``correlation``: point-biserial r and p between a pair's middle-band JSD (mean over the sites of the
    band 0.25-0.75 of the MoE layers) and its image-form correctness;
  * ``separation``: per site, the JSD between the pooled ``prompt_image`` and pooled ``prompt_text``
    selection distributions of the benchmark's image-form documents, i.e. how differently image tokens
    and text tokens are routed at that layer (visual vs text routing separation; independent of --scope).

Pairs used for routing are those of the gap table (both forms present and scored, no error) whose two
documents both have a routing record with selections in the scope; the others are counted, not guessed.

Renderers: :func:`to_markdown`, :func:`to_csv`, :func:`to_json`, :func:`to_html` (self-contained, plots
embedded as base64 PNG). Bad input raises :class:`ReportInputError` naming the file and what is valid.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rd_eval.analysis import flips
from rd_eval.analysis.divergence import (
    band_sites,
    divergence_correctness_correlation,
    jsd_base2,
    layer_summary,
    modality_separation,
)
from rd_eval.analysis.gaps import benchmark_of, compare_runs, pair_forms
from rd_eval.analysis.gaps import to_markdown as gaps_markdown
from rd_eval.data import provenance as data_provenance
from rd_eval.fileio.jsonio import canonical_hash
from rd_eval.lmms.runs import ROUTING_SHARD_GLOB, RunRecord, find_runs, load_paired_samples, unfinished_run_message
from rd_eval.rendering.mdtable import md_row, split_md_row
from rd_eval.routing.records import (
    RecordOwner,
    checkpoint_label,
    merge_routing_records,
    record_site_table,
    select_records,
)
from rd_eval.routing.site_table import SiteTable

__all__ = [
    "REPORT_FORMAT",
    "SCOPES",
    "ReportInputError",
    "build_report",
    "to_csv",
    "to_html",
    "to_json",
    "to_markdown",
]

REPORT_FORMAT = "rd-eval.report"
REPORT_VERSION = 1
BAND_FRACTIONS = (0.25, 0.75)
LEVEL = 0.95
ROUTING_FOLDER = "rd_routing"
NO_INTERVENTION = "none"
INTERVENTION_KEYS = ("intervention", "expert_set", "intervention_mode", "intervention_lambda",
                     "intervention_band", "intervention_scope", "intervention_seed")
# DESIGN §3.3 token scopes as unions of the base scopes stored in routing records; kept equal to
# rd_eval.routing.recording.SCOPE_UNIONS (a test checks) without importing torch for the report.
SCOPES: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt_text", "prompt_image"),
    "generated": ("generated",),
    "text": ("prompt_text", "generated"),
    "image": ("prompt_image",),
    "all": ("prompt_text", "prompt_image", "generated"),
}


class ReportInputError(ValueError):
    """Runs or routing records that cannot be reported on; the message names the file and what is valid."""


# ---------------------------------------------------------------------------------------------------------
# Finding runs, their settings and their routing folders


def parse_model_args(text: str) -> dict[str, str]:
    """lmms-eval's ``k=v,k=v`` model_args string as a dict (a bare word maps to "")."""
    out: dict[str, str] = {}
    for part in str(text).split(","):
        if not part.strip():
            continue
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip()
    return out


def sanitize_checkpoint(name: str) -> str:
    """A checkpoint name as the adapter names routing folders (see rd_eval.routing.records)."""
    return checkpoint_label(name)


@dataclass(frozen=True)
class RoutingSource:
    """Where one run's routing records are, and whose records in that folder are the run's (a folder may hold
    records of other checkpoints, models or settings: an explicit routing_dir shared by several runs)."""

    folder: Path
    owner: RecordOwner


@dataclass(frozen=True)
class RunSetting:
    model_id: str
    checkpoint: str
    intervention: str
    runs: tuple[RunRecord, ...]
    routing_dirs: tuple[Path, ...]
    routing_sources: tuple[RoutingSource, ...] = ()
    routing_notes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.model_id}:{self.checkpoint}:{self.intervention}"


@dataclass
class RoutingCache:
    """Merged records of each routing folder, read once, and each run's own records among them."""

    records: dict[Path, list[dict[str, Any]]] = field(default_factory=dict)
    selected: dict[RoutingSource, list[dict[str, Any]]] = field(default_factory=dict)
    # Bootstrap resampling weights by (pairs, n_boot, seed): a benchmark's settings share them (layer_summary).
    boot_weights: dict[tuple[int, int, int], list[np.ndarray]] = field(default_factory=dict)

    def get(self, folder: Path) -> list[dict[str, Any]]:
        if folder not in self.records:
            try:
                self.records[folder] = merge_routing_records(folder)
            except (ValueError, OSError, UnicodeDecodeError, KeyError, TypeError) as exc:
                raise ReportInputError(f"routing records in {folder} unreadable: {exc}") from None
        return self.records[folder]

    def of_run(self, source: RoutingSource) -> list[dict[str, Any]]:
        """The records of `source.folder` that are its run's (model, checkpoint, setting)."""
        if source not in self.selected:
            self.selected[source] = _select(self.get(source.folder), source.owner, source.folder)
        return self.selected[source]


def _select(records: list[dict[str, Any]], owner: RecordOwner, folder: Path) -> list[dict[str, Any]]:
    try:
        return select_records(records, owner, where=str(folder))
    except ValueError as exc:
        raise ReportInputError(str(exc)) from None


def _run_owner(run: RunRecord, args: Mapping[str, str], intervention: str | None) -> RecordOwner:
    """Whose records are the run's: its rd_* model id (a model object handed to lmms-eval's Python API makes
    results that name no rd_* id; the model is then not checked), its pretrained= and its setting."""
    model = run.model if run.model.startswith("rd_") else None
    return RecordOwner(model=model, pretrained=args.get("pretrained") or None, intervention=intervention)


@dataclass(frozen=True)
class RunFolder:
    """Where a run's --output_path is now, found from its own results file, and the one its results record."""

    own: tuple[Path, ...]  # the run's output folder (both candidates when its results do not tell which)
    recorded: Path | None  # --output_path as the run was given it (absolute, or relative to the run's folder)
    moved: bool  # the recorded output path is not where the results file lies now (a copied or moved run)


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return False


def run_folder(run: RunRecord) -> RunFolder:
    """lmms-eval writes ``OUT/<model_name_sanitized>/<date>_results.json`` (``OUT/<date>_results.json`` when the
    sanitized name is empty): OUT is found from the results file itself, so that a copied or moved run reads
    its own routing records. The output_path recorded in the results only picks between the two candidates;
    it never names another folder to read."""
    try:
        data = json.loads(run.results_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data = data if isinstance(data, dict) else {}
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    cli = config.get("resolved_cli_args") if isinstance(config.get("resolved_cli_args"), dict) else {}
    given = cli.get("output_path")
    recorded = Path(given).expanduser() if isinstance(given, str) and given.strip() else None
    here = run.results_path.parent
    sanitized = data.get("model_name_sanitized")
    if sanitized == "":
        own: tuple[Path, ...] = (here,)
    elif isinstance(sanitized, str) and here.name == sanitized:
        own = (here.parent,)
    else:
        own = (here, here.parent)
    if recorded is None:
        return RunFolder(own, None, moved=False)
    same = tuple(o for o in own if _same_folder(recorded, o))
    return RunFolder(same or own, recorded, moved=not same)


def _routing_candidates(folder: RunFolder, args: Mapping[str, str], checkpoint: str) -> dict[str, Path]:
    """Routing folders that may belong to the run, by intervention hash ("" for an explicit routing_dir)."""
    if args.get("record_routing", "true").strip().lower() in ("false", "0", "no"):
        return {}
    if args.get("routing_dir"):
        given = Path(args["routing_dir"]).expanduser()
        if given.is_absolute():
            tries = [given]
        else:  # relative to the folder the run was started in, like a relative --output_path
            tries = []
            if folder.recorded is not None and not folder.recorded.is_absolute():
                beside = Path(os.path.normpath(os.path.relpath(given, folder.recorded)))
                tries += [base / beside for base in folder.own]
            tries += [base / given for base in folder.own]
            if not folder.moved:
                tries.append(given)
        for path in tries:
            if path.is_dir():
                return {"": path}
        return {}
    return _default_folders([base / ROUTING_FOLDER for base in folder.own], checkpoint)


def _default_folders(roots: Iterable[Path], checkpoint: str) -> dict[str, Path]:
    """``<root>/<checkpoint>__<hash>`` folders by hash (the adapter's default layout)."""
    prefix = f"{checkpoint}__"
    found: dict[str, Path] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and folder.name.startswith(prefix) and len(folder.name) > len(prefix):
                found.setdefault(folder.name[len(prefix):], folder)
    return found


def _moved_note(run: RunRecord, folder: RunFolder, args: Mapping[str, str], checkpoint: str) -> str | None:
    """Why a copied or moved run has no routing although the folder it was written to has some."""
    if not folder.moved or folder.recorded is None or args.get("routing_dir"):
        return None
    if not _default_folders([folder.recorded / ROUTING_FOLDER], checkpoint):
        return None
    return (f"{run.results_path}: no routing records beside this run; it was written to {folder.recorded}, whose "
            f"{ROUTING_FOLDER}/ is not read (this run folder was copied or moved from there): copy {ROUTING_FOLDER}/ "
            f"along to report its routing")


def _declared_hash(args: Mapping[str, str]) -> str | None:
    """The run's intervention hash from its model_args, or None when its spec cannot be read here."""
    if not any(k in args for k in INTERVENTION_KEYS):
        return NO_INTERVENTION
    if args.get("intervention_hash"):
        return str(args["intervention_hash"]).strip()  # pinned when the run was made; its file may have changed
    from rd_eval.fileio.jsonio import JsonFileError
    from rd_eval.routing.settings import pop_routing_settings
    from rd_eval.routing.spec import SpecError

    try:
        return pop_routing_settings(dict(args)).intervention_hash
    except (SpecError, JsonFileError, ValueError, OSError):
        return None


def _sample_keys(run: RunRecord) -> set[tuple[str, int]]:
    frame = _load_samples(run)
    return {(str(t), int(d)) for t, d in zip(frame["task"], frame["doc_id"], strict=True)}


def _load_samples(run: RunRecord) -> pd.DataFrame:
    try:
        return load_paired_samples(run)
    except ReportInputError:
        raise
    except ValueError as exc:
        raise ReportInputError(str(exc)) from None


def _resolve_setting(run: RunRecord, cache: RoutingCache) -> tuple[str, str, RoutingSource | None, str | None]:
    """(checkpoint, intervention hash, the run's routing records or None, a note on missing routing) of a run."""
    args = parse_model_args(run.model_args)
    checkpoint = sanitize_checkpoint(args["pretrained"]) if args.get("pretrained") else (run.model or "model")
    folder = run_folder(run)
    candidates = _routing_candidates(folder, args, checkpoint)
    declared = _declared_hash(args)

    def source(hash_: str, path: Path | None) -> RoutingSource | None:
        return None if path is None else RoutingSource(path, _run_owner(run, args, hash_))

    if "" in candidates:  # an explicit routing_dir: its records (of this model and checkpoint) name their setting
        shared = candidates[""]
        if declared is None:
            mine = _select(cache.get(shared), _run_owner(run, args, None), shared)
            hashes = sorted({str(r.get("intervention")) for r in mine})
            if len(hashes) != 1:
                raise ReportInputError(
                    f"{run.results_path}: routing_dir {shared} holds records of interventions {hashes} for this "
                    f"model and checkpoint and the run's intervention spec cannot be read to choose; keep the spec "
                    f"file from model_args readable"
                )
            declared = hashes[0]
        return checkpoint, declared, source(declared, shared), None
    note = None if candidates else _moved_note(run, folder, args, checkpoint)
    if declared is not None:
        return checkpoint, declared, source(declared, candidates.get(declared)), note
    # The spec named in model_args is not readable here: match the run to a routing folder by its documents.
    options = {h: p for h, p in candidates.items() if h != NO_INTERVENTION}
    if len(options) == 1:
        (only, path), = options.items()
        return checkpoint, only, source(only, path), None
    if options:
        keys = _sample_keys(run)
        cover = {
            h: len(keys & {(str(r["task"]), int(r["doc_id"])) for r in cache.of_run(source(h, p))})
            for h, p in options.items()
        }
        best = max(cover.values())
        winners = [h for h, c in cover.items() if c == best]
        if best > 0 and len(winners) == 1:
            return checkpoint, winners[0], source(winners[0], options[winners[0]]), None
        raise ReportInputError(
            f"{run.results_path}: cannot tell which routing folder belongs to this run (candidates "
            f"{sorted(str(p) for p in options.values())}); its intervention spec in model_args is not readable "
            f"here; keep that file available or pass routing_dir= in model_args"
        )
    spec_args = {k: args[k] for k in INTERVENTION_KEYS if k in args}
    return checkpoint, f"unresolved-{canonical_hash(spec_args, 8)}", None, note


def find_settings(run_dirs: Sequence[Path], cache: RoutingCache) -> list[RunSetting]:
    runs: dict[Path, RunRecord] = {}
    for folder in run_dirs:
        path = Path(folder)
        try:
            found = find_runs(path)
        except ValueError as exc:
            raise ReportInputError(str(exc)) from None
        for run in found:
            runs[run.results_path.resolve()] = run
    if not runs:
        raise ReportInputError(f"no lmms-eval runs found under {[str(p) for p in run_dirs]}")
    grouped: dict[tuple[str, str, str], list[tuple[RunRecord, RoutingSource | None, str | None]]] = {}
    for run in sorted(runs.values(), key=lambda r: (r.timestamp, str(r.results_path))):
        checkpoint, intervention, routing, note = _resolve_setting(run, cache)
        grouped.setdefault((run.model, checkpoint, intervention), []).append((run, routing, note))
    settings = []
    # Plain setting of each model first, then its interventions.
    order = sorted(grouped, key=lambda k: (k[0], k[1], k[2] != NO_INTERVENTION, k[2]))
    for model_id, checkpoint, intervention in order:
        members = grouped[(model_id, checkpoint, intervention)]
        sources = tuple(dict.fromkeys(routing for _, routing, _ in members if routing is not None))
        folders = tuple(dict.fromkeys(routing.folder for routing in sources))
        notes = tuple(dict.fromkeys(note for _, _, note in members if note))
        settings.append(RunSetting(model_id, checkpoint, intervention, tuple(r for r, _, _ in members), folders,
                                   sources, notes))
    return settings


def unfinished_routing(run_dirs: Sequence[Path], settings: Sequence[RunSetting]) -> list[Path]:
    """Default-layout routing folders (``<out>/rd_routing/<checkpoint>__<hash>/``) under `run_dirs` that no run
    found there reads: the routing of an lmms-eval run that did not finish (no results were written)."""
    used = {source.folder.resolve() for setting in settings for source in setting.routing_sources}
    found: set[Path] = set()
    for root in map(Path, run_dirs):
        if not root.is_dir():
            continue
        for shard in root.rglob(ROUTING_SHARD_GLOB):
            folder = shard.parent
            if folder.parent.name == ROUTING_FOLDER and folder.resolve() not in used:
                found.add(folder)
    return sorted(found)


def samples_of_setting(setting: RunSetting) -> tuple[pd.DataFrame, int]:
    """All samples of a setting's runs; a (task, doc_id) run again by a later run takes the later outcome."""
    frames = [_load_samples(run) for run in setting.runs]
    df = pd.concat(frames, ignore_index=True)
    dup = df.duplicated(subset=["task", "doc_id"], keep="last")
    return df.loc[~dup].reset_index(drop=True), int(dup.sum())


# ---------------------------------------------------------------------------------------------------------
# Routing statistics of one setting


def _scope_array(counts: Mapping[str, Any], scope: str, where: str) -> np.ndarray:
    """One base scope's [sites, experts] counts, validated (not copied where it already is a count array)."""
    if scope not in counts:
        raise ReportInputError(f"{where}: 'counts' lacks scope {scope!r}; has {sorted(counts)}")
    value = counts[scope]
    if isinstance(value, np.ndarray) and value.dtype.kind == "u" and value.ndim == 2 and value.size:
        return value  # sidecar arrays (records version 2): unsigned integers are finite and non-negative by type
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ReportInputError(f"{where}: 'counts.{scope}' must be a [sites][experts] array of numbers") from None
    if arr.ndim != 2 or arr.size == 0 or not np.isfinite(arr).all() or (arr < 0).any():
        raise ReportInputError(
            f"{where}: 'counts.{scope}' must be a non-empty [sites][experts] array of non-negative counts, "
            f"got shape {arr.shape}"
        )
    return arr


def _scope_counts(record: Mapping[str, Any], scopes: Iterable[str], where: str) -> np.ndarray:
    """The record's counts summed over `scopes` (base scopes), as a new float64 [sites, experts] array."""
    counts = record.get("counts")
    if not isinstance(counts, Mapping):
        raise ReportInputError(f"{where}: 'counts' must be an object keyed by base scope, got {type(counts).__name__}")
    names = tuple(scopes)
    arrays = [_scope_array(counts, scope, where) for scope in names]
    for scope, arr in zip(names[1:], arrays[1:], strict=True):
        if arr.shape != arrays[0].shape:
            raise ReportInputError(f"{where}: 'counts.{scope}' has shape {arr.shape}, other scopes {arrays[0].shape}")
    if len(arrays) == 1:
        return arrays[0].astype(np.float64)  # a copy: never hand out the record's own array
    total = np.add(arrays[0], arrays[1], dtype=np.float64)  # one pass, whatever the stored dtype
    for arr in arrays[2:]:
        total += arr
    return total


def _record_index(setting: RunSetting, cache: RoutingCache) -> dict[tuple[str, int], tuple[dict[str, Any], Path]]:
    """The setting's records by (task, doc_id): each run's own records (model, checkpoint, setting) from its
    routing folder, in run order, a later run's record winning."""
    index: dict[tuple[str, int], tuple[dict[str, Any], Path]] = {}
    for source in setting.routing_sources:
        for record in cache.of_run(source):
            try:
                key = (str(record["task"]), int(record["doc_id"]))
            except (KeyError, TypeError, ValueError):
                raise ReportInputError(f"{source.folder}: a routing record lacks a valid 'task'/'doc_id'") from None
            index[key] = (record, source.folder)
    return index


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


PAIR_CHUNK = 256  # pairs whose [sites, experts] counts are held at once for the vectorised JSD


def _pair_jsd_chunks(
    pairs: Iterable[tuple[np.ndarray | None, np.ndarray | None, int]],
) -> Iterable[tuple[np.ndarray, list[int], int]]:
    """Per chunk of pairs with records in both forms: (JSD [pairs, sites], image correctness, pairs without
    a record). Memory is bounded by PAIR_CHUNK, not by the number of pairs."""
    img_chunk: list[np.ndarray] = []
    txt_chunk: list[np.ndarray] = []
    correct: list[int] = []
    no_record = 0
    for img, txt, img_correct in pairs:
        if img is None or txt is None:
            no_record += 1
            continue
        img_chunk.append(img)
        txt_chunk.append(txt)
        correct.append(img_correct)
        if len(img_chunk) == PAIR_CHUNK:
            yield np.asarray(jsd_base2(np.stack(img_chunk), np.stack(txt_chunk))), correct, no_record
            img_chunk, txt_chunk, correct, no_record = [], [], [], 0
    if img_chunk or no_record:
        jsd = np.asarray(jsd_base2(np.stack(img_chunk), np.stack(txt_chunk))) if img_chunk else np.zeros((0, 0))
        yield jsd, correct, no_record


def _benchmark_routing(
    benchmark: str,
    part: pd.DataFrame,
    index: Mapping[tuple[str, int], tuple[dict[str, Any], Path]],
    *,
    scope: str,
    n_boot: int,
    seed: int,
    boot_weights: dict[tuple[int, int, int], list[np.ndarray]] | None = None,
) -> dict[str, Any] | None:
    paired, _ = pair_forms(part)
    where_doc: dict[tuple[str, str], tuple[str, int]] = {}
    for task, doc_id, form, pair_id in zip(part["task"], part["doc_id"], part["form"], part["pair_id"], strict=True):
        where_doc[(str(pair_id), str(form))] = (str(task), int(doc_id))

    shape: tuple[int, int] | None = None
    shape_where = ""
    table: SiteTable | None = None  # what the site rows are: the records' site table (old records: row = layer)

    def counts_of(key: tuple[str, int], scopes: Iterable[str]) -> np.ndarray | None:
        nonlocal shape, shape_where, table
        hit = index.get(key)
        if hit is None or hit[0].get("error") is not None or hit[0].get("counts") is None:
            return None
        record, folder = hit
        where = f"{folder}: record task {key[0]!r} doc_id {key[1]}"
        arr = _scope_counts(record, scopes, where)
        try:
            own = record_site_table(record, arr.shape[0], where)
        except ValueError as exc:
            raise ReportInputError(str(exc)) from None
        if shape is None:
            shape, shape_where, table = arr.shape, where, own
        elif arr.shape != shape:
            raise ReportInputError(
                f"{where}: counts have [sites, experts] {list(arr.shape)} but {shape_where} has {list(shape)}; "
                f"were records of different models mixed in one routing folder?"
            )
        elif table is not None and not table.same_layout(own):
            raise ReportInputError(f"{where}: its site table differs from that of {shape_where}; were records of "
                                   f"different models mixed in one routing folder?")
        elif table is not None and table.legacy:
            table = own  # a recorded table says more than an old record's row = layer
        return arr

    def pair_counts() -> Iterable[tuple[np.ndarray | None, np.ndarray | None, int]]:
        for pair_id, img_correct in zip(paired.index, paired["img"], strict=True):
            img = counts_of(where_doc[(str(pair_id), "img")], SCOPES[scope])
            txt = counts_of(where_doc[(str(pair_id), "txt")], SCOPES[scope])
            yield img, txt, int(img_correct)

    all_rows: list[np.ndarray] = []
    all_correct: list[int] = []
    no_record = 0
    for jsd, correct, missing in _pair_jsd_chunks(pair_counts()):
        no_record += missing
        all_rows.extend(jsd)
        all_correct.extend(correct)

    # Separation pools every image-form document's counts: running sums, not a stack of all documents.
    image_total: np.ndarray | None = None
    text_total: np.ndarray | None = None
    n_separation = 0
    img_rows = part[(part["form"] == "img")]
    for task, doc_id in zip(img_rows["task"], img_rows["doc_id"], strict=True):
        key = (str(task), int(doc_id))
        image_counts = counts_of(key, ("prompt_image",))
        text_counts = counts_of(key, ("prompt_text",))
        if image_counts is not None and text_counts is not None:
            image_total = image_counts if image_total is None else image_total + image_counts
            text_total = text_counts if text_total is None else text_total + text_counts
            n_separation += 1

    if shape is None or table is None:
        return None
    n_sites = shape[0]
    band = band_sites(n_sites, BAND_FRACTIONS, table)
    # The sites a pair is compared on: all of them, but for a model with expert groups, not a group's sites that
    # no pair routes in both forms (ERNIE's vision router never sees a text twin: its JSD is undefined for every
    # pair, which would otherwise drop every pair).
    jsd_all = np.stack(all_rows) if all_rows else np.zeros((0, n_sites))
    compared = list(range(n_sites))
    if table.grouped and len(jsd_all):
        compared = [c for c in compared if np.isfinite(jsd_all[:, c]).any()] or compared
    finite = np.isfinite(jsd_all[:, compared]).all(axis=1)
    no_mass = int((~finite).sum())
    rows = list(jsd_all[finite][:, compared])
    img_correct = [c for c, ok in zip(all_correct, finite, strict=True) if ok]
    separation = (
        modality_separation(image_total, text_total) if image_total is not None and text_total is not None
        else np.full(n_sites, np.nan)
    )
    stacked = np.stack(rows) if rows else None
    summary = (layer_summary(stacked, n_boot, seed, level=LEVEL, weights_cache=boot_weights)
               if stacked is not None else None)
    column = {site: i for i, site in enumerate(compared)}
    plain = table.is_plain
    layers = []
    for site in range(n_sites):
        at = column.get(site)
        shown = summary is not None and at is not None
        layers.append({
            "site": site,
            "in_band": site in band,
            "jsd_mean": summary.mean[at] if shown else None,
            "ci_low": summary.ci_low[at] if shown else None,
            "ci_high": summary.ci_high[at] if shown else None,
            "separation": _nan_to_none(float(separation[site])),
        } | ({} if plain else {"moe_layer": table.rows[site].moe_index, "group": table.rows[site].group,
                                "decoder_layer": table.rows[site].layer}))
    correlation: dict[str, Any] | None = None
    mid_cols = [column[site] for site in band if site in column]
    if stacked is not None and mid_cols:
        mid = stacked[:, mid_cols].mean(axis=1)
        corr = divergence_correctness_correlation(mid, np.asarray(img_correct))
        correlation = {
            "n": corr.n, "n_img_correct": corr.n_correct, "r": _nan_to_none(corr.r), "p": _nan_to_none(corr.p),
            "mid_band_jsd_mean": float(mid.mean()),
        }
    return {
        "benchmark": benchmark,
        "n_sites": n_sites,
        "n_experts": shape[1],
        "band_sites": list(band),
        **({} if plain else {"n_moe_layers": table.num_moe_layers, "groups": list(table.groups),
                             "pair_sites": compared}),
        "n_pairs": len(rows),
        "n_pairs_without_record": no_record,
        "n_pairs_without_scope_tokens": no_mass,
        "n_separation_docs": n_separation,
        "layers": layers,
        "correlation": correlation,
    }


def _setting_routing(
    setting: RunSetting, df: pd.DataFrame, cache: RoutingCache, *, scope: str, n_boot: int, seed: int
) -> dict[str, Any] | None:
    if not setting.routing_dirs:
        return None
    index = _record_index(setting, cache)
    benchmarks = []
    bench = df["task"].astype(str).map(benchmark_of)
    for name, part in df.groupby(bench, sort=True):
        result = _benchmark_routing(str(name), part, index, scope=scope, n_boot=n_boot, seed=seed,
                                    boot_weights=cache.boot_weights)
        if result is not None:
            benchmarks.append(result)
    return {"routing_dirs": [str(p) for p in setting.routing_dirs], "benchmarks": benchmarks}


def _setting_flips(setting: RunSetting, df: pd.DataFrame, cache: RoutingCache) -> dict[str, Any] | None:
    """The intervention's measured effect on routing (`rd_eval.analysis.flips`): over all of the setting's documents
    and per benchmark. None for a plain setting, or when no record of the setting carries the effect."""
    if setting.intervention == NO_INTERVENTION or not setting.routing_dirs:
        return None
    index = _record_index(setting, cache)
    by_benchmark: dict[str, list[Any]] = {}
    table: SiteTable | None = None  # what the site rows are (the first record with an effect says)
    for task, doc_id in zip(df["task"].astype(str), df["doc_id"], strict=True):
        hit = index.get((task, int(doc_id)))
        if hit is None or hit[0].get("error") is not None or hit[0].get("counts") is None:
            continue
        where = f"{hit[1]}: record task {task!r} doc_id {int(doc_id)}"
        try:
            effect = flips.record_effect(hit[0], where)
            if effect is not None and table is None:
                table = record_site_table(hit[0], effect.shape[0], where)
        except ValueError as exc:
            raise ReportInputError(str(exc)) from None
        by_benchmark.setdefault(benchmark_of(task), []).append(effect)
    try:
        overall = flips.effect_summary(e for part in by_benchmark.values() for e in part)
        benchmarks = {name: flips.effect_summary(part) for name, part in sorted(by_benchmark.items())}
    except ValueError as exc:
        raise ReportInputError(f"setting {setting.key}: {exc}") from None
    if overall is None:
        return None
    if table is not None and not table.is_plain:  # name each site's MoE layer, group and decoder layer
        for summary in (overall, *benchmarks.values()):
            for site in (summary or {}).get("sites", ()):
                row = table.rows[site["site"]]
                site |= {"moe_layer": row.moe_index, "group": row.group, "decoder_layer": row.layer}
    return {"overall": overall, "benchmarks": {k: v for k, v in benchmarks.items() if v is not None}}


def _flip_rates(setting_flips: Mapping[str, Any] | None) -> dict[str, float | None] | None:
    """Per benchmark, the flip rate shown beside the gain (None: not measured)."""
    if not setting_flips:
        return None
    return {name: b["flip_rate"] for name, b in setting_flips["benchmarks"].items()}


# ---------------------------------------------------------------------------------------------------------
# The report


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tuples -> lists, numpy scalars -> Python, paths -> str."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _label(setting: RunSetting) -> str:
    plain = setting.intervention == NO_INTERVENTION
    return f"{setting.checkpoint} [{'plain' if plain else setting.intervention}]"


def _check_options(scope: str, n_boot: int, seed: int) -> None:
    if scope not in SCOPES:
        raise ReportInputError(f"scope {scope!r} invalid; valid: {', '.join(SCOPES)}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ReportInputError(f"n_boot must be a positive integer, got {n_boot!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ReportInputError(f"seed must be a non-negative integer, got {seed!r}")


def build_report(
    run_dirs: Sequence[Path], *, scope: str = "prompt", n_boot: int = 10000, seed: int = 0
) -> dict[str, Any]:
    """The report of every run under ``run_dirs`` as a JSON-serialisable dict (layout in the module doc)."""
    _check_options(scope, n_boot, seed)
    if isinstance(run_dirs, (str, Path)) or not run_dirs:
        raise ReportInputError("run_dirs must be a non-empty list of run folders")
    cache = RoutingCache()
    settings = find_settings([Path(p) for p in run_dirs], cache)
    frames: dict[str, tuple[pd.DataFrame, int]] = {s.key: samples_of_setting(s) for s in settings}
    bases = {(s.model_id, s.checkpoint): s for s in settings if s.intervention == NO_INTERVENTION}

    out_settings = []
    for setting in settings:
        df, replaced = frames[setting.key]
        base = bases.get((setting.model_id, setting.checkpoint))
        if setting.intervention == NO_INTERVENTION:
            role, base_key = "base", None
        elif base is not None:
            role, base_key = "intervened", base.key
        else:
            role, base_key = "no_base", None
        try:
            if role == "intervened":
                assert base is not None
                gaps = compare_runs(frames[base.key][0], df, n_boot=n_boot, seed=seed)
            else:
                gaps = compare_runs(df, None, n_boot=n_boot, seed=seed)
        except ReportInputError:
            raise
        except ValueError as exc:
            files = ", ".join(str(r.results_path) for r in setting.runs)
            raise ReportInputError(f"setting {setting.key} ({files}): {exc}") from None
        setting_flips = _setting_flips(setting, df, cache)
        if setting_flips is not None:
            gaps["flip_rates"] = _flip_rates(setting_flips)
        out_settings.append({
            "key": setting.key,
            "model_id": setting.model_id,
            "checkpoint": setting.checkpoint,
            "intervention": setting.intervention,
            "label": _label(setting),
            "role": role,
            "base": base_key,
            "runs": [
                {"results": str(r.results_path), "timestamp": r.timestamp, "model_args": r.model_args,
                 "tasks": list(r.tasks)}
                for r in setting.runs
            ],
            "n_samples": len(df),
            "n_samples_replaced_by_later_runs": replaced,
            "routing_notes": list(setting.routing_notes),
            "gaps": gaps,
            "routing": _setting_routing(setting, df, cache, scope=scope, n_boot=n_boot, seed=seed),
            "flips": setting_flips,
        })
    return _clean({
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "inputs": [str(p) for p in run_dirs],
        "notes": [unfinished_run_message([folder]) for folder in unfinished_routing(run_dirs, settings)],
        "scope": scope,
        "n_boot": n_boot,
        "seed": seed,
        "level": LEVEL,
        "band": {"fractions": list(BAND_FRACTIONS)},
        "settings": out_settings,
        "data_sources": data_provenance.report_rows(settings),
    })


# ---------------------------------------------------------------------------------------------------------
# Renderers


def _check_report(report: Any) -> Mapping[str, Any]:
    if not isinstance(report, Mapping) or report.get("format") != REPORT_FORMAT or "settings" not in report:
        raise ReportInputError(f"not an rd-eval report; expected the dict of build_report (format {REPORT_FORMAT!r})")
    return report


def _f(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _p(x: Any) -> str:
    return "–" if x is None else (f"{x:.2g}" if x < 0.001 else f"{x:.3f}")


def _shift_headings(text: str) -> str:
    return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())


def _sites_text(bench: Mapping[str, Any]) -> str:
    """How many sites a benchmark's routing has: MoE layers, or sites over layers and groups."""
    if "n_moe_layers" not in bench:
        return f"{bench['n_sites']} MoE layers"
    groups = [g for g in bench["groups"] if g]
    return (f"{bench['n_sites']} routing sites ({bench['n_moe_layers']} MoE layers"
            + (f", groups {', '.join(groups)}" if groups else "") + f"; pair JSD over sites {bench['pair_sites']})")


def _site_cell(layer: Mapping[str, Any]) -> str:
    """A site as the per-site table shows it: its row, and where sites are not one per MoE layer, which MoE
    layer (and group) and decoder layer it is."""
    if "moe_layer" not in layer:
        return str(layer["site"])
    group = f" {layer['group']}" if layer["group"] else ""
    return f"{layer['site']} (MoE {layer['moe_layer']}{group}, layer {layer['decoder_layer']})"


def to_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: gap tables per setting, then routing divergence per setting and benchmark."""
    report = _check_report(report)
    level = int(round(100 * float(report["level"])))
    lo, hi = report["band"]["fractions"]
    lines = [
        "# rd-eval report",
        "",
        f"- Inputs: {', '.join(f'`{p}`' for p in report['inputs'])}",
        f"- Token scope for pair divergence: `{report['scope']}`; middle band = MoE-layer fractions {lo}-{hi}; "
        f"{level}% percentile bootstrap CIs over pairs ({report['n_boot']} resamples, seed {report['seed']}).",
        "- Settings (model id, checkpoint, intervention hash; `none` = plain):",
    ]
    for s in report["settings"]:
        extra = f", compared with `{s['base']}`" if s.get("base") else (
            ", no plain run of this model to compare with" if s["role"] == "no_base" else "")
        lines.append(f"  - `{s['key']}`: {len(s['runs'])} run(s), {s['n_samples']} samples{extra}")
        lines += [f"    - {note}" for note in s.get("routing_notes", ())]
        if (s.get("flips") or {}).get("overall", {}).get("no_op"):
            lines.append(f"    - **{flips.NO_OP}**")
    lines += [f"- Not reported: {note}" for note in report.get("notes", ())]
    lines += data_provenance.markdown_lines(report.get("data_sources"))
    for s in report["settings"]:
        title = f"Gaps: {s['label']}" + (" vs plain" if s["role"] == "intervened" else "")
        lines += ["", _shift_headings(gaps_markdown(s["gaps"], title=title)).rstrip()]
    lines += ["", "## Routing divergence", ""]
    lines.append(
        "Per MoE layer (site): JSD (bits, 0-1) between the image form's and the text twin's expert-selection "
        "distributions, mean over pairs with CI. Separation: JSD between the pooled image-token and pooled "
        "text-token selection distributions of the image-form documents (how differently the two modalities "
        "are routed at that layer). r: point-biserial correlation of a pair's middle-band JSD with "
        "image-form correctness."
    )
    any_routing = False
    for s in report["settings"]:
        routing = s.get("routing")
        if not routing:
            continue
        for b in routing["benchmarks"]:
            any_routing = True
            c = b.get("correlation")
            lines += [
                "",
                f"### {b['benchmark']}: {s['label']}",
                "",
                f"- {b['n_pairs']} pairs ({b['n_pairs_without_record']} without routing records, "
                f"{b['n_pairs_without_scope_tokens']} without tokens in scope); {_sites_text(b)} x "
                f"{b['n_experts']} experts; band sites {b['band_sites']}; separation over "
                f"{b['n_separation_docs']} image-form documents.",
            ]
            if c:
                stat = (
                    "r undefined (needs 3+ pairs, both outcomes and varying JSD)" if c["r"] is None
                    else f"r = {_f(c['r'])}, p = {_p(c['p'])}"
                )
                lines.append(
                    f"- Middle-band JSD vs image correctness: {stat} (n = {c['n']}, {c['n_img_correct']} image "
                    f"forms correct; mean band JSD {_f(c['mid_band_jsd_mean'])})"
                )
            lines += [
                "",
                f"| site | band | JSD mean [{level}% CI] | separation |",
                "|---:|:---:|---:|---:|",
            ]
            for layer in b["layers"]:
                jsd = (
                    "–" if layer["jsd_mean"] is None
                    else f"{_f(layer['jsd_mean'])} [{_f(layer['ci_low'])}, {_f(layer['ci_high'])}]"
                )
                lines.append(md_row([_site_cell(layer), "●" if layer["in_band"] else "", jsd,
                                     _f(layer["separation"])]))
    if not any_routing:
        lines += ["", "No routing records found beside these runs (run with an rd_* model and record_routing on)."]
    lines += _flip_section(report)
    return "\n".join(lines) + "\n"


def _flip_section(report: Mapping[str, Any]) -> list[str]:
    """Markdown: per intervened setting, the per-layer flip table (`rd_eval.analysis.flips`)."""
    measured = [s for s in report["settings"] if s.get("flips")]
    if not measured:
        return []
    lines = ["", "## Intervention effect on routing", "",
             "Per steered MoE layer (site), against the model's own unsteered selection, over the tokens in the "
             "intervention's token scope (padding never counted): flipped = tokens whose selected expert set "
             "changed; flip rate = flipped / tokens; newly selected = experts of the intervention's set selected "
             "after but not before (token x expert). The band mean is the mean over the steered layers. λ is "
             "not comparable across families; the flip rate is."]
    for s in measured:
        lines += flips.flip_markdown(s["flips"]["overall"], title=f"Flip rate: {s['label']}")
    return lines


CSV_COLUMNS = (
    "model_id", "checkpoint", "intervention", "role", "benchmark",
    "n_pairs", "acc_img", "acc_txt", "gap", "gap_ci_low", "gap_ci_high", "gap_p_mcnemar",
    "gain", "gain_ci_low", "gain_ci_high", "text_cost", "recovery", "flip_rate",
    "routing_n_pairs", "corr_r", "corr_p",
    "site", "in_band", "jsd_mean", "jsd_ci_low", "jsd_ci_high", "separation",
)
CSV_DOC = """One row per setting x benchmark x MoE site (site columns empty when the setting has no routing records).
model_id, checkpoint, intervention: the setting (intervention 'none' = plain); role: base / intervened / no_base.
n_pairs, acc_img, acc_txt, gap, gap_ci_low, gap_ci_high, gap_p_mcnemar: this setting's own gap (percent,
points; gap = acc_txt - acc_img) over pairs complete in both forms.
gain, gain_ci_low, gain_ci_high, text_cost, recovery: intervened vs the plain setting (points), intervened rows only.
flip_rate: the intervention's measured flip rate on the benchmark (share of steered tokens whose selected expert
set changed, mean over the steered sites, 0-1; empty when its routing records do not carry it).
routing_n_pairs, corr_r, corr_p: pairs with routing in both forms; point-biserial r / p of middle-band JSD vs
image correctness. site, in_band, jsd_mean, jsd_ci_low, jsd_ci_high: per-site pair JSD (bits) and bootstrap CI
(site: the row of the routing arrays; which MoE layer and group it is: the JSON/markdown report's site table);
separation: per-site JSD between pooled image-token and text-token routing of image-form documents."""


def _csv_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for s in report["settings"]:
        routing = {b["benchmark"]: b for b in (s.get("routing") or {}).get("benchmarks", [])}
        for row in s["gaps"]["rows"]:
            run = row["intervened"] if s["role"] == "intervened" else row["base"]
            if run is None:
                continue
            effect = row.get("effect") if s["role"] == "intervened" else None
            base = {
                "model_id": s["model_id"], "checkpoint": s["checkpoint"], "intervention": s["intervention"],
                "role": s["role"], "benchmark": row["benchmark"], "n_pairs": run["n_pairs"],
                "acc_img": run["acc_img"], "acc_txt": run["acc_txt"], "gap": run["gap"]["diff"],
                "gap_ci_low": run["gap"]["ci_low"], "gap_ci_high": run["gap"]["ci_high"],
                "gap_p_mcnemar": run["gap"]["p_mcnemar"],
                "gain": effect["gain"]["diff"] if effect else None,
                "gain_ci_low": effect["gain"]["ci_low"] if effect else None,
                "gain_ci_high": effect["gain"]["ci_high"] if effect else None,
                "text_cost": effect["text_cost"]["diff"] if effect else None,
                "recovery": effect["recovery"] if effect else None,
                "flip_rate": (s["gaps"].get("flip_rates") or {}).get(row["benchmark"]) if effect else None,
            }
            bench = routing.get(row["benchmark"])
            if bench is None:
                rows.append(base)
                continue
            corr = bench.get("correlation") or {}
            base |= {"routing_n_pairs": bench["n_pairs"], "corr_r": corr.get("r"), "corr_p": corr.get("p")}
            for layer in bench["layers"]:
                rows.append(base | {
                    "site": layer["site"], "in_band": layer["in_band"], "jsd_mean": layer["jsd_mean"],
                    "jsd_ci_low": layer["ci_low"], "jsd_ci_high": layer["ci_high"], "separation": layer["separation"],
                })
    return rows


def to_csv(report: Mapping[str, Any]) -> str:
    """One tidy table: a row per setting x benchmark x MoE site; columns in :data:`CSV_COLUMNS` (see CSV_DOC)."""
    report = _check_report(report)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in _csv_rows(report):
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS})
    return buffer.getvalue()


def to_json(report: Mapping[str, Any]) -> str:
    """The report dict as indented JSON (no NaN: undefined statistics are null)."""
    return json.dumps(_clean(_check_report(report)), indent=2, allow_nan=False) + "\n"


def figure_png(draw: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    draw(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plots(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(caption, base64 PNG) per benchmark: pair JSD per layer with CI band, and the separation curve."""
    by_bench: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for s in report["settings"]:
        for b in (s.get("routing") or {}).get("benchmarks", []):
            by_bench.setdefault(b["benchmark"], []).append((s["label"], b))
    plots = []
    for name, entries in sorted(by_bench.items()):
        def draw(fig: Any, entries: list[tuple[str, Mapping[str, Any]]] = entries) -> None:
            ax_jsd, ax_sep = fig.subplots(1, 2)
            for label, b in entries:
                sites = [layer["site"] for layer in b["layers"]]
                mean = [np.nan if v is None else v for v in (layer["jsd_mean"] for layer in b["layers"])]
                low = [np.nan if v is None else v for v in (layer["ci_low"] for layer in b["layers"])]
                high = [np.nan if v is None else v for v in (layer["ci_high"] for layer in b["layers"])]
                (line,) = ax_jsd.plot(sites, mean, marker="o", label=label)
                ax_jsd.fill_between(sites, low, high, color=line.get_color(), alpha=0.2)
                sep = [np.nan if layer["separation"] is None else layer["separation"] for layer in b["layers"]]
                ax_sep.plot(sites, sep, marker="s", label=label)
            band = entries[0][1]["band_sites"]
            for ax in (ax_jsd, ax_sep):
                if band:
                    ax.axvspan(min(band) - 0.5, max(band) + 0.5, color="grey", alpha=0.12, label="middle band")
                ax.set_xlabel("MoE layer (site)")
                ax.set_ylim(bottom=0)
                ax.grid(alpha=0.3)
            ax_jsd.set_ylabel("JSD img vs txt (bits)")
            ax_jsd.set_title("Pair routing divergence", fontsize=10)
            ax_sep.set_ylabel("JSD image vs text tokens (bits)")
            ax_sep.set_title("Visual vs text routing separation", fontsize=10)
            ax_jsd.legend(fontsize=7)

        plots.append((f"{name}: routing divergence by layer", figure_png(draw)))
    return plots


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=False)
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)


def _markdown_to_html(markdown: str) -> str:
    """The subset of markdown :func:`to_markdown` writes: headings, bullets, pipe tables, paragraphs."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(split_md_row(lines[i]))
                i += 1
            body = [r for r in block[1:] if not all(set(c) <= set("-:") and c for c in r)]
            head = "".join(f"<th>{_inline(c)}</th>" for c in block[0])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif line.lstrip().startswith("- "):
            items = []
            while i < len(lines) and lines[i].lstrip().startswith("- "):
                items.append(f"<li>{_inline(lines[i].lstrip()[2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
            i += 1
        else:
            i += 1
    return "\n".join(out)


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}th,td{border:1px solid #ccc;padding:3px 7px}
th{background:#f2f2f2}td{text-align:right}code{background:#f4f4f4;padding:0 3px}figure{margin:1em 0}
img{max-width:100%}figcaption{font-size:.9em;color:#555}"""


def to_html(report: Mapping[str, Any]) -> str:
    """One self-contained HTML page (tables + base64 PNG plots; no external resources)."""
    report = _check_report(report)
    figures = "\n".join(
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{png}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, png in _plots(report)
    )
    body = _markdown_to_html(to_markdown(report))
    plots = f"<h2>Plots</h2>\n{figures}" if figures else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rd-eval report</title>"
        f"<style>{_STYLE}</style></head><body>\n{body}\n{plots}\n</body></html>\n"
    )
