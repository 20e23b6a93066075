"""Transcript twins (docs/design.md §5.1): a named transcriber's transcription of each benchmark image, stored as a
versioned file keyed by benchmark and `pair_id`, and read by the benchmarks' text-twin tasks.

One setting points the tasks at a transcript set: the environment variable `RD_EVAL_TRANSCRIPTS`, a folder
holding `<benchmark>.transcripts.json` files (what `rd-eval twins transcribe --out DIR` and `rd-eval twins import`
write; the format, pair_ids and content_hash: docs/transcripts.md). A file is read only when its content still
hashes to its recorded `content_hash`: an edit by hand is refused, naming how to re-import it. A text-twin
document without a transcript is an error that names the command that makes one. A document whose transcription
failed (the model could not answer it) is listed with its reason under `failed`; the text twin leaves it out, so
its pair counts as image-only in the report instead of stopping the run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rd_eval.fileio.jsonio import JsonFileError, canonical_hash, read_json, write_json_atomic

TRANSCRIPTS_ENV = "RD_EVAL_TRANSCRIPTS"
TRANSCRIPT_FORMAT = "rd-eval-transcripts"
TRANSCRIPT_VERSION = 1
TRANSCRIPT_METRIC = "rd_transcript"  # the per-document metric of the rd_<benchmark>_transcribe tasks

TRANSCRIBE_PROMPT = (
    "Transcribe everything in the image that is needed to solve the problem: all text, numbers, labels, "
    "axis values, table cells, and a precise description of any figure (shapes, lengths, angles, positions). "
    "Do not solve the problem."
)


class TranscriptError(ValueError):
    """A transcript set is missing, malformed or lacks a document."""


def _how_to_make(benchmark: str) -> str:
    return (f"make them with `rd-eval twins transcribe --model MODEL --model_args ARGS --tasks rd_{benchmark}_img "
            f"--out DIR` (or bring transcriptions made elsewhere with `rd-eval twins import FILE.jsonl --benchmark "
            f"{benchmark} --transcriber NAME --out DIR`) and set {TRANSCRIPTS_ENV}=DIR")


def _how_to_reimport(benchmark: str) -> str:
    return ("To use edited transcriptions, write them as JSON lines {\"pair_id\": ..., \"transcription\": ...} and "
            f"import them: `rd-eval twins import FILE.jsonl --benchmark {benchmark} --transcriber NAME --out DIR "
            "--overwrite`; or restore the file as it was written")


@dataclass(frozen=True)
class TranscriptSet:
    """Transcripts of one benchmark's images by one transcriber."""

    benchmark: str
    transcriber: str  # the lmms-eval model id that transcribed
    model_args: str  # its model_args (checkpoint, settings)
    prompt: str
    entries: Mapping[str, str] = field(default_factory=dict)  # pair_id -> transcript
    created: str = ""
    failed: Mapping[str, str] = field(default_factory=dict)  # pair_id -> why its transcription failed

    def __post_init__(self) -> None:
        if not self.benchmark or not self.transcriber:
            raise TranscriptError("a transcript set needs a benchmark and a transcriber")
        for name in ("entries", "failed"):
            mapping = getattr(self, name)
            bad = [k for k, v in mapping.items() if not isinstance(k, str) or not isinstance(v, str)]
            if bad:
                raise TranscriptError(f"transcripts of {self.benchmark}: {name} must map pair_id strings to text; "
                                      f"bad keys {bad[:3]}")
            object.__setattr__(self, name, MappingProxyType(dict(mapping)))
        both = sorted(set(self.entries) & set(self.failed))
        if both:
            raise TranscriptError(f"transcripts of {self.benchmark}: pair_ids {both[:3]} are both transcribed and "
                                  "failed")

    @property
    def content_hash(self) -> str:
        content = {"transcriber": self.transcriber, "model_args": self.model_args, "prompt": self.prompt,
                   "entries": dict(self.entries)}
        if self.failed:  # only when present, so that sets without failures keep the hashes they always had
            content["failed"] = dict(self.failed)
        return canonical_hash(content)

    def to_json(self) -> dict[str, Any]:
        return {"format": TRANSCRIPT_FORMAT, "version": TRANSCRIPT_VERSION, "benchmark": self.benchmark,
                "transcriber": self.transcriber, "model_args": self.model_args, "prompt": self.prompt,
                "created": self.created, "content_hash": self.content_hash,
                "entries": dict(sorted(self.entries.items())), "failed": dict(sorted(self.failed.items()))}

    @classmethod
    def from_json(cls, data: Any, *, source: str) -> TranscriptSet:
        if not isinstance(data, dict) or data.get("format") != TRANSCRIPT_FORMAT:
            raise TranscriptError(f"{source}: not an rd-eval transcript file (format {TRANSCRIPT_FORMAT!r})")
        if data.get("version") != TRANSCRIPT_VERSION:
            raise TranscriptError(f"{source}: transcript format version {data.get('version')!r}; this rd-eval "
                                  f"reads version {TRANSCRIPT_VERSION}")
        missing = [k for k in ("benchmark", "transcriber", "entries") if k not in data]
        if missing:
            raise TranscriptError(f"{source}: missing keys {missing}")
        if not isinstance(data["entries"], dict):
            raise TranscriptError(f"{source}: 'entries' must be an object mapping pair_id to transcript")
        failed = data.get("failed", {})  # absent from files written before failures were kept
        if not isinstance(failed, dict):
            raise TranscriptError(f"{source}: 'failed' must be an object mapping pair_id to the reason")
        try:
            transcripts = cls(benchmark=str(data["benchmark"]), transcriber=str(data["transcriber"]),
                              model_args=str(data.get("model_args", "")), prompt=str(data.get("prompt", "")),
                              entries=data["entries"], created=str(data.get("created", "")), failed=failed)
        except TranscriptError as exc:
            raise TranscriptError(f"{source}: {exc}") from None
        transcripts.verify(data.get("content_hash"), source=source)
        return transcripts

    def verify(self, recorded: Any, *, source: str) -> None:
        """Refuse a file whose recorded content_hash is not the hash of its content: a run must read the
        transcripts the file's hash names, never a hand edit that no record shows."""
        if not isinstance(recorded, str) or not recorded:
            raise TranscriptError(f"{source}: no content_hash; every transcript file records the hash of its "
                                  f"content (docs/transcripts.md). {_how_to_reimport(self.benchmark)}")
        if recorded != self.content_hash:
            raise TranscriptError(
                f"{source}: the file changed after it was written: it records content_hash {recorded!r} but its "
                f"content hashes to {self.content_hash!r} (a transcription, the transcriber, model_args, prompt "
                f"or failed list was edited). {_how_to_reimport(self.benchmark)}"
            )

    def save(self, folder: str | os.PathLike[str]) -> Path:
        return write_json_atomic(transcript_path(folder, self.benchmark), self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TranscriptSet:
        try:
            return cls.from_json(read_json(path), source=str(path))
        except JsonFileError as exc:
            raise TranscriptError(str(exc)) from None


def transcript_path(folder: str | os.PathLike[str], benchmark: str) -> Path:
    return Path(folder) / f"{benchmark}.transcripts.json"


def transcripts_from_samples(samples: Sequence[Mapping[str, Any]], *, benchmark: str, transcriber: str,
                             model_args: str, prompt: str = TRANSCRIBE_PROMPT) -> TranscriptSet:
    """A transcript set from an lmms-eval samples file of an `rd_<benchmark>_transcribe` task."""
    entries: dict[str, str] = {}
    failed: dict[str, str] = {}
    for number, sample in enumerate(samples, start=1):
        value = sample.get(TRANSCRIPT_METRIC)
        if not isinstance(value, Mapping) or "pair_id" not in value or "transcript" not in value:
            raise TranscriptError(f"sample {number} of {benchmark}: no '{TRANSCRIPT_METRIC}' with pair_id and "
                                  "transcript (was it an rd_<benchmark>_transcribe task?)")
        if value.get("error"):
            failed[str(value["pair_id"])] = str(value["error"])  # no transcript; its text twin leaves it out
            continue
        entries[str(value["pair_id"])] = str(value["transcript"]).strip()
    return TranscriptSet(benchmark=benchmark, transcriber=transcriber, model_args=model_args, prompt=prompt,
                         entries=entries, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         failed=failed)


@lru_cache(maxsize=32)
def _load_cached(path: str, mtime_ns: int) -> TranscriptSet:
    # Keyed by modification time: a rewritten file is read again (the cache only spares re-reading per doc).
    return TranscriptSet.load(path)


def load_transcripts(benchmark: str, folder: str | os.PathLike[str] | None = None) -> TranscriptSet:
    """The benchmark's transcript set from `folder` (default: the folder named by RD_EVAL_TRANSCRIPTS)."""
    folder = folder if folder is not None else os.environ.get(TRANSCRIPTS_ENV)
    if not folder:
        raise TranscriptError(f"the text twins of {benchmark} need transcripts and {TRANSCRIPTS_ENV} is not set; "
                              + _how_to_make(benchmark))
    path = transcript_path(folder, benchmark)
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise TranscriptError(f"{path}: no transcripts of {benchmark}; " + _how_to_make(benchmark)) from None
    transcripts = _load_cached(str(path), mtime)
    if transcripts.benchmark != benchmark:
        raise TranscriptError(f"{path}: holds transcripts of {transcripts.benchmark!r}, not {benchmark!r}")
    return transcripts


def transcript_for(benchmark: str, pair_id: str, folder: str | os.PathLike[str] | None = None) -> str:
    """The transcript of one document's image; a missing one is an error naming how to make it."""
    transcripts = load_transcripts(benchmark, folder)
    try:
        return transcripts.entries[str(pair_id)]
    except KeyError:
        if str(pair_id) in transcripts.failed:
            raise TranscriptError(
                f"{benchmark} document {pair_id!r}: its transcription by {transcripts.transcriber} failed "
                f"({transcripts.failed[str(pair_id)]}); the text twin leaves such documents out"
            ) from None
        raise TranscriptError(
            f"no transcript of {benchmark} document {pair_id!r} in the set by {transcripts.transcriber} "
            f"({len(transcripts.entries)} documents); " + _how_to_make(benchmark)
        ) from None


def failed_transcriptions(benchmark: str, folder: str | os.PathLike[str] | None = None) -> Mapping[str, str]:
    """pair_id -> reason for the documents whose transcription failed; empty when no transcript set is
    configured yet (the text twin's prompts then raise the error that names how to make one)."""
    try:
        return load_transcripts(benchmark, folder).failed
    except TranscriptError:
        return MappingProxyType({})


def transcript_result(pair_id: str, response: str) -> dict[str, dict[str, Any]]:
    """`process_results` value of a transcribe task: the transcript travels in the logged samples."""
    from rd_eval.scoring.doc_errors import error_reason, is_error_response

    error = error_reason(response) if is_error_response(response) else None
    return {TRANSCRIPT_METRIC: {"pair_id": str(pair_id), "transcript": "" if error else response, "error": error}}


def transcribed_share(items: Sequence[Mapping[str, Any]]) -> float:
    """Aggregation of a transcribe task: the share of documents that got a transcript."""
    if not items:
        return 0.0
    return sum(1 for item in items if not item.get("error") and item.get("transcript")) / len(items)
