"""`rd-eval demo`: the whole idea end to end, offline, on a CPU.

Three models can be demonstrated:

- ``organism``: the model organism (:mod:`rd_eval.organism`), a small trained Qwen3-VL-MoE that reads its problem
  images yet answers worse from them than from text, because of its routing; on its held-out split (the
  ``rd_organism`` tasks, with the perception task ``rd_organism_see``);
- ``random``: a tiny MoE VLM with random weights on the embedded benchmark ``rd_demo`` (a pipeline smoke test:
  its numbers mean nothing);
- ``pretrained``: a local checkpoint of a routable family, on ``rd_demo``.

Steps: identify the checkpoint's domain experts (ΔΦ between the benchmark's kind of text problem, never an
evaluated one, and rd-eval's general probe set); run the benchmark through lmms-eval's own CLI plain, with the soft
intervention (docs/design.md §3.5) and, for the organism, with the seeded random-expert control; pair the forms
and write the tables (markdown, JSON) and rd-eval's report (md, html) of the runs.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

from rd_eval.analysis.flips import flip_rates_by_benchmark
from rd_eval.analysis.gaps import LEVEL, compare_runs
from rd_eval.commands.demo_table import perception, read_seen, summary_markdown, summary_rows
from rd_eval.experts.probes import load_probe_set
from rd_eval.fileio.jsonio import read_json, write_json_atomic, write_text_atomic
from rd_eval.lmms.runner import LmmsEvalRunError, lmms_eval_command, run_lmms_eval
from rd_eval.lmms.runs import RunRecord, load_paired_samples
from rd_eval.models.loading import load_model
from rd_eval.models.tiny import ensure_tiny, supported_tiny_families
from rd_eval.rendering.gaps_markdown import gaps_markdown as to_markdown
from rd_eval.routing.records import routing_folder
from rd_eval.routing.shards import merge_routing_records
from rd_eval.routing.sites import supported_families
from rd_eval.routing.spec import InterventionSpec, LayerBand
from rd_eval.twins.demo_bench import generate_problems

DEMO_TASK = "rd_demo"
ORGANISM_TASK = "rd_organism"  # the group of rd_organism_img and rd_organism_txt
ORGANISM_SEE_TASK = "rd_organism_see"
DEMO_MODELS = ("organism", "random", "pretrained")
DEFAULT_MODEL = "organism"
# Domain probes come from the same generator with another seed: never the evaluated items.
DOMAIN_PROBE_SEED_OFFSET = 1000
# The organism's whole held-out split fits a few batches: fewer, larger generate calls are what keeps it fast.
ORGANISM_BATCH_SIZE = 64
DEFAULT_BATCH_SIZE = 4
REPORT_N_BOOT = 2000  # the report's routing-divergence CIs; the demo's own tables use compare_runs' default


class DemoError(ValueError):
    """Bad demo input (an unusable folder or checkpoint): reported as one line, exit code 2."""


class DemoRunError(RuntimeError):
    """A stage of the demo failed at run time (its log is named in the message)."""


@dataclass(frozen=True)
class DemoConfig:
    out_dir: Path
    model: str = DEFAULT_MODEL  # one of DEMO_MODELS
    checkpoint: Path | None = None  # pretrained: the checkpoint (required); organism: instead of the shipped one
    family: str = "qwen3_vl_moe"  # of the tiny random checkpoint
    seed: int = 0
    limit: int | None = None
    batch_size: int | None = None  # default: ORGANISM_BATCH_SIZE for the organism, else DEFAULT_BATCH_SIZE
    strength: float = 1.0
    band: LayerBand = field(default_factory=LayerBand)
    probe_size: int = 20

    def __post_init__(self) -> None:
        if self.model not in DEMO_MODELS:
            raise DemoError(f"demo model {self.model!r} unknown; valid: {', '.join(DEMO_MODELS)}")
        if self.model == "pretrained" and self.checkpoint is None:
            raise DemoError("the pretrained demo needs a checkpoint folder (--pretrained DIR)")
        if self.model == "random" and self.checkpoint is not None:
            raise DemoError("the random demo builds its own tiny checkpoint; it takes no checkpoint folder")


@dataclass(frozen=True)
class DemoModel:
    """What one demo runs: the checkpoint, its lmms-eval model id and args, the tasks and the domain probes."""

    checkpoint: Path
    model_id: str
    model_args: str  # without the intervention keys
    benchmark: str  # the group task of both forms
    see_task: str | None  # the perception task run beside the plain run, if the benchmark has one
    domain_probe: tuple[str, ...]
    domain_probe_note: str
    controls: bool  # also run the seeded random-expert control
    note: str
    batch_size: int


@dataclass(frozen=True)
class DemoResult:
    table: dict[str, Any]
    markdown: str
    paths: dict[str, Path]


def tasks_dir() -> Path:
    """Installed location of rd-eval's task YAMLs (pass it to lmms-eval as --include_path)."""
    spec = importlib_util.find_spec("rd_eval_tasks")
    if spec is None or not spec.submodule_search_locations:
        raise DemoError("rd-eval's tasks package (rd_eval_tasks) is not installed; reinstall rd-eval")
    return Path(list(spec.submodule_search_locations)[0])


