"""The sweep folder and what is done in it, so a rerun resumes (docs/sweep.md, "Folder layout" and "Resume").

``OUT/sweep.json`` pins the folder to one config (its hash) and one expert set (its content hash): a sweep of
another config or other experts is refused, never mixed with these outputs. A setting is *complete* when its
run folder holds exactly one lmms-eval results json of the planned model_args covering every task, every samples
file lmms-eval promised in it, and a routing record of this setting for every logged document; a run killed
mid-setting leaves it *partial*, and :func:`clear_partial` removes its folder so its rerun writes what an
uninterrupted sweep writes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rd_eval.fileio.jsonio import JsonFileError, read_json, write_json_atomic
from rd_eval.lmms.runs import RESULTS_SUFFIX, read_run
from rd_eval.routing.shards import SHARD_PATTERN, read_routing_records
from rd_eval.routing.spec import ExpertSet, InterventionSpec, SpecError
from rd_eval.sweep.config import HASH_LENGTH, SweepConfig
from rd_eval.sweep.grid import SweepSetting, setting_model_args

SWEEP_FORMAT = "rd-eval.sweep"
SWEEP_VERSION = 1
STATES = ("complete", "partial", "missing")
EXPERT_FILES = {"domain": "domain_experts.json", "visual": "visual_experts.json"}
# Result keys where lmms-eval names a configured task: a subtask (configs) or a group (group_subtasks).
TASK_SECTIONS = ("results", "groups", "group_subtasks", "configs")


class SweepStateError(ValueError):
    """The sweep folder cannot be used for this config (another config's or experts' outputs, a hand-edited file):
    the message says what differs and what to do. The CLI exits with code 2."""


@dataclass(frozen=True)
class SweepLayout:
    """Where a sweep writes, under its output folder OUT."""

    root: Path

    @property
    def sweep_file(self) -> Path:
        return self.root / "sweep.json"

    @property
    def experts_dir(self) -> Path:
        return self.root / "experts"

    def experts_file(self, kind: str = "domain") -> Path:
        return self.experts_dir / EXPERT_FILES[kind]

    @property
    def specs_dir(self) -> Path:
        return self.root / "specs"

    def spec_path(self, key: str) -> Path:
        return self.specs_dir / f"{key}.json"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, key: str) -> Path:
        """The setting's lmms-eval --output_path."""
        return self.runs_dir / key

    def routing_dir(self, key: str) -> Path:
        """The setting's routing shards (model_args routing_dir=)."""
        return self.run_dir(key) / "rd_routing"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def leaderboard_dir(self) -> Path:
        return self.root / "leaderboard"


@dataclass(frozen=True)
class SettingStatus:
    state: str  # one of STATES
    reason: str  # why it is partial or missing; "" when complete


def _changed(layout: SweepLayout, what: str) -> SweepStateError:
    return SweepStateError(f"{layout.sweep_file}: {what} since this folder's sweep: use a new --out, or delete "
                           f"{layout.root} to start over (outputs of two configs are never mixed)")


def _read_sweep_file(layout: SweepLayout) -> dict[str, Any]:
    try:
        data = read_json(layout.sweep_file)
    except JsonFileError as exc:
        raise SweepStateError(f"{exc}; delete {layout.root} or use a new --out") from None
    if not isinstance(data, dict) or data.get("format") != SWEEP_FORMAT or data.get("version") != SWEEP_VERSION:
        raise SweepStateError(f"{layout.sweep_file}: not an rd-eval sweep file (format {SWEEP_FORMAT!r} version "
                              f"{SWEEP_VERSION}); use a new --out")
    return data


