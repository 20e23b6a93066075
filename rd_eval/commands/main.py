"""The `rd-eval` command line. Bad input is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from rd_eval.commands import organism, sweep
from rd_eval.commands.twins import add_import_parser
from rd_eval.fileio.outpaths import PathArgumentError, check_output_dir, check_output_file, require_input
from rd_eval.vocabulary.scopes import DEFAULT_PAIR_SCOPE, SCOPES_DEFAULT_FIRST

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class OneLineParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (`rd-eval <cmd>: error: ...`), like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _finite(value: float, flag: str, *, minimum: float | None = None) -> float:
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        need = "a finite number" + (f" >= {minimum:g}" if minimum is not None else "")
        raise PathArgumentError(f"{flag} {value!r} invalid; need {need}")
    return value


def _cmd_tasks_path(args: argparse.Namespace) -> int:
    from rd_eval.commands.demo import tasks_dir

    print(tasks_dir())
    return 0


def _cmd_make_tiny(args: argparse.Namespace) -> int:
    from rd_eval.models.tiny import make_tiny

    check_output_dir(args.out_dir, "OUT_DIR")
    path = make_tiny(args.family, args.out_dir, seed=args.seed, overwrite=args.overwrite)
    print(path)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from rd_eval.commands.demo import DEFAULT_MODEL as DEFAULT_DEMO_MODEL
    from rd_eval.commands.demo import DemoConfig, run_demo
    from rd_eval.routing.spec import LayerBand

    _finite(args.strength, "--lambda")
    model, checkpoint = DEFAULT_DEMO_MODEL, None
    if args.random:
        model = "random"
    elif args.pretrained is not None:
        model, checkpoint = "pretrained", require_input(args.pretrained, "--pretrained")
    elif args.organism is not None:
        model, checkpoint = "organism", require_input(args.organism, "--organism")
    cfg = DemoConfig(
        out_dir=check_output_dir(args.out, "--out"),
        model=model,
        checkpoint=checkpoint,
        seed=args.seed,
        limit=args.limit,
        batch_size=args.batch_size,
        strength=args.strength,
        band=LayerBand.parse(args.band),
    )
    result = run_demo(cfg, say=lambda line: print(line, flush=True))
    print()
    print(result.markdown)
    print("Written:")
    for name, path in result.paths.items():
        print(f"  {name:<13} {path}")
    return 0


REPORT_EXTENSIONS = {"md": "md", "csv": "csv", "json": "json", "html": "html"}
PLOTS_FOLDER = "plots"  # report --out DIR: DIR/report.<ext> and DIR/plots/*.png


def _cmd_report(args: argparse.Namespace) -> int:
    from rd_eval.fileio.jsonio import write_text_atomic
    from rd_eval.rendering.plots import write_png
    from rd_eval.reports.report import build_report, plots, to_csv, to_html, to_json, to_markdown

    run_dirs = [require_input(p, "RUN_DIR") for p in args.run_dirs]
    experts = require_input(args.experts, "--experts") if args.experts is not None else None
    target = folder = None
    if args.out is not None or args.format == "html":
        folder = check_output_dir(args.out, "--out") if args.out is not None else Path(".")
        target = check_output_file(folder / f"report.{REPORT_EXTENSIONS[args.format]}", "--out")
    report = build_report(run_dirs, scope=args.scope, n_boot=args.n_boot, seed=args.seed, experts=experts)
    drawn = plots(report) if folder is not None else None
    if args.format == "html":
        text = to_html(report, drawn)
    else:
        text = {"md": to_markdown, "csv": to_csv, "json": to_json}[args.format](report)
    if args.format == "md":
        print(text, end="")
    if target is None or folder is None or drawn is None:
        if args.format in ("csv", "json"):
            print(text, end="")
        return 0
    say = sys.stderr if args.format == "md" else sys.stdout
    print(f"Written: {write_text_atomic(target, text)}", file=say)
    for plot in drawn:  # the plots as files too, beside the report: DIR/plots/<what it shows>.png
        print(f"Written: {write_png(folder / PLOTS_FOLDER, plot.stem, plot.png)}", file=say)
    return 0


def _cmd_experts(args: argparse.Namespace) -> int:
    from rd_eval.commands.experts import ExpertsConfig, ExpertsInputError, run_experts, summary
    from rd_eval.routing.spec import LayerBand
    from rd_eval.vocabulary.model_args import parse_model_args, pretrained_of

    out = check_output_file(args.out, "--out")
    pretrained = args.pretrained or pretrained_of(parse_model_args(args.model_args))
    if not pretrained:
        raise ExpertsInputError("give the checkpoint: --pretrained DIR or --model_args pretrained=DIR,...")
    cfg = ExpertsConfig(
        pretrained=Path(pretrained), out=out, domain=args.domain, general=args.general,
        domain_file=require_input(args.domain_file, "--domain-file") if args.domain_file is not None else None,
        general_file=require_input(args.general_file, "--general-file") if args.general_file is not None else None,
        n=args.n, seed=args.seed, band=LayerBand.parse(args.band), top=args.top, visual=args.visual,
        image_probe=args.image_probe, batch_size=args.batch_size,
    )
    experts, path = run_experts(cfg)
    print(summary(experts))
    print(f"Written: {path}")
    return 0


def _cmd_experts_convert(args: argparse.Namespace) -> int:
    from rd_eval.routing.easysteer import convert_file
    from rd_eval.vocabulary.model_args import parse_model_args, pretrained_of

    out = check_output_file(args.out, "--out")
    pretrained = pretrained_of(parse_model_args(args.model_args))
    path, summary = convert_file(require_input(args.file, "FILE"), args.to, out, pretrained)
    print(summary)
    print(f"Written: {path}")
    return 0


def _cmd_twins_transcribe(args: argparse.Namespace) -> int:
    from rd_eval.commands.demo import tasks_dir
    from rd_eval.commands.transcribe import main_args, summary, transcribe

    request = main_args(args, tasks_dir())
    written = transcribe(request)
    for line in summary(written, request.out_dir):
        print(line)
    return 0


def _leaderboard_folder(value: str) -> Path:
    """``--out`` of the leaderboard: a folder, as for ``report``; a file name as before (``lb.html``) is refused."""
    from rd_eval.reports.leaderboard import FORMATS

    path = Path(value).expanduser()
    if path.suffix.lower() in {f".{fmt}" for fmt in FORMATS} and not path.is_dir():
        raise PathArgumentError(
            f"--out {value!r} names a file, but --out is a folder (as for rd-eval report): --out DIR writes "
            f"DIR/leaderboard.<{'|'.join(FORMATS)}>; e.g. --out {str(path.with_suffix('')) or '.'!r}"
        )
    return check_output_dir(value, "--out")


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from rd_eval.reports.leaderboard import FORMATS, build_leaderboard, output_paths, render, write_leaderboard

    results_dirs = [require_input(p, "RESULTS_DIR") for p in args.results_dirs]
    if args.out is None and args.format != "html":
        print(render(build_leaderboard(results_dirs), args.format or "md"), end="")
        return 0
    folder = _leaderboard_folder(args.out) if args.out is not None else Path(".")
    formats = [args.format] if args.format else list(FORMATS)
    for target in output_paths(folder, formats):
        check_output_file(target, "--out")
    for written in write_leaderboard(build_leaderboard(results_dirs), folder, formats):
        print(f"Written: {written}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from rd_eval.reports.check import check_run, to_markdown, write_baseline

    run_dir = require_input(args.run_dir, "RUN_DIR")
    if args.write_baseline is not None:
        print(f"Written: {write_baseline(run_dir, check_output_file(args.write_baseline, '--write-baseline'))}")
        return 0
    _finite(args.max_drop, "--max-drop", minimum=0.0)
    _finite(args.alpha, "--alpha")
    result = check_run(run_dir, require_input(args.baseline, "--baseline"), max_drop=args.max_drop,
                       alpha=args.alpha, allow_other_model=args.allow_other_model)
    print(to_markdown(result), end="")
    return 0 if result.ok else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="rd-eval",
        description="Seeing but Not Thinking: routing-distraction evaluation of MoE vision-language models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("tasks-path", help="print the installed folder of rd-eval's lmms-eval tasks")
    p.set_defaults(func=_cmd_tasks_path)

    p = sub.add_parser("make-tiny", help="write a tiny random MoE VLM checkpoint (offline)")
    p.add_argument("family", metavar="FAMILY", help="model family, e.g. qwen3_vl_moe")
    p.add_argument("out_dir", metavar="OUT_DIR", help="new or empty folder to write the checkpoint to")
    p.add_argument("--seed", type=int, default=0, help="weight-initialisation seed (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT_DIR when it holds an earlier tiny checkpoint (never any other content)")
    p.set_defaults(func=_cmd_make_tiny)

    p = sub.add_parser("demo", help="run a paired benchmark plain and intervened, print the table")
    p.add_argument("--out", default="rd_demo_out", help="output folder (default ./rd_demo_out)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--random", action="store_true",
                       help="a tiny random checkpoint on rd_demo (pipeline smoke test; its numbers mean nothing)")
    which.add_argument("--organism", default=None, metavar="DIR",
                       help="a model organism trained with `rd-eval organism train` instead of the shipped one")
    which.add_argument("--pretrained", default=None, metavar="DIR", help="a local checkpoint, on rd_demo")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N pairs")
    p.add_argument("--batch-size", type=int, default=None,
                   help="lmms-eval batch size (default 64 for the organism, else 4)")
    p.add_argument("--lambda", dest="strength", type=float, default=1.0,
                   help="soft intervention strength (negative: a soft suppression)")
    p.add_argument("--band", default="0.25-0.75", help="MoE-layer band: fractions '0.25-0.75' or indices '2:3'")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("report", help="gaps, intervention effects and routing divergence of lmms-eval runs")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="lmms-eval --output_path folder(s) or results files")
    p.add_argument("--format", choices=sorted(REPORT_EXTENSIONS), default="md",
                   help="md (printed; also DIR/report.md with --out), csv, json, html (always a file)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write DIR/report.<ext> and the plots as DIR/plots/*.png (html default: current folder)")
    p.add_argument("--experts", default=None, metavar="FILE",
                   help="expert set JSON (rd-eval experts) whose ΔΦ heatmap to draw (default: the sets the runs' "
                        "intervention specs steer)")
    p.add_argument("--scope", default=DEFAULT_PAIR_SCOPE, choices=SCOPES_DEFAULT_FIRST,
                   help="token scope of the pair divergence (default prompt)")
    p.add_argument("--n-boot", type=int, default=10000, help="bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("leaderboard", help="one row per model/checkpoint/intervention: img/txt/gap/gain")
    p.add_argument("results_dirs", nargs="+", metavar="RESULTS_DIR", help="lmms-eval --output_path folder(s)")
    p.add_argument("--format", choices=["md", "csv", "html"], default=None,
                   help="md (default) or csv: printed unless --out; html: a page that sorts and filters in the "
                        "browser (always a file)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write DIR/leaderboard.<format> (all three, md, csv and html, without --format) and the "
                        "chart as DIR/plots/leaderboard_gap_per_setting.png (html default: the current folder)")
    p.set_defaults(func=_cmd_leaderboard)

    p = sub.add_parser("check", help="CI gate: compare a run with a baseline (exit 1 on a regression)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="lmms-eval --output_path of one run (with --log_samples)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--baseline", default=None, metavar="FILE", help="baseline JSON to compare with")
    mode.add_argument("--write-baseline", default=None, metavar="FILE", help="write RUN_DIR as a baseline JSON")
    p.add_argument("--max-drop", type=float, default=1.0, metavar="PTS",
                   help="tolerated accuracy drop / gap widening in points (default 1.0)")
    p.add_argument("--alpha", type=float, default=0.05, metavar="A",
                   help="McNemar significance level where per-doc data exist (default 0.05)")
    p.add_argument("--allow-other-model", action="store_true",
                   help="compare with a baseline of another model id, checkpoint or intervention setting on purpose")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("twins", help="transcript twins of benchmark images")
    twins = p.add_subparsers(dest="twins_command", required=True)
    t = twins.add_parser("transcribe", help="transcribe benchmark images with an lmms-eval model (text twins)")
    t.add_argument("--model", required=True, help="lmms-eval model id of the transcriber, e.g. rd_qwen3_vl_moe")
    t.add_argument("--model_args", required=True, help="its model_args, e.g. pretrained=Qwen/Qwen3-VL-30B-A3B-Instruct")
    t.add_argument("--tasks", required=True, help="image-form tasks, comma-separated: rd_mathvista_img,...")
    t.add_argument("--out", required=True, help="folder for <benchmark>.transcripts.json (set RD_EVAL_TRANSCRIPTS)")
    t.add_argument("--limit", type=int, default=None, help="documents per benchmark (testing)")
    t.add_argument("--batch_size", type=int, default=1)
    t.add_argument("--gen_kwargs", default=None, help="passed to lmms-eval, e.g. max_new_tokens=512")
    t.set_defaults(func=_cmd_twins_transcribe)
    add_import_parser(twins)

    p = sub.add_parser("experts", help="identify domain (or visual) experts of a checkpoint from probe sets")
    p.add_argument("--pretrained", default=None, metavar="DIR", help="local checkpoint folder")
    p.add_argument("--model", default=None, metavar="ID", help="the lmms-eval model id the set is for (recorded)")
    p.add_argument("--model_args", default=None, metavar="ARGS",
                   help="lmms-eval model_args; its pretrained= names the checkpoint when --pretrained is absent")
    p.add_argument("--domain", default="gsm8k", help="domain probe set: gsm8k, alpaca, rd_demo, general or a file")
    p.add_argument("--general", default="alpaca", help="general probe set (same choices; default alpaca)")
    p.add_argument("--domain-file", default=None, metavar="PATH", help="JSON/JSONL file of the domain probe set")
    p.add_argument("--general-file", default=None, metavar="PATH", help="JSON/JSONL file of the general probe set")
    p.add_argument("--n", type=int, default=20, help="probe texts per set (default 20)")
    p.add_argument("--seed", type=int, default=0, help="probe sampling seed (default 0)")
    p.add_argument("--band", default="0.25-0.75", help="MoE-layer band: fractions '0.25-0.75' or indices '2:3'")
    p.add_argument("--top", type=int, default=None, help="experts kept per layer (default: the model's top-k)")
    p.add_argument("--visual", action="store_true", help="visual experts: phi(image tokens) - phi(text tokens)")
    p.add_argument("--image-probe", default="rd_demo", help="image-form probe set for --visual (default rd_demo)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default="experts.json", help="expert-set JSON to write (default ./experts.json)")
    p.set_defaults(func=_cmd_experts)
    conv = p.add_subparsers(dest="experts_command", metavar="{convert}")
    c = conv.add_parser("convert", help="convert an expert set / intervention spec to or from EasySteer's format")
    c.add_argument("file", help="rd-eval expert set or spec JSON, or an EasySteer layer_configs JSON")
    c.add_argument("--to", required=True, choices=("easysteer", "rd-eval"), help="the format to write")
    c.add_argument("--out", required=True, metavar="FILE", help="JSON file to write")
    c.add_argument("--model_args", default=None, metavar="ARGS",
                   help="pretrained=DIR: the checkpoint whose config.json maps MoE layers to decoder layers")
    c.set_defaults(func=_cmd_experts_convert)

    organism.add_parser(sub)
    sweep.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from rd_eval.commands.demo import DemoError, DemoRunError
    from rd_eval.commands.experts import ExpertsInputError
    from rd_eval.commands.transcribe import TranscribeInputError
    from rd_eval.fileio.jsonio import JsonFileError
    from rd_eval.lmms.runner import LmmsEvalRunError
    from rd_eval.models.tiny import TinyModelError
    from rd_eval.reports.check import CheckInputError
    from rd_eval.reports.leaderboard import LeaderboardInputError
    from rd_eval.reports.report import ReportInputError
    from rd_eval.routing.sites import UnsupportedModelError
    from rd_eval.routing.spec import SpecError
    from rd_eval.twins.transcripts import TranscriptError
    from rd_eval.vocabulary.model_args import ModelArgsError

    try:
        return int(args.func(args))
    except (DemoError, TinyModelError, SpecError, JsonFileError, UnsupportedModelError, ReportInputError,
            ExpertsInputError, PathArgumentError,
            LeaderboardInputError, CheckInputError, TranscribeInputError, TranscriptError, ModelArgsError,
            *sweep.bad_input_errors()) as exc:
        print(f"rd-eval {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (DemoRunError, LmmsEvalRunError, *sweep.failure_errors()) as exc:
        print(f"rd-eval {args.command}: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