def shipped_organism_dir() -> Path:
    """Where the package keeps the trained organism (model files, organism.json and its model card)."""
    from rd_eval.organism.shipped import SHIPPED_DIR

    return SHIPPED_DIR


def check_writable(folder: Path) -> Path:
    target = folder.expanduser().absolute()
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, prefix=".rd-write-check."):
            pass
    except OSError as exc:
        raise DemoError(f"--out {str(folder)!r} is not a writable folder ({exc.strerror or exc})") from None
    if "," in str(target):
        raise DemoError(f"--out {str(folder)!r} contains a comma, which lmms-eval's model_args cannot carry")
    return target


def check_checkpoint(path: Path, flag: str = "--pretrained") -> tuple[Path, str]:
    """An existing local checkpoint of a routable family: (absolute path, model_type)."""
    folder = path.expanduser().absolute()
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise DemoError(f"{flag} {str(path)!r} is not a checkpoint folder (no config.json there)")
    model_type = read_json(config_path).get("model_type")
    if model_type not in supported_families():
        raise DemoError(
            f"{flag} {str(path)!r} has model_type {model_type!r}; supported: {', '.join(supported_families())}"
        )
    if "," in str(folder):
        raise DemoError(f"{flag} {str(path)!r} contains a comma, which lmms-eval's model_args cannot carry")
    return folder, model_type


def check_organism(path: Path, flag: str = "--organism") -> Path:
    """A trained organism folder whose training never saw the rd_organism tasks' documents."""
    from rd_eval.organism.benchmark import SPLIT_KINDS, SPLIT_SEED
    from rd_eval.organism.train import CARD_FILE

    folder, _ = check_checkpoint(path, flag)
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise DemoError(f"{flag} {str(path)!r} is not a trained organism (no {CARD_FILE} there); train one with "
                        "`rd-eval organism train --out DIR`")
    spec = read_json(card_path).get("spec")
    if not isinstance(spec, dict) or "seed" not in spec or "kinds" not in spec:
        raise DemoError(f"{card_path}: no 'spec' with 'seed' and 'kinds' (the split the organism was trained on)")
    if spec["seed"] != SPLIT_SEED or tuple(spec["kinds"]) != SPLIT_KINDS:
        raise DemoError(f"{card_path}: trained on the split of seed {spec['seed']!r}, kinds {spec['kinds']!r}; the "
                        f"rd_organism tasks are the held-out split of seed {SPLIT_SEED}, kinds {list(SPLIT_KINDS)}, "
                        "which that training may have seen: train with --seed 0")
    return folder


