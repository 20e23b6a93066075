"""Issue 16 item 3: the model organism measured on its held-out split through `python -m lmms_eval`.

    python scripts/organism_item3.py [--organism DIR] --out DIR [--limit N]

1. `rd-eval demo` on the organism (in process): `rd-eval experts`' identification (ΔΦ, 20 validation text
   problems vs 20 general probes), then rd_organism + rd_organism_see plain, soft (λ 1, band 0.25-0.75) and the
   seeded random-expert control through lmms-eval's CLI with rd_qwen3_vl_moe, and rd-eval's report (per-layer
   image/text routing JSD of the plain run);
2. `rd-eval experts` itself (the command line) with the same probes, and whether it recovers the experts the
   organism's card names (D: the experts its training steered the image form away from);
3. the causal check: the identified experts *suppressed* (mode suppress) on both forms through lmms-eval; the
   text form's accuracy change is what suppressing them costs the form that reasons with them.
Writes DIR/item3.md (the table) and DIR/item3.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rd_eval.analysis.gaps import compare_runs
from rd_eval.commands.demo import (
    DemoConfig,
    check_organism,
    demo_model,
    run_demo,
    run_setting,
    shipped_organism_dir,
)
from rd_eval.fileio.jsonio import read_json, write_json_atomic, write_text_atomic
from rd_eval.lmms.runs import load_paired_samples, read_run
from rd_eval.organism.train import CARD_FILE
from rd_eval.reports.report import build_report
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerExperts

PROBES = 20


def ci(d: dict[str, Any]) -> str:
    return f"{d['diff']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]"


def experts_by_layer(experts: ExpertSet) -> dict[int, list[int]]:
    return {layer.moe_index: sorted(layer.experts) for layer in experts.layers}


def run_experts_cli(organism: Path, out: Path) -> tuple[ExpertSet, float]:
    """`rd-eval experts` with the demo's probes: the probe set `organism` (20 validation text problems) vs general."""
    target = out / "experts_cli.json"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rd_eval", "experts", "--pretrained", str(organism), "--domain",
                    "organism", "--general", "general", "--n", str(PROBES), "--out", str(target)], check=True)
    return ExpertSet.load(target), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--organism", default=None, help="organism folder (default: the shipped one)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=None, help="only the first N held-out pairs")
    parser.add_argument("--reuse-demo", action="store_true", help="reuse OUT/demo of an earlier run of this script")
    args = parser.parse_args()
    organism = check_organism(Path(args.organism) if args.organism else shipped_organism_dir())
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    card = read_json(organism / CARD_FILE)
    planted = {int(k): sorted(v) for k, v in (card.get("domain_experts") or {}).items()}

    started = time.perf_counter()
    cfg = DemoConfig(out_dir=out / "demo", model="organism", checkpoint=organism, limit=args.limit)
    if args.reuse_demo and (out / "demo" / "rd_organism_table.json").is_file():
        table = read_json(out / "demo" / "rd_organism_table.json")
        expert_path = out / "demo" / "experts" / "domain_experts.json"
    else:
        demo = run_demo(cfg, say=lambda line: print(line, flush=True))
        table, expert_path = demo.table, demo.paths["expert_set"]
    demo_wall = time.perf_counter() - started
    identified = ExpertSet.load(expert_path)
    cli_set, cli_wall = run_experts_cli(organism, out)

    model = demo_model(cfg, out / "demo", say=lambda _line: None)
    plain = load_paired_samples(read_run(Path(table["demo"]["runs"]["plain"])))

    def effect_of(name: str, spec: InterventionSpec) -> dict[str, Any]:
        spec_path = spec.save(out / f"intervention_{name}.json")
        run = run_setting(model, f"{model.model_args},intervention={spec_path},intervention_hash={spec.content_hash()}",
                          [model.benchmark], out / "runs" / name, out / "logs" / f"lmms_eval_{name}.log", cfg)
        return compare_runs(plain, load_paired_samples(run), seed=cfg.seed)["rows"][0]["effect"]

    # The causal check: the identified experts suppressed (shifted below every other logit) in the band layers;
    # then the planted experts D of the organism's card, boosted and suppressed, to tell the identification step
    # from the intervention itself.
    suppressed = effect_of("suppress", InterventionSpec(experts=identified, mode="suppress", band=cfg.band))
    planted_layers = tuple(LayerExperts(moe_index=i, experts=tuple(e)) for i, e in sorted(planted.items()))
    planted_set = ExpertSet(model=str(organism), kind="domain", method={"source": "the organism card's D"},
                            layers=planted_layers)
    on_d = {mode: effect_of(f"{mode}_planted", InterventionSpec(experts=planted_set, mode=mode, band=cfg.band))
            for mode in ("soft", "suppress")} if planted else {}

    report = build_report([Path(p) for p in table["demo"]["runs"].values()], n_boot=2000)
    base_setting = next(s for s in report["settings"] if s["role"] == "base")
    layers = base_setting["routing"]["benchmarks"][0]["layers"]
    rows = {r["setting"]: r for r in table["summary"]}
    perception = table["perception"]
    result = {
        "organism": str(organism), "weights_sha256": card.get("weights_sha256"), "n_pairs": rows["plain"]["n_pairs"],
        "summary": table["summary"], "perception": perception,
        "jsd": [{"layer": layer["site"], "in_band": layer["in_band"], "mean": layer["jsd_mean"],
                 "ci": [layer["ci_low"], layer["ci_high"]]} for layer in layers],
        "experts": {"planted_D": planted, "demo": experts_by_layer(identified), "cli": experts_by_layer(cli_set)},
        "suppress": suppressed, "planted": on_d,
        "wall_s": {"demo": round(demo_wall, 1), "experts_cli": round(cli_wall, 1)},
    }
    write_json_atomic(out / "item3.json", result)

    plain_row, soft, rand = rows["plain"], rows["soft"], rows["random"]
    recovered = experts_by_layer(cli_set) == planted
    jsd = "; ".join(f"L{x['layer']}{'*' if x['in_band'] else ''} {x['mean']:.4f} [{x['ci'][0]:.4f}, {x['ci'][1]:.4f}]"
                    for x in result["jsd"])
    lines = [
        f"| measure (held-out, {plain_row['n_pairs']} pairs, `python -m lmms_eval --model rd_qwen3_vl_moe`) | value |",
        "|---|---|",
        f"| text-form accuracy | {plain_row['acc_txt']:.1f}% |",
        f"| seen (rd_organism_see, perception check) | {perception['seen']:.1f}% of {perception['n']} images |",
        f"| image-form accuracy | {plain_row['acc_img']:.1f}% |",
        f"| gap txt - img [95% CI] | {ci(plain_row['gap'])} points (McNemar p {plain_row['gap']['p_mcnemar']:.2g}) |",
        f"| image failures: not seen / seen | {perception['attribution']['perception_errors']} / "
        f"{perception['attribution']['reasoning_errors']} |",
        f"| image/text routing JSD per layer (plain run, prompt tokens; * = middle band) | {jsd} |",
        f"| `rd-eval experts` (ΔΦ, 20 + 20 probes) | {experts_by_layer(cli_set)}; planted D {planted}: "
        f"{'recovered' if recovered else 'NOT recovered'} |",
        f"| soft λ 1 on the identified experts: gain [95% CI] | {ci(soft['gain'])} (flip rate "
        f"{100 * (soft['flip_rate'] or 0):.1f}%) |",
        f"| soft: text cost [95% CI] | {ci(soft['text_cost'])} |",
        f"| seeded random-expert control: gain [95% CI] | {ci(rand['gain'])} (text cost {ci(rand['text_cost'])}) |",
        f"| identified experts suppressed: text cost [95% CI] (causal check) | {ci(suppressed['text_cost'])} "
        f"(image {ci(suppressed['gain'])}) |",
    ]
    if on_d:
        lines += [f"| soft λ 1 on the planted D: gain [95% CI] / text cost | {ci(on_d['soft']['gain'])} / "
                  f"{ci(on_d['soft']['text_cost'])} |",
                  f"| planted D suppressed: text cost [95% CI] (causal check) | {ci(on_d['suppress']['text_cost'])} "
                  f"(image {ci(on_d['suppress']['gain'])}) |"]
    write_text_atomic(out / "item3.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"demo wall {demo_wall:.0f} s, experts CLI {cli_wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
