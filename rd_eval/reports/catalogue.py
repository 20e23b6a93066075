"""The run catalogue: which lmms-eval runs are under some folders, the settings they form and where their data is.

A *setting* is one (lmms-eval model id, checkpoint, intervention hash); the hash is ``"none"`` for a plain run,
otherwise the content hash of the intervention spec named in the run's ``model_args`` (the same hash the adapter
puts in routing records and in the routing folder's name). Tables and plots name a setting by what it is
(``RunSetting.name``: "plain", "soft λ=1, domain experts, band 0.25–0.75", :mod:`rd_eval.routing.describe`), read
from the spec its runs' ``model_args`` name; a spec no longer readable (or changed since: its hash differs) is
named "intervention spec not readable here (<hash>)". ``model_args`` are read with lmms-eval's own parser
(:mod:`rd_eval.vocabulary.model_args`), so the catalogue sees the values the adapter saw.

A run's routing records are in ``<output_path>/rd_routing/<checkpoint>__<hash>/`` (``routing_rank*.jsonl`` +
``.bin``), the output path found from the run's own results file, so a copied or moved run reads its own; or in
the ``routing_dir=`` its model_args give. A folder may hold records of several runs (a shared routing_dir): a run
reads only its own (its model id, ``pretrained`` and intervention hash).

A setting's perception check is the samples of its runs' perception tasks (``rd_<benchmark>_see``, the
``<date>_samples_rd_<benchmark>_see.jsonl`` beside a run's results): :meth:`RunCatalogue.perception_files` lists
them per benchmark, oldest run first. Several runs of one setting with a perception task are read like its paired
runs: all of them, a document judged again by a later run taking the later flag.

``report``, ``leaderboard`` and ``check`` all read runs through :func:`open_catalogue`. Input that cannot be
catalogued raises :class:`CatalogueError` naming the file and what is valid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rd_eval.fileio.jsonio import canonical_hash
from rd_eval.lmms.runs import ROUTING_SHARD_GLOB, RunRecord, find_runs, load_paired_samples
from rd_eval.routing.describe import PLAIN, setting_names
from rd_eval.routing.records import RecordOwner, checkpoint_label, select_records
from rd_eval.routing.shards import merge_routing_records
from rd_eval.routing.spec import InterventionSpec
from rd_eval.vocabulary.model_args import model_arg_text, parse_model_args, pretrained_of
from rd_eval.vocabulary.task_names import parse_task

__all__ = [
    "NO_INTERVENTION",
    "ROUTING_FOLDER",
    "CatalogueError",
    "RecordIndex",
    "RoutingCache",
    "RoutingSource",
    "RunCatalogue",
    "RunFolder",
    "RunSetting",
    "SettingSamples",
    "declared_hash",
    "open_catalogue",
    "run_folder",
]

ROUTING_FOLDER = "rd_routing"
NO_INTERVENTION = "none"
PERCEPTION_FORM = "see"  # the task-name form of a perception check (rd_<benchmark>_see)
INTERVENTION_KEYS = ("intervention", "expert_set", "intervention_mode", "intervention_lambda",
                     "intervention_band", "intervention_scope", "intervention_seed")

# A setting's routing records by (task, doc_id): the record and the folder it was read from.
RecordIndex = dict[tuple[str, int], tuple[dict[str, Any], Path]]


class CatalogueError(ValueError):
    """Runs or routing records that cannot be catalogued; the message names the file and what is valid."""


@dataclass(frozen=True)
class RoutingSource:
    """Where one run's routing records are, and whose records in that folder are the run's (a folder may hold
    records of other checkpoints, models or settings: an explicit routing_dir shared by several runs)."""

    folder: Path
    owner: RecordOwner


@dataclass(frozen=True)
class RunSetting:
    """The runs of one (model id, checkpoint, intervention hash), oldest first, and their routing records."""

    model_id: str
    checkpoint: str
    intervention: str
    runs: tuple[RunRecord, ...]
    routing_dirs: tuple[Path, ...]
    routing_sources: tuple[RoutingSource, ...] = ()
    routing_notes: tuple[str, ...] = ()
    spec: InterventionSpec | None = None  # None: plain, or a spec not readable here (see `name`)
    name: str = PLAIN  # what the setting is, in words (module doc); unique among the catalogue's settings

    @property
    def key(self) -> str:
        return f"{self.model_id}:{self.checkpoint}:{self.intervention}"

    @property
    def plain(self) -> bool:
        return self.intervention == NO_INTERVENTION

    @property
    def label(self) -> str:
        """``<checkpoint> [<name>]``: ``tiny [plain]``, ``tiny [soft λ=1, domain experts, band 0.25–0.75]``."""
        return f"{self.checkpoint} [{self.name}]"

    @property
    def results_files(self) -> str:
        return ", ".join(str(r.results_path) for r in self.runs)


@dataclass(frozen=True)
class SettingSamples:
    """All samples of a setting's runs (a (task, doc_id) run again by a later run takes the later outcome)."""

    frame: pd.DataFrame
    n_replaced: int  # samples of earlier runs replaced by a later run's