def check_or_start(out_dir: Path, config: SweepConfig) -> SweepLayout:
    """The folder's layout, after checking it holds this config's sweep (or starting one there: sweep.json).

    Refused: a folder of another config's sweep, a non-empty folder that is no sweep's, a path with a comma."""
    layout = SweepLayout(Path(out_dir).expanduser().absolute())
    if "," in str(layout.root):
        raise SweepStateError(f"--out {layout.root} contains a comma, which lmms-eval's model_args (spec and routing "
                              "paths) cannot carry; use a folder without commas")
    if layout.sweep_file.is_file():
        data = _read_sweep_file(layout)
        if data.get("config_hash") != config.config_hash:
            raise _changed(layout, f"the config changed (hash {data.get('config_hash')} there, "
                                   f"{config.config_hash} in {config.source})")
        return layout
    if layout.root.is_dir() and any(layout.root.iterdir()):
        raise SweepStateError(f"--out {layout.root} holds files but no sweep.json: not a sweep folder; use an empty "
                              "or new folder")
    write_json_atomic(layout.sweep_file, {
        "format": SWEEP_FORMAT, "version": SWEEP_VERSION, "config_hash": config.config_hash,
        "config": {"source": str(config.source), **config.output_relevant()},
        "experts": {}, "settings": []})
    return layout


def _update_sweep_file(layout: SweepLayout, **fields: Any) -> None:
    write_json_atomic(layout.sweep_file, _read_sweep_file(layout) | fields)


def recorded_experts(layout: SweepLayout, kind: str = "domain") -> ExpertSet | None:
    """The expert set an earlier run of this sweep recorded (so a rerun does not identify again), or None."""
    path = layout.experts_file(kind)
    recorded = _read_sweep_file(layout).get("experts", {}).get(kind)
    if recorded is None:
        return None
    try:
        experts = ExpertSet.load(path)
    except (SpecError, JsonFileError) as exc:
        raise _changed(layout, f"the {kind} expert set {path} is unreadable ({exc})") from None
    digest = experts.content_hash(HASH_LENGTH)
    if digest != recorded:
        raise _changed(layout, f"the {kind} expert set {path} changed (hash {digest}, recorded {recorded})")
    return experts


def record_experts(layout: SweepLayout, experts: ExpertSet, kind: str = "domain") -> Path:
    """Write the sweep's expert set of `kind` and pin its hash in sweep.json; another set than the recorded one
    is refused."""
    digest = experts.content_hash(HASH_LENGTH)
    recorded = _read_sweep_file(layout).get("experts", {})
    if recorded.get(kind) not in (None, digest):
        raise _changed(layout, f"the {kind} experts changed (hash {digest}, recorded {recorded[kind]})")
    path = experts.save(layout.experts_file(kind))
    _update_sweep_file(layout, experts=recorded | {kind: digest})
    return path


def plan_settings(layout: SweepLayout, config: SweepConfig, settings: Sequence[SweepSetting]) -> dict[str, str]:
    """Write each intervened setting's spec file (OUT/specs/<key>.json) and record the settings in sweep.json;
    the model_args of each setting's run, by key. A spec file that differs from its setting's spec is refused."""
    planned = []
    model_args: dict[str, str] = {}
    for setting in settings:
        spec_path = None
        if setting.spec is not None:
            spec_path = layout.spec_path(setting.key)
            _write_spec(layout, spec_path, setting.spec)
        args = setting_model_args(config.model_args, setting, spec_path, layout.routing_dir(setting.key))
        model_args[setting.key] = args
        planned.append({"key": setting.key, "label": setting.label, "kind": setting.kind,
                        "strength": setting.strength, "intervention_hash": setting.intervention_hash,
                        "model_args": args})
    _update_sweep_file(layout, settings=planned)
    return model_args


def _write_spec(layout: SweepLayout, path: Path, spec: InterventionSpec) -> None:
    if path.is_file():
        try:
            existing = InterventionSpec.load(path).content_hash()
        except (SpecError, JsonFileError) as exc:
            raise _changed(layout, f"the spec file {path} is unreadable ({exc})") from None
        if existing != spec.content_hash():
            raise _changed(layout, f"the spec file {path} changed (hash {existing}, the config gives "
                                   f"{spec.content_hash()})")
        return
    spec.save(path)


def _planned(layout: SweepLayout, key: str) -> tuple[Mapping[str, Any], tuple[str, ...]]:
    data = _read_sweep_file(layout)
    entry = next((s for s in data.get("settings", []) if s.get("key") == key), None)
    if entry is None:
        raise SweepStateError(f"{layout.sweep_file}: no planned setting {key!r}; plan the settings first "
                              "(plan_settings)")
    return entry, tuple(data["config"]["tasks"])


