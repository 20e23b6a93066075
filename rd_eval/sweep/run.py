"""`rd-eval sweep`: the whole protocol of one model on one model load (docs/sweep.md).

Steps: check the sweep folder (:func:`rd_eval.sweep.state.check_or_start`), load the model once through
lmms-eval's registry, identify the domain experts on that loaded model (or read the configured file), expand the
settings grid, then for each setting switch the routing settings on the loaded model and run lmms-eval's own
evaluator (:mod:`rd_eval.sweep.execute`), so that ``OUT/runs/<key>/`` holds what a separate ``python -m lmms_eval``
run of that setting writes. A complete setting is skipped, a partial one cleared and rerun. Last, rd-eval's report
(``OUT/report/``) and leaderboard (``OUT/leaderboard/``) of all the settings.

Under ``accelerate launch`` every rank loads the model and evaluates its share of each setting's documents, as
lmms-eval does; the folder's bookkeeping (sweep.json, experts, specs, clearing, report) is the main process's, and
its outcome, or its error, reaches every rank, so no rank waits on one that failed.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rd_eval.lmms.runner import logged_error
from rd_eval.lmms.runs import RunRecord, find_runs
from rd_eval.routing.spec import ExpertSet
from rd_eval.sweep.config import ExpertStep, SweepConfig, SweepConfigError
from rd_eval.sweep.execute import (
    LmmsInvocation,
    SweepRunError,
    evaluate,
    load_model,
    match_tasks,
    start_processes,
    task_manager,
)
from rd_eval.sweep.execute_progress import headline
from rd_eval.sweep.grid import SweepSetting, expand_settings
from rd_eval.sweep.state import (
    SweepLayout,
    check_or_start,
    clear_partial,
    inspect_setting,
    plan_settings,
    record_experts,
    recorded_experts,
)
from rd_eval.vocabulary.model_args import parse_model_args, pretrained_of

T = TypeVar("T")
REPORT_N_BOOT = 10000  # `rd-eval report`'s default, so OUT/report is what that command writes
LOGS_FOLDER = "logs"  # OUT/logs/<key>.log: lmms-eval's log of each setting run (rank N > 0: <key>.rankN.log)


@dataclass(frozen=True)
class SettingOutcome:
    setting: SweepSetting
    ran: bool  # False: skipped, complete from an earlier run of the sweep
    run: RunRecord | None  # the run in OUT/runs/<key>/ (None on ranks other than the main process)
    seconds: float
    headline: str = ""


@dataclass(frozen=True)
class SweepResult:
    out_dir: Path
    load_seconds: float
    outcomes: tuple[SettingOutcome, ...]
    paths: Mapping[str, Path] = field(default_factory=dict)


class _Ranks:
    """The processes of the sweep: one, or those `accelerate launch` started (accelerate's PartialState)."""

    def __init__(self) -> None:
        from accelerate import PartialState

        self.state = PartialState()

    @property
    def main(self) -> bool:
        return bool(self.state.is_main_process)

    @property
    def index(self) -> int:
        return int(self.state.process_index)

    def on_main(self, step: Callable[[], T]) -> T:
        """`step` run by the main process; every rank returns its result (which must pickle), or raises its error."""
        outcome: list[Any] = [None]
        if self.main:
            try:
                outcome = [(True, step())]
            except Exception as exc:  # handed to every rank, then raised there
                outcome = [(False, exc if self.state.num_processes == 1 else _portable(exc))]
        if self.state.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(outcome, from_process=0)
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def everywhere(self, step: Callable[[], T]) -> T:
        """`step` run by every rank, which returns its own result; if any rank failed, every rank raises (a failed
        rank its own error, the others the first failure's, by rank)."""
        try:
            result, failure = step(), None
        except Exception as exc:
            result, failure = None, exc
        if self.state.num_processes > 1:
            from accelerate.utils import gather_object

            failures = gather_object([None if failure is None else _portable(failure)])
            first = next((f for f in failures if f is not None), None)
            if failure is None and first is not None:
                raise first
        if failure is not None:
            raise failure
        return result  # type: ignore[return-value]


def _portable(exc: Exception) -> Exception:
    """`exc` as it can travel to the other ranks (pickled): itself, else a SweepRunError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return SweepRunError(f"{type(exc).__name__}: {exc}")
    return exc


@contextmanager
def _logged_to(path: Path) -> Iterator[Path]:
    """lmms-eval's log (loguru) of the block, also into `path`."""
    from loguru import logger

    path.parent.mkdir(parents=True, exist_ok=True)
    sink = logger.add(path, level="INFO", mode="w", colorize=False)
    try:
        yield path
    finally:
        logger.remove(sink)


def _no_records(model_args: str) -> str:
    """The base model_args of the one model load: no routing records until a setting names where they go."""
    return ",".join(part for part in (model_args.strip().rstrip(","), "record_routing=false") if part)


def _invocation(config: SweepConfig, model_args: str, output_path: Path) -> LmmsInvocation:
    return LmmsInvocation(model_id=config.model, model_args=model_args, tasks=config.tasks, output_path=output_path,
                          include_path=config.include_path, batch_size=config.lmms.batch_size, seed=config.lmms.seed,
                          limit=config.lmms.limit, gen_kwargs=config.lmms.gen_kwargs)


def _load(base: LmmsInvocation, config: SweepConfig) -> Any:
    """The sweep's one model instance; a model_args the model class refuses is bad input naming the config."""
    try:
        lm = load_model(base)
    except ValueError as exc:
        raise SweepConfigError(f"{config.source}: model {config.model} with model_args {config.model_args!r}: "
                               f"{exc}") from None
    if not callable(getattr(lm, "rd_apply_routing", None)):
        raise SweepConfigError(f"{config.source}: model {config.model} is not one of rd-eval's routing adapters "
                               "(rd_<family>), whose routing settings a sweep switches on the loaded model")
    return lm


def _check_probes(step: ExpertStep, source: Path) -> None:
    """Probe sets fail before the model loads."""
    from rd_eval.experts.probes import ProbeError, load_probe_set

    if step.identify is None:
        return
    for key, name in (("domain", step.identify.domain), ("general", step.identify.general)):
        try:
            load_probe_set(name, step.identify.n, step.identify.seed)
        except ProbeError as exc:
            raise SweepConfigError(f"{source}: experts.identify.{key}: {exc}") from None


def _identify(lm: Any, config: SweepConfig) -> ExpertSet:
    """The domain experts of the loaded model (`rd-eval experts`' ΔΦ on the configured probe sets), on the model
    exactly as the settings run it (its dtype, its device)."""
    from rd_eval.experts.pipeline import identify_domain_experts
    from rd_eval.experts.probes import load_probe_set

    step = config.experts.identify
    assert step is not None  # the caller checks
    domain = load_probe_set(step.domain, step.n, step.seed)
    general = load_probe_set(step.general, step.n, step.seed)
    model_name = pretrained_of(parse_model_args(config.model_args)) or config.model
    method = {"seed": step.seed, "band": step.band.to_json(), "token_scope": step.token_scope, "n": step.n,
              "domain_probe": domain.describe(), "general_probe": general.describe()}
    return identify_domain_experts(lm.model, lm.processor, domain.texts, general.texts, band=step.band, top=None,
                                   model_name=model_name, method=method)


def _experts(layout: SweepLayout, config: SweepConfig, lm: Any, say: Callable[[str], None], kind: str) -> Path | None:
    """The file of the sweep's expert set of `kind` (domain, visual), OUT/experts/; identified once per folder."""
    step = config.experts
    source = step.file if kind == "domain" else step.visual_file
    if source is None and (kind == "visual" or step.identify is None):
        return None
    experts = recorded_experts(layout, kind)
    if experts is not None:
        say(f"{kind} experts: recorded in {layout.experts_file(kind)} (identified or read by an earlier run)")
    elif source is not None:
        experts = ExpertSet.load(source)
        say(f"{kind} experts: read from {source}")
    else:
        started = time.perf_counter()
        experts = _identify(lm, config)
        say(f"{kind} experts identified on the loaded model in {time.perf_counter() - started:.1f} s")
    return record_experts(layout, experts, kind)


def _prepare(layout: SweepLayout, settings: tuple[SweepSetting, ...], say: Callable[[str], None]) -> dict[str, str]:
    """Each setting's state before running; a partial one's folder is cleared (what stopped it is said)."""
    states = {}
    for setting in settings:
        status = inspect_setting(layout.root, setting)
        if status.state == "partial":
            say(f"rerun {setting.label}: partial in {layout.run_dir(setting.key)} ({status.reason}); cleared")
            clear_partial(layout.root, setting)
        states[setting.key] = status.state
    return states


def _run_setting(lm: Any, config: SweepConfig, layout: SweepLayout, setting: SweepSetting, model_args: str,
                 manager: Any, rank: int) -> RunRecord | None:
    """One setting through lmms-eval on the loaded model; its log in OUT/logs/. Any failure is one SweepRunError
    naming the log and the folder (the traceback is in the log); the folder is left as it is (partial)."""
    from loguru import logger

    log = layout.root / LOGS_FOLDER / (f"{setting.key}.log" if rank == 0 else f"{setting.key}.rank{rank}.log")
    folder = layout.run_dir(setting.key)
    with _logged_to(log):
        try:
            lm.rd_apply_routing(model_args)
            run = evaluate(lm, _invocation(config, model_args, folder), manager)
        except Exception as exc:
            # The traceback goes to the setting's log (INFO: not the terminal's level); the terminal gets one line.
            logger.opt(exception=exc).info(f"[rd-eval sweep] setting {setting.key} failed")
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SweepRunError(f"setting {setting.label} ({setting.key}) failed: {type(exc).__name__}: {detail} "
                                f"(log: {log}; folder: {folder}; rerun the sweep to resume)") from exc
    error = logged_error(log)
    if error is not None:
        raise SweepRunError(f"setting {setting.label} ({setting.key}): lmms-eval logged an error: {error} (log: {log}; "
                            f"folder: {folder})")
    return run


def _report(layout: SweepLayout, config: SweepConfig, n_boot: int) -> dict[str, Path]:
    """`rd-eval report OUT/runs --out OUT/report --format html` and md, plots as PNG files; the leaderboard of
    the runs in OUT/leaderboard/ (md, csv, html)."""
    from rd_eval.fileio.jsonio import write_text_atomic
    from rd_eval.rendering.plots import write_png
    from rd_eval.reports.leaderboard import build_leaderboard, write_leaderboard
    from rd_eval.reports.report import build_report, plots, to_html, to_markdown

    experts = layout.experts_file("domain")
    report = build_report([layout.runs_dir], n_boot=n_boot, seed=config.lmms.seed,
                          experts=experts if experts.is_file() else None)
    drawn = plots(report)
    paths = {"report_md": write_text_atomic(layout.report_dir / "report.md", to_markdown(report)),
             "report_html": write_text_atomic(layout.report_dir / "report.html", to_html(report, drawn))}
    for plot in drawn:
        paths[f"plot_{plot.stem}"] = write_png(layout.report_dir / "plots", plot.stem, plot.png)
    for path in write_leaderboard(build_leaderboard([layout.runs_dir]), layout.leaderboard_dir):
        paths[f"leaderboard_{path.suffix.lstrip('.')}"] = path
    return paths


def _bar(total: int, skipped: int, enabled: bool) -> Any:
    """One bar over the settings × tasks to run (complete ones are not counted, so the ETA is the work left's)."""
    from tqdm import tqdm

    desc = "sweep" + (f" ({skipped} settings complete before)" if skipped else "")
    return tqdm(total=total, disable=not enabled, unit="task", desc=desc,
                bar_format="{desc}: {n_fmt}/{total_fmt} settings×tasks |{bar}| [{elapsed}<{remaining}]")


def run_sweep(config: SweepConfig, *, progress: bool = True, say: Callable[[str], None] = print,
              report_n_boot: int = REPORT_N_BOOT) -> SweepResult:
    """Run the sweep `config` describes into its out_dir (see the module doc); under accelerate only the main
    process speaks. Raises SweepConfigError / SweepStateError / SweepTaskError for bad input (nothing run),
    SweepRunError when a setting failed (the sweep stops there; a rerun resumes)."""
    if config.out_dir is None:
        raise SweepConfigError(f"{config.source}: no output_path; give one there or --out DIR")
    _check_probes(config.experts, config.source)
    start_processes()
    ranks = _Ranks()
    speak = say if ranks.main else (lambda line: None)
    layout = ranks.on_main(lambda: check_or_start(config.out_dir, config))  # type: ignore[arg-type]
    base = _invocation(config, _no_records(config.model_args), layout.runs_dir)
    manager = task_manager(base)
    match_tasks(manager, config.tasks, f"{config.source}: tasks")
    started = time.perf_counter()
    lm = ranks.everywhere(lambda: _load(base, config))
    load_seconds = time.perf_counter() - started
    speak(f"{config.model} loaded once in {load_seconds:.1f} s ({config.model_args})")
    experts_path = ranks.on_main(lambda: _experts(layout, config, lm, speak, "domain"))
    visual_path = ranks.on_main(lambda: _experts(layout, config, lm, speak, "visual"))
    experts, visual = (None if path is None else ExpertSet.load(path) for path in (experts_path, visual_path))
    try:
        settings = expand_settings(config.settings, experts, visual)
    except ValueError as exc:
        raise SweepConfigError(f"{config.source}: {exc}") from None
    model_args = ranks.on_main(lambda: plan_settings(layout, config, settings))
    states = ranks.on_main(lambda: _prepare(layout, settings, speak))
    outcomes: list[SettingOutcome] = []
    plain: RunRecord | None = None
    to_run = [s for s in settings if states[s.key] != "complete"]
    bar = _bar(len(to_run) * len(config.tasks), len(settings) - len(to_run), progress and ranks.main)

    def write(line: str) -> None:
        with bar.external_write_mode():  # the line above the bar, the bar redrawn below it
            speak(line)

    try:
        for setting in settings:
            clock = time.perf_counter()
            if states[setting.key] == "complete":
                run = find_runs(layout.run_dir(setting.key))[0] if ranks.main else None
                write(f"skip {setting.label}: complete in {layout.run_dir(setting.key)}")
                outcome = SettingOutcome(setting, False, run, 0.0)
            else:
                run = ranks.everywhere(lambda s=setting: _run_setting(lm, config, layout, s, model_args[s.key],
                                                                      manager, ranks.index))
                seconds = time.perf_counter() - clock
                routing = None if setting.spec is None else layout.routing_dir(setting.key)
                line = headline(run, plain, routing, seed=config.lmms.seed) if run is not None else ""
                write(f"{setting.label} [{setting.key}] {seconds:.0f} s: {line}")
                outcome = SettingOutcome(setting, True, run, seconds, line)
                bar.update(len(config.tasks))
            if setting.spec is None and plain is None:
                plain = run  # the gain of every later setting is over it
            outcomes.append(outcome)
    finally:
        bar.close()
    paths: dict[str, Path] = {"sweep": layout.sweep_file, "runs": layout.runs_dir}
    if experts_path is not None:
        paths["experts"] = experts_path
    paths |= ranks.on_main(lambda: _report(layout, config, report_n_boot))
    return SweepResult(out_dir=layout.root, load_seconds=load_seconds, outcomes=tuple(outcomes), paths=paths)