def demo_model(cfg: DemoConfig, out: Path, say: Callable[[str], None]) -> DemoModel:
    """Resolve the configured model into what the demo runs (building the tiny checkpoint if needed)."""
    domain = tuple(p.text_twin for p in generate_problems(cfg.probe_size, cfg.seed + DOMAIN_PROBE_SEED_OFFSET))
    domain_note = f"rd_demo generator, seed {cfg.seed + DOMAIN_PROBE_SEED_OFFSET}, n={len(domain)}"
    batch = cfg.batch_size or DEFAULT_BATCH_SIZE
    if cfg.model == "pretrained":
        assert cfg.checkpoint is not None  # DemoConfig checks it
        checkpoint, family = check_checkpoint(cfg.checkpoint)
        say(f"[1/5] using checkpoint {checkpoint}")
        return DemoModel(checkpoint, f"rd_{family}", f"pretrained={checkpoint}", DEMO_TASK, None, domain,
                         domain_note, False, PRETRAINED_NOTE, batch)
    if cfg.model == "random":
        if cfg.family not in supported_tiny_families():
            raise DemoError(f"family {cfg.family!r} has no tiny checkpoint; supported: "
                            f"{', '.join(supported_tiny_families())}")
        # The name is kept from when lmms-eval's name rule (A<n>B) chose the class, so earlier demo folders are reused.
        checkpoint, built = ensure_tiny(cfg.family, out / "models" / f"rd-tiny-{cfg.family}-A1B", seed=cfg.seed)
        say(f"[1/5] {'built' if built else 'reusing'} tiny random {cfg.family} checkpoint: {checkpoint}")
        return DemoModel(checkpoint, f"rd_{cfg.family}", f"pretrained={checkpoint}", DEMO_TASK, None, domain,
                         domain_note, False, CHANCE_NOTE, batch)
    from rd_eval.organism.assets import MAX_PIXELS, MIN_PIXELS
    shipped = cfg.checkpoint is None
    source = shipped_organism_dir() if shipped else cfg.checkpoint
    if shipped and not (source / "config.json").is_file():
        raise DemoError(f"the shipped organism is missing ({source} holds no model); reinstall rd-eval, or pass "
                        "--organism DIR (a folder of `rd-eval organism train`) or --random")
    checkpoint = check_organism(source)
    say(f"[1/5] using the {'shipped ' if shipped else ''}model organism {checkpoint}")
    # The organism probe set: text-form prompts of its validation split, never an evaluated (held-out) problem.
    probe_set = load_probe_set("organism", cfg.probe_size, cfg.seed)
    return DemoModel(checkpoint, "rd_qwen3_vl_moe",
                     f"pretrained={checkpoint},min_pixels={MIN_PIXELS},max_pixels={MAX_PIXELS}", ORGANISM_TASK,
                     ORGANISM_SEE_TASK, probe_set.texts, f"rd-eval probe set 'organism' ({probe_set.source}), "
                     f"n={probe_set.n}, seed {cfg.seed}", True, ORGANISM_NOTE, cfg.batch_size or ORGANISM_BATCH_SIZE)


def identify_experts(model: DemoModel, cfg: DemoConfig) -> InterventionSpec:
    """The soft intervention on the checkpoint's domain experts: the model's domain probes vs rd-eval's general
    probe set."""
    from rd_eval.experts.pipeline import identify_domain_experts

    # bfloat16, as lmms-eval's Qwen3-VL class evaluates, so that the probes see the routing the runs will see.
    loaded, processor = load_model(model.checkpoint, dtype="bfloat16", device="cpu")
    # The sample `rd-eval experts --general general --n N --seed S` takes, so the CLI reproduces this set.
    general = list(load_probe_set("general", cfg.probe_size, cfg.seed).texts)
    experts = identify_domain_experts(
        loaded, processor, list(model.domain_probe), general, band=cfg.band, top=None,
        model_name=str(model.checkpoint),
        method={"domain_probe": model.domain_probe_note, "general_probe": f"rd-eval general_probe.txt, "
                f"n={len(general)}, seed {cfg.seed}", "token_scope": "prompt"},
    )
    return InterventionSpec(experts=experts, mode="soft", strength=cfg.strength, band=cfg.band)


