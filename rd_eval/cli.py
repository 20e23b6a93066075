"""The `rd-eval` command line. Bad input is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def _cmd_tasks_path(args: argparse.Namespace) -> int:
    from rd_eval.demo import tasks_dir

    print(tasks_dir())
    return 0


def _cmd_make_tiny(args: argparse.Namespace) -> int:
    from rd_eval.tiny import make_tiny

    path = make_tiny(args.family, args.out_dir, seed=args.seed, overwrite=args.overwrite)
    print(path)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from rd_eval.demo import DemoConfig, run_demo
    from rd_eval.routing.spec import LayerBand

    cfg = DemoConfig(
        out_dir=Path(args.out),
        pretrained=Path(args.pretrained) if args.pretrained else None,
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


def _cmd_report(args: argparse.Namespace) -> int:
    from rd_eval.jsonio import write_text_atomic
    from rd_eval.report import build_report, to_csv, to_html, to_json, to_markdown

    report = build_report([Path(p) for p in args.run_dirs], scope=args.scope, n_boot=args.n_boot, seed=args.seed)
    render = {"md": to_markdown, "csv": to_csv, "json": to_json, "html": to_html}[args.format]
    text = render(report)
    if args.format == "md":
        print(text, end="")
    if args.out is None and args.format in ("csv", "json"):
        print(text, end="")
        return 0
    if args.out is not None or args.format == "html":
        target = Path(args.out if args.out is not None else ".") / f"report.{REPORT_EXTENSIONS[args.format]}"
        written = write_text_atomic(target, text)
        print(f"Written: {written}", file=sys.stderr if args.format == "md" else sys.stdout)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rd-eval",
        description="Seeing but Not Thinking: routing-distraction evaluation of MoE vision-language models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("tasks-path", help="print the installed folder of rd-eval's lmms-eval tasks")
    p.set_defaults(func=_cmd_tasks_path)

    p = sub.add_parser("make-tiny", help="write a tiny random MoE VLM checkpoint (offline)")
    p.add_argument("family", metavar="FAMILY", help="model family, e.g. qwen3_vl_moe")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the checkpoint to")
    p.add_argument("--seed", type=int, default=0, help="weight-initialisation seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it is not empty")
    p.set_defaults(func=_cmd_make_tiny)

    p = sub.add_parser("demo", help="run the embedded paired benchmark plain and intervened, print the table")
    p.add_argument("--out", default="rd_demo_out", help="output folder (default ./rd_demo_out)")
    p.add_argument("--pretrained", default=None, help="use this local checkpoint instead of the tiny model")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N pairs")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lambda", dest="strength", type=float, default=1.0, help="soft intervention strength")
    p.add_argument("--band", default="0.25-0.75", help="MoE-layer band: fractions '0.25-0.75' or indices '2,3'")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("report", help="gaps, intervention effects and routing divergence of lmms-eval runs")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="lmms-eval --output_path folder(s) or results files")
    p.add_argument("--format", choices=sorted(REPORT_EXTENSIONS), default="md",
                   help="md (printed; also DIR/report.md with --out), csv, json, html (always a file)")
    p.add_argument("--out", default=None, metavar="DIR", help="write DIR/report.<ext> (html default: current folder)")
    p.add_argument("--scope", default="prompt", choices=["prompt", "generated", "text", "image", "all"],
                   help="token scope of the pair divergence (default prompt)")
    p.add_argument("--n-boot", type=int, default=10000, help="bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from rd_eval.demo import DemoError, DemoRunError
    from rd_eval.jsonio import JsonFileError
    from rd_eval.report import ReportInputError
    from rd_eval.routing.sites import UnsupportedModelError
    from rd_eval.routing.spec import SpecError
    from rd_eval.tiny import TinyModelError

    try:
        return int(args.func(args))
    except (DemoError, TinyModelError, SpecError, JsonFileError, UnsupportedModelError, ReportInputError) as exc:
        print(f"rd-eval {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DemoRunError as exc:
        print(f"rd-eval {args.command}: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
