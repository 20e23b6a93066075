"""`rd-eval demo`: the whole idea end to end on the embedded default, offline, on a CPU.

1. build (or reuse) a tiny random MoE VLM checkpoint;
2. identify its domain experts: ΔΦ between held-out rd_demo text problems and rd-eval's general probe set;
3. run the paired benchmark rd_demo through lmms-eval's own CLI with our model id, once plain and once
   with the soft intervention (docs/design.md §3.5);
4. pair the forms, compute accuracy per form, gap, gain, text cost, and write the table (markdown, JSON).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

from rd_eval.analysis.flips import flip_rates_by_benchmark
from rd_eval.analysis.gaps import compare_runs
from rd_eval.experts.identify import general_probe_texts
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
# Domain probes come from the same generator with another seed: never the evaluated items.
DOMAIN_PROBE_SEED_OFFSET = 1000


class DemoError(ValueError):
    """Bad demo input (an unusable folder or checkpoint): reported as one line, exit code 2."""


class DemoRunError(RuntimeError):
    """A stage of the demo failed at run time (its log is named in the message)."""


@dataclass(frozen=True)
class DemoConfig:
    out_dir: Path
    family: str = "qwen3_vl_moe"
    pretrained: Path | None = None  # an existing checkpoint instead of the tiny one
    seed: int = 0
    limit: int | None = None
    batch_size: int = 4
    strength: float = 1.0
    band: LayerBand = field(default_factory=LayerBand)
    probe_size: int = 20


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


def check_checkpoint(path: Path) -> tuple[Path, str]:
    """An existing local checkpoint of a routable family: (absolute path, model_type)."""
    folder = path.expanduser().absolute()
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise DemoError(f"--pretrained {str(path)!r} is not a checkpoint folder (no config.json there)")
    model_type = read_json(config_path).get("model_type")
    if model_type not in supported_families():
        raise DemoError(
            f"--pretrained {str(path)!r} has model_type {model_type!r}; supported: {', '.join(supported_families())}"
        )
    if "," in str(folder):
        raise DemoError(f"--pretrained {str(path)!r} contains a comma, which lmms-eval's model_args cannot carry")
    return folder, model_type


def identify_experts(checkpoint: Path, model_name: str, cfg: DemoConfig) -> InterventionSpec:
    """The soft intervention on the checkpoint's domain experts: held-out rd_demo text problems vs rd-eval's
    general probe set."""
    from rd_eval.experts.pipeline import identify_domain_experts

    # bfloat16, as lmms-eval's Qwen3-VL class evaluates, so that the probes see the routing the runs will see.
    model, processor = load_model(checkpoint, dtype="bfloat16", device="cpu")
    domain = [p.text_twin for p in generate_problems(cfg.probe_size, cfg.seed + DOMAIN_PROBE_SEED_OFFSET)]
    general = general_probe_texts()[: cfg.probe_size]
    experts = identify_domain_experts(
        model, processor, domain, general, band=cfg.band, top=None, model_name=model_name,
        method={"domain_probe": f"rd_demo generator, seed {cfg.seed + DOMAIN_PROBE_SEED_OFFSET}, n={len(domain)}",
                "general_probe": f"rd-eval general_probe.txt, n={len(general)}", "token_scope": "prompt"},
    )
    return InterventionSpec(experts=experts, mode="soft", strength=cfg.strength, band=cfg.band)


def run_setting(model_id: str, model_args: str, output_path: Path, log_path: Path, cfg: DemoConfig) -> RunRecord:
    """lmms-eval's own CLI, exactly as a user would type it, offline; the run it wrote (never an earlier one)."""
    command = lmms_eval_command(model_id, model_args, [DEMO_TASK], output_path, include_path=tasks_dir(),
                                batch_size=cfg.batch_size, seed=cfg.seed, limit=cfg.limit)
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