def inspect_setting(out_dir: Path, setting: SweepSetting) -> SettingStatus:
    """Whether the setting's run is complete, partial (something written, not all) or missing, and why."""
    layout = SweepLayout(Path(out_dir).expanduser().absolute())
    entry, tasks = _planned(layout, setting.key)
    folder = layout.run_dir(setting.key)
    if not folder.is_dir() or not any(folder.iterdir()):
        return SettingStatus("missing", f"no outputs in {folder}")
    results = sorted(p for p in folder.rglob(f"*{RESULTS_SUFFIX}") if p.is_file())
    if not results:
        return SettingStatus("partial", f"no lmms-eval results json in {folder} (the run stopped before lmms-eval "
                                        "wrote it)")
    if len(results) > 1:
        return SettingStatus("partial", f"{len(results)} lmms-eval results files in {folder} (a stale run beside "
                                        "this one); need exactly one")
    try:
        problem = _results_problem(results[0], entry, tasks) or _routing_problem(layout, setting, results[0])
    except (ValueError, OSError) as exc:
        problem = str(exc)
    return SettingStatus("partial", problem) if problem else SettingStatus("complete", "")


def setting_status(out_dir: Path, setting: SweepSetting) -> str:
    """"complete", "partial" or "missing" (:func:`inspect_setting` says why)."""
    return inspect_setting(out_dir, setting).state


def _results_problem(results: Path, entry: Mapping[str, Any], tasks: Sequence[str]) -> str | None:
    run = read_run(results)  # a torn or foreign results json raises ValueError naming the file
    if run.model_args != entry["model_args"]:
        return f"{results} was written with other model_args ({run.model_args!r}, planned {entry['model_args']!r})"
    data = json.loads(results.read_text(encoding="utf-8"))
    named = {str(name) for section in TASK_SECTIONS if isinstance(data.get(section), dict) for name in data[section]}
    absent = [task for task in tasks if task not in named]
    if absent:
        return f"{results} lacks task(s) {', '.join(absent)}"
    counts = data.get("n-samples") if isinstance(data.get("n-samples"), dict) else {}
    for task in data["configs"]:
        if task not in run.samples:
            return f"{results}: no samples file of task {task} beside it"
        expected = counts.get(task, {}).get("effective") if isinstance(counts.get(task), dict) else None
        lines = _count_lines(run.samples[task])
        if expected is not None and lines != expected:
            return f"{run.samples[task]} holds {lines} samples of {expected} (the run stopped while writing them)"
    return None


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def _logged_documents(results: Path) -> set[tuple[str, int]]:
    run = read_run(results)
    documents = set()
    for task, path in run.samples.items():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    documents.add((task, int(json.loads(line)["doc_id"])))
                except (ValueError, KeyError, TypeError):
                    raise ValueError(f"{path}:{number}: not an lmms-eval sample line (no doc_id)") from None
    return documents


def _routing_problem(layout: SweepLayout, setting: SweepSetting, results: Path) -> str | None:
    folder = layout.routing_dir(setting.key)
    if not any(folder.glob(SHARD_PATTERN.replace("{rank:03d}", "*"))):
        return f"no routing shards in {folder}"
    recorded = {(str(r["task"]), int(r["doc_id"])) for r in read_routing_records(folder)
                if r.get("intervention") == setting.intervention_hash}
    lacking = sorted(_logged_documents(results) - recorded)
    if lacking:
        shown = ", ".join(f"{task} doc {doc}" for task, doc in lacking[:3]) + (", ..." if len(lacking) > 3 else "")
        return f"routing shards in {folder} lack {len(lacking)} logged document(s) ({shown})"
    return None


def clear_partial(out_dir: Path, setting: SweepSetting) -> bool:
    """Remove a partial setting's run folder (results, samples, routing shards), so that its rerun writes exactly
    what an uninterrupted sweep writes; True if something was removed. A complete setting is left alone."""
    layout = SweepLayout(Path(out_dir).expanduser().absolute())
    status = inspect_setting(layout.root, setting)
    if status.state != "partial":
        return False
    shutil.rmtree(layout.run_dir(setting.key))
    return True