@dataclass
class RoutingCache:
    """Merged records of each routing folder, read once, and each run's own records among them."""

    records: dict[Path, list[dict[str, Any]]] = field(default_factory=dict)
    selected: dict[RoutingSource, list[dict[str, Any]]] = field(default_factory=dict)

    def get(self, folder: Path) -> list[dict[str, Any]]:
        if folder not in self.records:
            try:
                self.records[folder] = merge_routing_records(folder)
            except (ValueError, OSError, UnicodeDecodeError, KeyError, TypeError) as exc:
                raise CatalogueError(f"routing records in {folder} unreadable: {exc}") from None
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
        raise CatalogueError(str(exc)) from None


def _run_owner(run: RunRecord, args: Mapping[str, Any], intervention: str | None) -> RecordOwner:
    """Whose records are the run's: its rd_* model id (a model object handed to lmms-eval's Python API makes
    results that name no rd_* id; the model is then not checked), its pretrained= and its setting."""
    model = run.model if run.model.startswith("rd_") else None
    return RecordOwner(model=model, pretrained=pretrained_of(dict(args)), intervention=intervention)


# ---------------------------------------------------------------------------------------------------------
# Where a run's output folder and routing folders are


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


def _records_routing(args: Mapping[str, Any]) -> bool:
    return model_arg_text(args.get("record_routing", True)).strip().lower() not in ("false", "0", "no")


def _routing_candidates(folder: RunFolder, args: Mapping[str, Any], checkpoint: str) -> dict[str, Path]:
    """Routing folders that may belong to the run, by intervention hash ("" for an explicit routing_dir)."""
    if not _records_routing(args):
        return {}
    if args.get("routing_dir"):
        given = Path(model_arg_text(args["routing_dir"])).expanduser()
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


def _moved_note(run: RunRecord, folder: RunFolder, args: Mapping[str, Any], checkpoint: str) -> str | None:
    """Why a copied or moved run has no routing although the folder it was written to has some."""
    if not folder.moved or folder.recorded is None or args.get("routing_dir"):
        return None
    if not _default_folders([folder.recorded / ROUTING_FOLDER], checkpoint):
        return None
    return (f"{run.results_path}: no routing records beside this run; it was written to {folder.recorded}, whose "
            f"{ROUTING_FOLDER}/ is not read (this run folder was copied or moved from there): copy {ROUTING_FOLDER}/ "
            f"along to report its routing")


# ---------------------------------------------------------------------------------------------------------
# A run's setting


def declared_hash(args: Mapping[str, Any], folder_hashes: Iterable[str] = ()) -> str | None:
    """The run's intervention hash from its parsed model_args, or None when its spec cannot be read here.

    A hash pinned by ``intervention_hash=`` is taken as declared (the spec file may have changed since the run).
    lmms-eval's parser turns a hex hash of digits (and an ``e``) into a number: it is then read back as the one of
    `folder_hashes` (the run's routing folders) that the parser turns into the same number."""
    if not any(k in args for k in INTERVENTION_KEYS):
        return NO_INTERVENTION
    pinned = args.get("intervention_hash")
    if isinstance(pinned, str) and pinned.strip():
        return pinned.strip()
    if pinned is not None and pinned != "":
        from rd_eval.vocabulary.model_args import as_lmms_eval_parses

        for name in folder_hashes:
            parsed = as_lmms_eval_parses(name)
            if type(parsed) is type(pinned) and parsed == pinned:
                return name
        return model_arg_text(pinned)
    from rd_eval.fileio.jsonio import JsonFileError
    from rd_eval.routing.settings import pop_routing_settings
    from rd_eval.routing.spec import SpecError

    try:
        return pop_routing_settings(dict(args)).intervention_hash
    except (SpecError, JsonFileError, ValueError, OSError):
        return None


def _load_samples(run: RunRecord) -> pd.DataFrame:
    try:
        return load_paired_samples(run)
    except ValueError as exc:
        raise CatalogueError(str(exc)) from None


def _sample_keys(run: RunRecord) -> set[tuple[str, int]]:
    frame = _load_samples(run)
    return {(str(t), int(d)) for t, d in zip(frame["task"], frame["doc_id"], strict=True)}


