"""Transcript sets (docs/design.md §5.1) and `rd-eval twins transcribe`'s input errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rd_eval.scoring.doc_errors import error_response
from rd_eval.twins.transcripts import (
    TRANSCRIPT_METRIC,
    TRANSCRIPTS_ENV,
    TranscriptError,
    TranscriptSet,
    load_transcripts,
    transcribed_share,
    transcript_for,
    transcript_path,
    transcript_result,
    transcripts_from_samples,
)


def a_set(**changes: object) -> TranscriptSet:
    fields = {"benchmark": "mathvista", "transcriber": "rd_qwen3_vl_moe", "model_args": "pretrained=m",
              "prompt": "Transcribe.", "entries": {"7": "A right triangle with legs 3 and 4.", "9": "x = 2"}}
    return TranscriptSet(**{**fields, **changes})


def test_round_trip_and_lookup(tmp_path: Path) -> None:
    transcripts = a_set()
    path = transcripts.save(tmp_path)
    assert path == transcript_path(tmp_path, "mathvista")
    loaded = TranscriptSet.load(path)
    assert loaded == transcripts and loaded.content_hash == transcripts.content_hash
    assert json.loads(path.read_text())["version"] == 1
    assert transcript_for("mathvista", "7", tmp_path) == "A right triangle with legs 3 and 4."
    assert transcript_for("mathvista", 9, tmp_path) == "x = 2"  # ids compare as strings


def test_the_environment_variable_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a_set().save(tmp_path)
    monkeypatch.setenv(TRANSCRIPTS_ENV, str(tmp_path))
    assert transcript_for("mathvista", "9") == "x = 2"
    # A rewritten file is read again, not served from the per-document cache.
    a_set(entries={"9": "x = 3"}).save(tmp_path)
    os.utime(transcript_path(tmp_path, "mathvista"), ns=(1, 10**18))
    assert transcript_for("mathvista", "9") == "x = 3"


def test_missing_transcripts_name_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRANSCRIPTS_ENV, raising=False)
    with pytest.raises(TranscriptError, match=r"RD_EVAL_TRANSCRIPTS is not set.*rd-eval twins transcribe .*"
                                              r"--tasks rd_wemath_img"):
        transcript_for("wemath", "1")
    with pytest.raises(TranscriptError, match=r"wemath.transcripts.json: no transcripts of wemath; make them"):
        transcript_for("wemath", "1", tmp_path)
    with pytest.raises(TranscriptError, match=r"or bring transcriptions made elsewhere with `rd-eval twins import "
                                              r"FILE.jsonl --benchmark wemath --transcriber NAME --out DIR`"):
        transcript_for("wemath", "1", tmp_path)
    a_set().save(tmp_path)
    with pytest.raises(TranscriptError, match=r"no transcript of mathvista document '8'.*2 documents.*"
                                              r"rd-eval twins transcribe"):
        transcript_for("mathvista", "8", tmp_path)


def test_malformed_files_are_refused_with_their_path(tmp_path: Path) -> None:
    path = transcript_path(tmp_path, "mathvista")
    path.write_text("{not json")
    with pytest.raises(TranscriptError, match="not valid JSON"):
        TranscriptSet.load(path)
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(TranscriptError, match="not an rd-eval transcript file"):
        TranscriptSet.load(path)
    path.write_text(json.dumps({**a_set().to_json(), "version": 99}))
    with pytest.raises(TranscriptError, match="version 99"):
        TranscriptSet.load(path)
    path.write_text(json.dumps({**a_set().to_json(), "entries": ["a"]}))
    with pytest.raises(TranscriptError, match="'entries' must be an object"):
        TranscriptSet.load(path)
    other = tmp_path / "other"
    a_set(benchmark="logicvista").save(other)
    transcript_path(other, "logicvista").rename(transcript_path(other, "mathvista"))
    with pytest.raises(TranscriptError, match="holds transcripts of 'logicvista', not 'mathvista'"):
        load_transcripts("mathvista", other)
    with pytest.raises(TranscriptError, match="needs a benchmark and a transcriber"):
        a_set(transcriber="")


def test_from_logged_samples_keeps_failed_documents_apart() -> None:
    # A logged sample carries its metric values at the top level, as process_results returned them.
    samples = [transcript_result("1", " Two circles. "),
               transcript_result("2", error_response("image check failed"))]
    transcripts = transcripts_from_samples(samples, benchmark="logicvista", transcriber="rd_aria", model_args="p")
    assert dict(transcripts.entries) == {"1": "Two circles."}
    assert dict(transcripts.failed) == {"2": "image check failed"}
    assert transcribed_share([s[TRANSCRIPT_METRIC] for s in samples]) == 0.5
    assert transcribed_share([]) == 0.0
    with pytest.raises(TranscriptError, match="sample 1 of logicvista: no 'rd_transcript'"):
        transcripts_from_samples([{"rd_acc": 1}], benchmark="logicvista", transcriber="m", model_args="")


@pytest.mark.parametrize(("tasks", "message"), [
    ("rd_mathvista_txt", "give image-form tasks named rd_<benchmark>_img"),
    ("rd_nosuchbench_img", "no transcribe task for nosuchbench"),
    (" , ", "give at least one rd_<benchmark>_img task"),
])
def test_transcribe_command_input_errors(tasks: str, message: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "rd_eval", "twins", "transcribe", "--model", "rd_aria",
                             "--model_args", "pretrained=x", "--tasks", tasks, "--out", str(tmp_path)],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_failed_transcriptions_round_trip_and_name_themselves(tmp_path: Path) -> None:
    from rd_eval.fileio.jsonio import canonical_hash
    from rd_eval.twins.transcripts import failed_transcriptions

    plain = a_set()
    # Sets without failures keep the content hash they had before failures were recorded.
    assert plain.content_hash == canonical_hash({"transcriber": plain.transcriber, "model_args": plain.model_args,
                                                 "prompt": plain.prompt, "entries": dict(plain.entries)})
    with_failure = a_set(failed={"11": "unreadable image"})
    assert with_failure.content_hash != plain.content_hash
    path = with_failure.save(tmp_path)
    loaded = TranscriptSet.load(path)
    assert dict(loaded.failed) == {"11": "unreadable image"} and loaded.content_hash == with_failure.content_hash
    assert dict(failed_transcriptions("mathvista", tmp_path)) == {"11": "unreadable image"}
    with pytest.raises(TranscriptError, match=r"mathvista document '11': its transcription by rd_qwen3_vl_moe "
                                              r"failed \(unreadable image\); the text twin leaves"):
        transcript_for("mathvista", "11", tmp_path)
    # No transcript set configured yet: nothing to leave out (the prompts name the missing set).
    assert dict(failed_transcriptions("mathvista", tmp_path / "nowhere")) == {}
    # Files written before failures were recorded have no 'failed' key (and a hash without one).
    data = json.loads(path.read_text())
    del data["failed"]
    path.write_text(json.dumps(data))
    with pytest.raises(TranscriptError, match="the file changed after it was written"):
        TranscriptSet.load(path)  # dropping a recorded failure is an edit
    path.write_text(json.dumps({**data, "content_hash": plain.content_hash}))
    assert dict(TranscriptSet.load(path).failed) == {}


@pytest.mark.parametrize(("failed", "message"), [
    (["11"], "'failed' must be an object mapping pair_id to the reason"),
    ({"11": 3}, "failed must map pair_id strings to text"),
    ({"7": "timeout"}, r"pair_ids \['7'\] are both transcribed and failed"),
])
def test_malformed_failures_are_refused_with_their_path(tmp_path: Path, failed: object, message: str) -> None:
    path = a_set().save(tmp_path)
    data = json.loads(path.read_text())
    data["failed"] = failed
    path.write_text(json.dumps(data))
    with pytest.raises(TranscriptError, match=rf"{path}: .*{message}"):
        TranscriptSet.load(path)


def test_transcribe_summary_counts_failures(tmp_path: Path) -> None:
    from rd_eval.commands.transcribe import summary

    ok = a_set(benchmark="mathvista").save(tmp_path)
    with_failure = a_set(benchmark="logicvista", failed={"11": "image check failed"}).save(tmp_path)
    lines = summary({"mathvista": ok, "logicvista": with_failure}, tmp_path)
    assert lines[0] == f"mathvista: 2 transcripts -> {ok}"
    assert lines[1] == (f"logicvista: 2 transcripts, 1 failed (left out of the text twin, so their pairs count as "
                        f"image-only) -> {with_failure}")
    assert lines[2] == f"text twins read them with: export {TRANSCRIPTS_ENV}={tmp_path}"


def _documented_json(value: object) -> str:
    """The canonical serialisation as docs/transcripts.md words it, written from that text (not json.dumps)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_documented_json(k)}:{_documented_json(v)}" for k, v in sorted(value.items())) + "}"
    short = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for ch in str(value):
        if ch in short:
            out.append(short[ch])
        elif " " <= ch <= "~":
            out.append(ch)
        elif ord(ch) > 0xFFFF:
            high, low = divmod(ord(ch) - 0x10000, 0x400)
            out.append(f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return '"' + "".join(out) + '"'


def test_content_hash_is_what_the_format_document_says() -> None:
    import hashlib

    tricky = 'Ein Dreieck \u25b3ABC, \u2220B = 90\u00b0; "quoted" \\ back/slash\n\tx\x7f\x01 \U0001f600 \u00e9'
    for transcripts in (a_set(entries={"7": tricky, "10": "plain", "b": "\u03c0r\u00b2"}),
                        a_set(entries={"7": "x"}, failed={"8": "timeout \u2014 retried"}, prompt="", model_args="")):
        content = {"transcriber": transcripts.transcriber, "model_args": transcripts.model_args,
                   "prompt": transcripts.prompt, "entries": dict(transcripts.entries)}
        if transcripts.failed:
            content["failed"] = dict(transcripts.failed)
        payload = _documented_json(content)
        assert payload.isascii()
        assert payload == json.dumps(content, sort_keys=True, separators=(",", ":"))  # the document's Python recipe
        assert transcripts.content_hash == hashlib.sha256(payload.encode("ascii")).hexdigest()[:12]


def test_an_edited_file_is_refused_and_names_how_to_reimport(tmp_path: Path) -> None:
    path = a_set().save(tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    recorded = data["content_hash"]
    for edit in ({"entries": {**data["entries"], "9": "x = 4"}}, {"prompt": "Transcribe carefully."},
                 {"transcriber": "someone"}, {"failed": {"12": "skipped"}}):
        path.write_text(json.dumps({**data, **edit}), encoding="utf-8")
        with pytest.raises(TranscriptError, match=rf"{path}: the file changed after it was written: it records "
                                                  rf"content_hash '{recorded}' but its content hashes to "
                                                  r"'[0-9a-f]{12}'.* `rd-eval twins import FILE.jsonl --benchmark "
                                                  r"mathvista --transcriber NAME --out DIR --overwrite`"):
            TranscriptSet.load(path)
    # What the hash leaves out may change: when it was written, and the file's layout.
    path.write_text(json.dumps({**data, "created": "2020-01-01T00:00:00+00:00"}), encoding="utf-8")
    assert TranscriptSet.load(path) == a_set(created="2020-01-01T00:00:00+00:00")
    for missing in (None, "", 12):
        path.write_text(json.dumps({**data, "content_hash": missing}), encoding="utf-8")
        with pytest.raises(TranscriptError, match=rf"{path}: no content_hash; every transcript file records"):
            TranscriptSet.load(path)
    del data["content_hash"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TranscriptError, match="no content_hash.*rd-eval twins import"):
        load_transcripts("mathvista", tmp_path)
