"""`rd-eval twins import`: transcripts made elsewhere (a JSON-lines file of pair_id + transcription) checked
against the benchmark's documents and written as the transcript file the text-twin tasks read."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rd_eval.fileio.outpaths import check_output_dir, require_input
from rd_eval.twins.transcript_import import TranscriptImportError, imported_set, read_import_lines
from rd_eval.twins.transcripts import TranscriptSet, transcript_path


@dataclass(frozen=True)
class ImportRequest:
    file: Path
    benchmark: str
    transcriber: str
    out_dir: Path
    model_args: str = ""
    prompt: str = ""
    allow_missing: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.transcriber.strip():
            raise TranscriptImportError(f"--transcriber {self.transcriber!r}: name who or what made the "
                                        "transcriptions (a model id)")


def check_benchmark(name: str) -> str:
    """``name`` when its text twin reads transcripts; else an error naming the benchmarks that do."""
    from rd_eval.benchmarks import BENCHMARKS, TRANSCRIPT_TWINS

    if name in TRANSCRIPT_TWINS:
        return name
    if name in BENCHMARKS:
        raise TranscriptImportError(f"--benchmark {name}: its text twin is the dataset's own text version, not a "
                                    f"transcript; benchmarks with transcript twins: {', '.join(TRANSCRIPT_TWINS)}")
    raise TranscriptImportError(f"--benchmark {name!r}: not a benchmark with transcript twins; give one of "
                                f"{', '.join(TRANSCRIPT_TWINS)}")


def benchmark_pair_ids(name: str) -> list[str]:
    """The pair_ids of a benchmark's documents, read from where its tasks read them (RD_EVAL_DATA_DIR or the Hub)."""
    from rd_eval.benchmarks import benchmark

    try:
        docs = benchmark(name).load("txt")  # the text twin's documents: the same pair_ids, no images read
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        # The loaders' errors already say what to do (the mirror file to add, or RD_EVAL_DATA_DIR to set).
        raise TranscriptImportError(f"cannot read the {name} documents to check the pair_ids against "
                                    f"({type(exc).__name__}: {exc})") from None
    return [str(p) for p in docs["pair_id"]]


def import_transcripts(request: ImportRequest) -> tuple[Path, TranscriptSet]:
    """Check the file whole, then write ``<out>/<benchmark>.transcripts.json`` atomically; nothing is written
    on any problem."""
    benchmark = check_benchmark(request.benchmark)
    target = transcript_path(request.out_dir, benchmark)
    if target.exists() and not request.overwrite:
        raise TranscriptImportError(f"{target} exists; pass --overwrite to replace it, or choose another --out")
    lines = read_import_lines(request.file)
    transcripts = imported_set(lines, benchmark=benchmark, known_pair_ids=benchmark_pair_ids(benchmark),
                               transcriber=request.transcriber, model_args=request.model_args,
                               prompt=request.prompt, allow_missing=request.allow_missing)
    return transcripts.save(request.out_dir), transcripts


def summary(path: Path, transcripts: TranscriptSet, source: Path) -> list[str]:
    from rd_eval.commands.transcribe import usage_note

    missing = f", {len(transcripts.failed)} documents not transcribed (image-only)" if transcripts.failed else ""
    count = len(transcripts.entries)
    return [f"{transcripts.benchmark}: {count} transcription{'' if count == 1 else 's'} from {source}{missing}, "
            f"content_hash {transcripts.content_hash} -> {path}", usage_note(path.parent)]


def _cmd_import(args: argparse.Namespace) -> int:
    request = ImportRequest(file=require_input(args.file, "FILE"), benchmark=args.benchmark,
                            transcriber=args.transcriber, out_dir=check_output_dir(args.out, "--out"),
                            model_args=args.model_args, prompt=args.prompt, allow_missing=args.allow_missing,
                            overwrite=args.overwrite)
    path, transcripts = import_transcripts(request)
    for line in summary(path, transcripts, request.file):
        print(line)
    return 0


def add_import_parser(twins: Any) -> None:
    """`twins import` under the `twins` subcommands (``twins`` is argparse's subparsers action)."""
    p = twins.add_parser("import", help="import transcripts made elsewhere (JSON lines of pair_id + transcription)")
    p.add_argument("file", metavar="FILE", help='JSON lines: {"pair_id": ..., "transcription": ...} per document')
    p.add_argument("--benchmark", required=True, help="mathvista, mathvision, wemath, logicvista or dynamath")
    p.add_argument("--transcriber", required=True, help="who or what transcribed (a model id), recorded in the file")
    p.add_argument("--out", required=True, help="folder for <benchmark>.transcripts.json (set RD_EVAL_TRANSCRIPTS)")
    p.add_argument("--model_args", default="", help="the transcriber's settings, recorded (default empty)")
    p.add_argument("--prompt", default="", help="the prompt the transcriber was given, recorded (default empty)")
    p.add_argument("--allow-missing", action="store_true",
                   help="record documents absent from FILE as not transcribed (their pairs count as image-only)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing <benchmark>.transcripts.json")
    p.set_defaults(func=_cmd_import)