@dataclass(frozen=True)
class _Resolved:
    checkpoint: str
    intervention: str
    routing: RoutingSource | None
    note: str | None


def _model_args(run: RunRecord) -> dict[str, Any]:
    try:
        return parse_model_args(run.model_args)
    except ValueError as exc:
        raise CatalogueError(f"{run.results_path}: {exc}") from None


def _resolve_setting(run: RunRecord, cache: RoutingCache) -> _Resolved:
    """The checkpoint, intervention hash, routing records (or None) and a note on missing routing of a run."""
    args = _model_args(run)
    pretrained = pretrained_of(args)
    checkpoint = checkpoint_label(pretrained) if pretrained else (run.model or "model")
    folder = run_folder(run)
    candidates = _routing_candidates(folder, args, checkpoint)
    declared = declared_hash(args, candidates)

    def resolved(hash_: str, path: Path | None, note: str | None = None) -> _Resolved:
        source = None if path is None else RoutingSource(path, _run_owner(run, args, hash_))
        return _Resolved(checkpoint, hash_, source, note)

    if "" in candidates:  # an explicit routing_dir: its records (of this model and checkpoint) name their setting
        shared = candidates[""]
        if declared is None:
            mine = _select(cache.get(shared), _run_owner(run, args, None), shared)
            hashes = sorted({str(r.get("intervention")) for r in mine})
            if len(hashes) != 1:
                raise CatalogueError(
                    f"{run.results_path}: routing_dir {shared} holds records of interventions {hashes} for this "
                    f"model and checkpoint and the run's intervention spec cannot be read to choose; keep the spec "
                    f"file from model_args readable"
                )
            declared = hashes[0]
        return resolved(declared, shared)
    note = None if candidates else _moved_note(run, folder, args, checkpoint)
    if declared is not None:
        return resolved(declared, candidates.get(declared), note)
    # The spec named in model_args is not readable here: match the run to a routing folder by its documents.
    options = {h: p for h, p in candidates.items() if h != NO_INTERVENTION}
    if len(options) == 1:
        (only, path), = options.items()
        return resolved(only, path)
    if options:
        keys = _sample_keys(run)
        cover = {}
        for h, p in options.items():
            source = RoutingSource(p, _run_owner(run, args, h))
            cover[h] = len(keys & {(str(r["task"]), int(r["doc_id"])) for r in cache.of_run(source)})
        best = max(cover.values())
        winners = [h for h, c in cover.items() if c == best]
        if best > 0 and len(winners) == 1:
            return resolved(winners[0], options[winners[0]])
        raise CatalogueError(
            f"{run.results_path}: cannot tell which routing folder belongs to this run (candidates "
            f"{sorted(str(p) for p in options.values())}); its intervention spec in model_args is not readable "
            f"here; keep that file available or pass routing_dir= in model_args"
        )
    # The label of a setting whose spec is gone: the spec's model_args as the run's model_args string wrote them.
    spec_args = {k: model_arg_text(args[k]) for k in INTERVENTION_KEYS if k in args}
    return resolved(f"unresolved-{canonical_hash(spec_args, 8)}", None, note)


# ---------------------------------------------------------------------------------------------------------
# The catalogue


def _find_settings(run_dirs: Sequence[Path], cache: RoutingCache) -> tuple[RunSetting, ...]:
    runs: dict[Path, RunRecord] = {}
    for folder in run_dirs:
        try:
            found = find_runs(Path(folder))
        except ValueError as exc:
            raise CatalogueError(str(exc)) from None
        for run in found:
            runs[run.results_path.resolve()] = run
    if not runs:
        raise CatalogueError(f"no lmms-eval runs found under {[str(p) for p in run_dirs]}")
    grouped: dict[tuple[str, str, str], list[tuple[RunRecord, _Resolved]]] = {}
    for run in sorted(runs.values(), key=lambda r: (r.timestamp, str(r.results_path))):
        found_setting = _resolve_setting(run, cache)
        key = (run.model, found_setting.checkpoint, found_setting.intervention)
        grouped.setdefault(key, []).append((run, found_setting))
    specs = {key[2]: _spec_of([run for run, _ in members], key[2]) for key, members in grouped.items()}
    names = setting_names({h: spec for h, spec in specs.items() if h == NO_INTERVENTION or spec is not None})
    settings = []
    # Plain setting of each model first, then its interventions.
    order = sorted(grouped, key=lambda k: (k[0], k[1], k[2] != NO_INTERVENTION, k[2]))
    for model_id, checkpoint, intervention in order:
        members = grouped[(model_id, checkpoint, intervention)]
        sources = tuple(dict.fromkeys(r.routing for _, r in members if r.routing is not None))
        folders = tuple(dict.fromkeys(source.folder for source in sources))
        notes = tuple(dict.fromkeys(r.note for _, r in members if r.note))
        name = names.get(intervention, f"intervention spec not readable here ({intervention})")
        settings.append(RunSetting(model_id, checkpoint, intervention, tuple(run for run, _ in members), folders,
                                   sources, notes, specs[intervention], name))
    return tuple(settings)


