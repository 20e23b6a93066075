"""`rd-eval twins transcribe`: run an lmms-eval model over benchmarks' image forms with a transcription
prompt (each benchmark's `rd_<benchmark>_transcribe` task) and write one versioned transcript file per
benchmark, which the text-twin tasks read through RD_EVAL_TRANSCRIPTS."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rd_eval.fileio.outpaths import check_output_dir
from rd_eval.lmms.runner import LmmsEvalRunError, lmms_eval_command, run_lmms_eval
from rd_eval.twins.transcripts import TRANSCRIPTS_ENV, TranscriptSet, transcripts_from_samples
from rd_eval.vocabulary.task_names import TASK_PREFIX, image_task_name, task_of


class TranscribeInputError(ValueError):
    """Bad `twins transcribe` input: reported as one line, exit code 2."""


@dataclass(frozen=True)
class TranscribeRequest:
    model: str
    model_args: str
    image_tasks: tuple[str, ...]
    out_dir: Path
    include_path: Path
    limit: int | None = None
    batch_size: int = 1
    gen_kwargs: str | None = None  # lmms-eval's --gen_kwargs, e.g. "max_new_tokens=512"

    @property
    def benchmarks(self) -> tuple[str, ...]:
        return tuple(transcribed_benchmark(task) for task in self.image_tasks)


def transcribe_task(name: str) -> str:
    """The transcription task of a bare benchmark name: ``mathvista`` -> ``rd_mathvista_transcribe``."""
    return task_of(f"{TASK_PREFIX}{name}", "transcribe")


def transcribed_benchmark(image_task: str) -> str:
    """The bare benchmark name (``mathvista``) an image-form task's transcripts are filed under."""
    name = image_task_name(image_task)
    if name is None:
        raise TranscribeInputError(f"--tasks {image_task!r}: give image-form tasks named rd_<benchmark>_img "
                                   "(e.g. rd_mathvista_img)")
    return name


def parse_tasks(text: str) -> tuple[str, ...]:
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    if not tasks:
        raise TranscribeInputError("--tasks: give at least one rd_<benchmark>_img task")
    for task in tasks:
        transcribed_benchmark(task)
    return tasks


def transcribe(request: TranscribeRequest) -> dict[str, Path]:
    """Run the transcribe tasks through lmms-eval; write `<out>/<benchmark>.transcripts.json` per benchmark."""
    missing = [b for b in request.benchmarks
               if not any(request.include_path.rglob(f"{transcribe_task(b)}.yaml"))]
    if missing:
        raise TranscribeInputError(f"no transcribe task for {', '.join(missing)} under {request.include_path} "
                                   f"(looked for rd_<benchmark>_transcribe.yaml)")
    runs_dir, log = request.out_dir / "runs", request.out_dir / "logs" / "transcribe.log"
    command = lmms_eval_command(request.model, request.model_args,
                                [transcribe_task(b) for b in request.benchmarks], runs_dir,
                                include_path=request.include_path, batch_size=request.batch_size,
                                limit=request.limit, gen_kwargs=request.gen_kwargs)
    run = run_lmms_eval(command, runs_dir, log)
    written: dict[str, Path] = {}
    for benchmark in request.benchmarks:
        task = transcribe_task(benchmark)
        if task not in run.samples:
            raise LmmsEvalRunError(f"lmms-eval logged no samples of {task}; log: {log}")
        samples = [json.loads(line) for line in Path(run.samples[task]).read_text(encoding="utf-8").splitlines()
                   if line.strip()]
        transcripts: TranscriptSet = transcripts_from_samples(samples, benchmark=benchmark,
                                                              transcriber=request.model,
                                                              model_args=request.model_args)
        written[benchmark] = transcripts.save(request.out_dir)
    return written


def usage_note(out_dir: Path) -> str:
    return f"text twins read them with: export {TRANSCRIPTS_ENV}={out_dir}"


def main_args(args: object, include_path: Path) -> TranscribeRequest:
    tasks = parse_tasks(args.tasks)
    limit = args.limit
    if limit is not None and limit < 1:
        raise TranscribeInputError(f"--limit {limit}: give a positive number of documents")
    return TranscribeRequest(model=args.model, model_args=args.model_args,
                             image_tasks=tasks, out_dir=check_output_dir(args.out, "--out"), include_path=include_path,
                             limit=limit, batch_size=args.batch_size, gen_kwargs=args.gen_kwargs)


def summary(written: dict[str, Path], out_dir: Path) -> Sequence[str]:
    lines = []
    for benchmark, path in written.items():
        transcripts = TranscriptSet.load(path)
        failed = (f", {len(transcripts.failed)} failed (left out of the text twin, so their pairs count as "
                  "image-only)") if transcripts.failed else ""
        lines.append(f"{benchmark}: {len(transcripts.entries)} transcripts{failed} -> {path}")
    lines.append(usage_note(out_dir))
    return lines