def run_setting(model: DemoModel, model_args: str, tasks: list[str], output_path: Path, log_path: Path,
                cfg: DemoConfig) -> RunRecord:
    """lmms-eval's own CLI, exactly as a user would type it, offline; the run it wrote (never an earlier one)."""
    command = lmms_eval_command(model.model_id, model_args, tasks, output_path, include_path=tasks_dir(),
                                batch_size=model.batch_size, seed=cfg.seed, limit=cfg.limit)
    try:
        return run_lmms_eval(command, output_path, log_path)
    except LmmsEvalRunError as exc:
        raise DemoRunError(str(exc)) from None


CHANCE_NOTE = (
    "Note: the demo model is a tiny MoE with random weights; it answers at or below chance (its random "
    "output rarely even contains a well-formed answer), so these accuracies, gaps and gains carry no "
    "scientific meaning. The point here is the pipeline: a real checkpoint goes through exactly the same "
    "steps (rd-eval demo --pretrained DIR)."
)
ORGANISM_NOTE = (
    "Note: the model is rd-eval's model organism, a 3M-parameter Qwen3-VL-MoE trained on these problems (its "
    "card: rd_eval/organism/model/README.md). Its routing distraction was planted on purpose in training: a routing "
    "term pushed the image form's text tokens off the experts its text form reasons with (the card's "
    "domain_experts). So the gap here is a known, induced one, a positive control for rd-eval's steps; compare the "
    "card's experts with the ones identified here (experts/domain_experts.json): the soft intervention can only "
    "undo the distraction as far as identification finds them. None of it says anything about another model."
)
PRETRAINED_NOTE = "Note: rd_demo is a small synthetic benchmark (40 pairs): a smoke test, not a measurement."


def _flip_rates(output_path: Path, checkpoint: Path, spec: InterventionSpec) -> dict[str, float | None] | None:
    """An intervened run's flip rate per benchmark, from the routing records its adapter wrote beside its output."""
    folder = routing_folder(output_path, str(checkpoint), spec.content_hash())
    if not folder.is_dir():
        return None
    return flip_rates_by_benchmark(merge_routing_records(folder), str(folder))