def _spec_of(runs: Sequence[RunRecord], intervention: str) -> InterventionSpec | None:
    """The intervention spec of a setting, from the first of its runs whose model_args name a spec readable here
    with the setting's hash (a spec file changed since the run is not the run's spec); None: plain or unreadable."""
    if intervention == NO_INTERVENTION:
        return None
    from rd_eval.fileio.jsonio import JsonFileError
    from rd_eval.routing.settings import pop_routing_settings
    from rd_eval.routing.spec import SpecError

    for run in runs:
        try:
            spec = pop_routing_settings(_model_args(run)).intervention
        except (SpecError, JsonFileError, ValueError, OSError):
            continue
        if spec is not None and spec.content_hash() == intervention:
            return spec
    return None


@dataclass(frozen=True)
class RunCatalogue:
    """The settings of every lmms-eval run under some folders (plain setting of each model first), with their
    samples and routing records read on demand (routing folders are read once, through `cache`)."""

    run_dirs: tuple[Path, ...]
    settings: tuple[RunSetting, ...]
    cache: RoutingCache = field(compare=False, repr=False)

    def base_of(self, setting: RunSetting) -> RunSetting | None:
        """The plain setting of the same model id and checkpoint (the setting itself when it is plain)."""
        for other in self.settings:
            if other.plain and (other.model_id, other.checkpoint) == (setting.model_id, setting.checkpoint):
                return other
        return None

    def samples(self, setting: RunSetting) -> SettingSamples:
        """All samples of a setting's runs; a (task, doc_id) run again by a later run takes the later outcome."""
        frame = pd.concat([_load_samples(run) for run in setting.runs], ignore_index=True)
        dup = frame.duplicated(subset=["task", "doc_id"], keep="last")
        return SettingSamples(frame.loc[~dup].reset_index(drop=True), int(dup.sum()))

    def perception_files(self, setting: RunSetting) -> dict[str, tuple[Path, ...]]:
        """Benchmark -> the samples files of the setting's perception tasks (``rd_<benchmark>_see``), its runs
        oldest first (module doc); empty when no run of the setting had one."""
        found: dict[str, list[Path]] = {}
        for run in setting.runs:
            for task, path in sorted(run.samples.items()):
                name = parse_task(task)
                if name.form == PERCEPTION_FORM:
                    found.setdefault(name.benchmark, []).append(Path(path))
        return {benchmark: tuple(paths) for benchmark, paths in found.items()}

    def records(self, setting: RunSetting) -> RecordIndex:
        """The setting's routing records by (task, doc_id): each run's own records (model, checkpoint, setting)
        from its routing folder, in run order, a later run's record winning."""
        index: RecordIndex = {}
        for source in setting.routing_sources:
            for record in self.cache.of_run(source):
                try:
                    key = (str(record["task"]), int(record["doc_id"]))
                except (KeyError, TypeError, ValueError):
                    raise CatalogueError(f"{source.folder}: a routing record lacks a valid 'task'/'doc_id'") from None
                index[key] = (record, source.folder)
        return index

    def unfinished_routing(self) -> list[Path]:
        """Default-layout routing folders (``<out>/rd_routing/<checkpoint>__<hash>/``) under the run folders that
        no run found there reads: the routing of an lmms-eval run that did not finish (no results were written)."""
        used = {source.folder.resolve() for setting in self.settings for source in setting.routing_sources}
        found: set[Path] = set()
        for root in self.run_dirs:
            if not root.is_dir():
                continue
            for shard in root.rglob(ROUTING_SHARD_GLOB):
                folder = shard.parent
                if folder.parent.name == ROUTING_FOLDER and folder.resolve() not in used:
                    found.add(folder)
        return sorted(found)


def open_catalogue(run_dirs: Sequence[Path | str]) -> RunCatalogue:
    """The catalogue of every lmms-eval run (``*_results.json``) under ``run_dirs``."""
    dirs = tuple(Path(p) for p in run_dirs)
    cache = RoutingCache()
    return RunCatalogue(dirs, _find_settings(dirs, cache), cache)