def _flip_rates(output_path: Path, checkpoint: Path, spec: InterventionSpec) -> dict[str, float | None] | None:
    """The soft run's flip rate per benchmark, from the routing records its adapter wrote beside its output."""
    folder = routing_folder(output_path, str(checkpoint), spec.content_hash())
    if not folder.is_dir():
        return None
    return flip_rates_by_benchmark(merge_routing_records(folder), str(folder))


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = print) -> DemoResult:
    out = check_writable(cfg.out_dir)
    started = time.perf_counter()
    if cfg.pretrained is not None:
        checkpoint, family = check_checkpoint(cfg.pretrained)
        say(f"[1/4] using checkpoint {checkpoint}")
    else:
        if cfg.family not in supported_tiny_families():
            raise DemoError(f"family {cfg.family!r} has no tiny checkpoint; supported: "
                            f"{', '.join(supported_tiny_families())}")
        family = cfg.family
        # The name is kept from when lmms-eval's name rule (A<n>B) chose the class, so earlier demo folders are reused.
        checkpoint, built = ensure_tiny(family, out / "models" / f"rd-tiny-{family}-A1B", seed=cfg.seed)
        say(f"[1/4] {'built' if built else 'reusing'} tiny random {family} checkpoint: {checkpoint}")
    model_id = f"rd_{family}"

    spec = identify_experts(checkpoint, str(checkpoint), cfg)
    paths = {
        "checkpoint": checkpoint,
        "expert_set": spec.experts.save(out / "experts" / "domain_experts.json"),
        "intervention": spec.save(out / "experts" / "intervention_soft.json"),
    }
    n_experts = sum(len(layer.experts) for layer in spec.experts.layers)
    say(f"[2/4] domain experts: {n_experts} across MoE layers "
        f"{[layer.moe_index for layer in spec.experts.layers]} -> {paths['expert_set']}")

    # The hash pins the soft run to this spec's content: a later demo into the same --out rewrites the spec file,
    # and the report must still name this run by the setting it ran with.
    settings = {"plain": f"pretrained={checkpoint}",
                "soft": f"pretrained={checkpoint},intervention={paths['intervention']},"
                        f"intervention_hash={spec.content_hash()}"}
    runs: dict[str, RunRecord] = {}
    for step, (name, model_args) in enumerate(settings.items(), start=3):
        run_dir, log = out / "runs" / name, out / "logs" / f"lmms_eval_{name}.log"
        say(f"[{step}/4] lmms-eval --model {model_id} --tasks {DEMO_TASK} ({name}) ... log: {log}")
        runs[name] = run_setting(model_id, model_args, run_dir, log, cfg)
        paths[f"run_{name}"] = run_dir
        paths[f"log_{name}"] = log

    base_run, soft_run = runs["plain"], runs["soft"]
    base, soft = load_paired_samples(base_run), load_paired_samples(soft_run)
    table = compare_runs(base, soft, seed=cfg.seed)
    flip_rates = _flip_rates(paths["run_soft"], checkpoint, spec)
    if flip_rates is not None:
        table["flip_rates"] = flip_rates  # the gain rows show them (rd_eval.analysis.gaps.to_markdown)
    table["demo"] = {
        "model_id": model_id, "checkpoint": str(checkpoint), "intervention": spec.to_json() | {"experts": "see file"},
        "intervention_hash": spec.content_hash(), "runs": {"plain": str(base_run.results_path),
                                                           "soft": str(soft_run.results_path)},
        "note": CHANCE_NOTE, "seconds": round(time.perf_counter() - started, 1),
    }
    markdown = to_markdown(table, title=f"rd_demo: {model_id}, plain vs soft intervention "
                                         f"(lambda={spec.strength}, band {spec.band.to_json()})")
    markdown += "\n" + CHANCE_NOTE + "\n"
    paths["table_json"] = write_json_atomic(out / "rd_demo_table.json", table)
    paths["table_md"] = write_text_atomic(out / "rd_demo_table.md", markdown)
    return DemoResult(table=table, markdown=markdown, paths=paths)