def _write_report(runs: dict[str, RunRecord], out: Path, seed: int) -> dict[str, Path]:
    """rd-eval's report of exactly these runs (gaps, effects, per-layer routing divergence), as md and html."""
    from rd_eval.reports.report import build_report
    from rd_eval.reports.report import to_html as report_html
    from rd_eval.reports.report import to_markdown as report_markdown

    report = build_report([run.results_path for run in runs.values()], n_boot=REPORT_N_BOOT, seed=seed)
    return {"report_md": write_text_atomic(out / "report.md", report_markdown(report)),
            "report_html": write_text_atomic(out / "report.html", report_html(report))}


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = print) -> DemoResult:
    out = check_writable(cfg.out_dir)
    started = time.perf_counter()
    model = demo_model(cfg, out, say)

    soft = identify_experts(model, cfg)
    paths = {
        "checkpoint": model.checkpoint,
        "expert_set": soft.experts.save(out / "experts" / "domain_experts.json"),
        "intervention": soft.save(out / "experts" / "intervention_soft.json"),
    }
    specs = {"soft": soft}
    if model.controls:
        specs["random"] = InterventionSpec(experts=soft.experts, mode="random", strength=cfg.strength,
                                           band=cfg.band, seed=cfg.seed)
        paths["intervention_random"] = specs["random"].save(out / "experts" / "intervention_random.json")
    n_experts = sum(len(layer.experts) for layer in soft.experts.layers)
    say(f"[2/5] domain experts: {n_experts} across MoE layers "
        f"{[layer.moe_index for layer in soft.experts.layers]} -> {paths['expert_set']}")

    # The hash pins an intervened run to its spec's content: a later demo into the same --out rewrites the spec
    # file, and the report must still name this run by the setting it ran with.
    settings: dict[str, tuple[str, list[str]]] = {
        "plain": (model.model_args, [model.benchmark, *([model.see_task] if model.see_task else [])])}
    for name, spec in specs.items():
        spec_path = paths["intervention" if name == "soft" else f"intervention_{name}"]
        settings[name] = (f"{model.model_args},intervention={spec_path},intervention_hash={spec.content_hash()}",
                          [model.benchmark])
    # The organism's runs go side by side (each process is mostly Python overhead around a 3M-parameter model);
    # a real checkpoint's run one after the other (one model copy in memory at a time).
    with ThreadPoolExecutor(max_workers=len(settings) if model.controls else 1) as pool:
        pending = {}
        for name, (model_args, tasks) in settings.items():
            run_dir, log = out / "runs" / name, out / "logs" / f"lmms_eval_{name}.log"
            say(f"[3/5] lmms-eval --model {model.model_id} --tasks {','.join(tasks)} ({name}) ... log: {log}")
            pending[name] = pool.submit(run_setting, model, model_args, tasks, run_dir, log, cfg)
            paths[f"run_{name}"] = run_dir
            paths[f"log_{name}"] = log
        runs = {name: future.result() for name, future in pending.items()}

    say("[4/5] pairing the forms: gap, gain, text cost, flip rates")
    base = load_paired_samples(runs["plain"])
    effects = {name: compare_runs(base, load_paired_samples(runs[name]), seed=cfg.seed) for name in specs}
    flips = {name: _flip_rates(paths[f"run_{name}"], model.checkpoint, spec) for name, spec in specs.items()}
    table = effects["soft"]
    if flips["soft"] is not None:
        table["flip_rates"] = flips["soft"]  # the gain rows show them (rd_eval.rendering.gaps_markdown)
    seen_entry = None
    if model.see_task is not None:
        seen_entry = perception(base, read_seen(runs["plain"].samples[model.see_task]))
        table["perception"] = seen_entry
    if "random" in effects:
        table["random_control"] = effects["random"]
    table["summary"] = summary_rows(effects, {name: (rates or {}).get(model.benchmark) for name, rates in
                                              flips.items()}, None if seen_entry is None else seen_entry["seen"])
    table["demo"] = {
        "model": cfg.model, "model_id": model.model_id, "checkpoint": str(model.checkpoint),
        "intervention": soft.to_json() | {"experts": "see file"}, "intervention_hash": soft.content_hash(),
        "intervention_hashes": {name: spec.content_hash() for name, spec in specs.items()},
        "runs": {name: str(run.results_path) for name, run in runs.items()}, "note": model.note,
    }
    title = f"{model.benchmark}: {model.model_id}, plain vs soft intervention (lambda={soft.strength}, band " \
            f"{soft.band.to_json()})"
    markdown = summary_markdown(table["summary"], seen_entry, level=LEVEL, title=title)
    markdown += "\n" + to_markdown(table, title=f"{model.benchmark}: the soft intervention in detail")
    markdown += "\n" + model.note + "\n"

    say("[5/5] rd-eval report of the runs (md, html)")
    paths |= _write_report(runs, out, cfg.seed)
    table["demo"]["seconds"] = round(time.perf_counter() - started, 1)
    paths["table_json"] = write_json_atomic(out / f"{model.benchmark}_table.json", table)
    paths["table_md"] = write_text_atomic(out / f"{model.benchmark}_table.md", markdown)
    return DemoResult(table=table, markdown=markdown, paths=paths)
