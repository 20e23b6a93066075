"""`rd-eval twins import`: transcripts made elsewhere, checked line by line, written as the transcript file that
the text-twin task then reads through lmms-eval; and an edited file refused there."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rd_eval_tasks
from PIL import Image

from rd_eval.commands.main import main
from rd_eval.twins.transcript_import import not_transcribed_reason
from rd_eval.twins.transcripts import TRANSCRIPTS_ENV, TranscriptError, TranscriptSet, transcript_path

TASKS_DIR = Path(rd_eval_tasks.__file__).parent
PAIR_IDS = ("v1_0", "v1_1", "v1_2")


def _mirror(root: Path) -> Path:
    """A LogicVista mirror of three questions (upstream layout: dataset.json keyed by id, images/)."""
    folder = root / "logicvista"
    (folder / "images").mkdir(parents=True)
    records = {}
    for i, pair_id in enumerate(PAIR_IDS):
        records[pair_id] = {"imagename": f"{pair_id}.png", "question": "Which choice (A, B, C, or D) fits?",
                            "answer": "ABC"[i], "reasoning": "", "skill": ["inductive"], "broad_capability": [],
                            "specific_capability": [], "imagesource": "", "sourcelink": "", "liscenced": "false"}
        Image.new("RGB", (32 + i, 24), (40 * i, 90, 160)).save(folder / "images" / f"{pair_id}.png")
    (folder / "dataset.json").write_text(json.dumps(records), encoding="utf-8")
    return root


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("RD_EVAL_DATA_DIR", str(_mirror(tmp_path / "mirror")))
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    monkeypatch.delenv(TRANSCRIPTS_ENV, raising=False)
    yield tmp_path


def _jsonl(path: Path, *lines: Any) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
                    encoding="utf-8")
    return path


def _texts(pair_ids: tuple[str, ...] = PAIR_IDS) -> list[dict[str, str]]:
    return [{"pair_id": p, "transcription": f"  Figure {p}: a grid of 3 x 3 squares, one shaded. \n"}
            for p in pair_ids]


def _import(file: Path, out: Path, *extra: str, benchmark: str = "logicvista") -> int:
    return main(["twins", "import", str(file), "--benchmark", benchmark, "--transcriber", "gpt-4o-2024-08-06",
                 "--out", str(out), *extra])


def _text_twin(monkeypatch: pytest.MonkeyPatch, transcripts: Path) -> Any:
    """rd_logicvista_txt built by lmms-eval's TaskManager, reading the transcripts as a run would."""
    from lmms_eval.tasks import TaskManager, get_task_dict

    monkeypatch.setenv(TRANSCRIPTS_ENV, str(transcripts))
    manager = TaskManager(include_path=[str(TASKS_DIR / "rd_logicvista")], include_defaults=False)
    return get_task_dict(["rd_logicvista_txt"], manager)["rd_logicvista_txt"]


def test_imported_transcripts_are_what_the_text_twin_task_reads(mirror: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    source = _jsonl(mirror / "elsewhere.jsonl", *_texts(), {"pair_id": "v1_1x", "transcription": "x"}
                    )  # one line too many: refused first, then imported without it
    out = mirror / "transcripts"
    assert _import(source, out) == 2
    assert "line 4: pair_id 'v1_1x' is not a logicvista document (3 documents" in capsys.readouterr().err
    assert not out.exists()
    _jsonl(source, *_texts())
    assert _import(source, out, "--model_args", "temperature=0", "--prompt", "Describe the figure.") == 0
    written = transcript_path(out, "logicvista")
    printed = capsys.readouterr().out.splitlines()
    loaded = TranscriptSet.load(written)
    assert printed == [f"logicvista: 3 transcriptions from {source}, content_hash {loaded.content_hash} -> "
                       f"{written}", f"text twins read them with: export {TRANSCRIPTS_ENV}={out}"]
    assert (loaded.transcriber, loaded.model_args, loaded.prompt) == ("gpt-4o-2024-08-06", "temperature=0",
                                                                       "Describe the figure.")
    assert dict(loaded.entries) == {p: f"Figure {p}: a grid of 3 x 3 squares, one shaded." for p in PAIR_IDS}
    assert dict(loaded.failed) == {}
    task = _text_twin(monkeypatch, out)
    docs = list(task.test_docs_no_media())
    assert [d["pair_id"] for d in docs] == list(PAIR_IDS)
    for doc in docs:
        prompt = task.doc_to_text(doc)
        assert f"Figure {doc['pair_id']}: a grid of 3 x 3 squares, one shaded." in prompt
        assert "Which choice (A, B, C, or D) fits?" in prompt


def test_allow_missing_leaves_the_missing_documents_out_of_the_text_twin(
        mirror: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    source = _jsonl(mirror / "partial.jsonl", *_texts(("v1_2", "v1_0")))
    out = mirror / "transcripts"
    assert _import(source, out) == 2
    assert ("partial.jsonl: 1 of the 3 logicvista documents have no transcription ('v1_1'), nothing written; "
            "add them, or pass --allow-missing") in capsys.readouterr().err
    assert not out.exists()
    assert _import(source, out, "--allow-missing") == 0
    assert "2 transcriptions from" in capsys.readouterr().out
    loaded = TranscriptSet.load(transcript_path(out, "logicvista"))
    assert dict(loaded.failed) == {"v1_1": not_transcribed_reason(str(source))}
    assert "absent from the imported file partial.jsonl" in loaded.failed["v1_1"]
    task = _text_twin(monkeypatch, out)
    assert [d["pair_id"] for d in task.test_docs_no_media()] == ["v1_0", "v1_2"]  # v1_1's pair: image-only


def test_a_hand_edited_file_is_refused_by_the_task_and_a_reimport_fixes_it(
        mirror: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lmms_eval.tasks import TaskManager, get_task_dict

    source = _jsonl(mirror / "t.jsonl", *_texts())
    out = mirror / "transcripts"
    assert _import(source, out) == 0
    written = transcript_path(out, "logicvista")
    data = json.loads(written.read_text(encoding="utf-8"))
    data["entries"]["v1_1"] = "Figure v1_1: a grid of 4 x 4 squares."  # corrected by hand
    written.write_text(json.dumps(data, indent=2), encoding="utf-8")
    monkeypatch.setenv(TRANSCRIPTS_ENV, str(out))
    manager = TaskManager(include_path=[str(TASKS_DIR / "rd_logicvista")], include_defaults=False)
    with pytest.raises(TranscriptError, match=rf"{written}: the file changed after it was written: it records "
                                              rf"content_hash '{data['content_hash']}' but its content hashes to "
                                              r"'[0-9a-f]{12}'.*rd-eval twins import FILE.jsonl --benchmark "
                                              r"logicvista --transcriber NAME --out DIR --overwrite"):
        get_task_dict(["rd_logicvista_txt"], manager)  # the task checks its first document when built
    # The documented way back: the edited text as JSON lines, imported again over the edited file.
    edited = [{"pair_id": p, "transcription": t} for p, t in data["entries"].items()]
    assert _import(_jsonl(mirror / "edited.jsonl", *edited), out) == 2
    assert f"{written} exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert _import(mirror / "edited.jsonl", out, "--overwrite") == 0
    task = _text_twin(monkeypatch, out)
    doc = next(d for d in task.test_docs_no_media() if d["pair_id"] == "v1_1")
    assert "Figure v1_1: a grid of 4 x 4 squares." in task.doc_to_text(doc)


@pytest.mark.parametrize(("lines", "message"), [
    (['{"pair_id": "v1_0", "transcription": "a"', ], "line 1: not valid JSON (Expecting ',' delimiter at column 41): "
                                                     "'{\"pair_id\": \"v1_0\", \"transcription\": \"a\"'"),
    (['["v1_0", "a"]'], 'line 1: expected a JSON object like {"pair_id": "12", "transcription": '),
    ([{"pair_id": "v1_0", "transcript": "a"}], "line 1: no 'transcription' key (the line has keys ['pair_id', "
                                               "'transcript'])"),
    ([{"transcription": "a"}], "line 1: no 'pair_id' key"),
    ([{"pair_id": 1.5, "transcription": "a"}], "line 1: pair_id must be a non-empty string or an integer, got '1.5'"),
    ([{"pair_id": " ", "transcription": "a"}], "line 1: pair_id must be a non-empty string or an integer, got ' '"),
    ([{"pair_id": True, "transcription": "a"}], "line 1: pair_id must be a non-empty string or an integer"),
    ([{"pair_id": "v1_0", "transcription": None}], "line 1: pair_id 'v1_0': the transcription must be text, got "
                                                   "'null'"),
    ([{"pair_id": "v1_0", "transcription": " \n\t"}], "line 1: pair_id 'v1_0': empty transcription ' \\n\\t'"),
    ([{"pair_id": "v1_0", "transcription": "a"}, "", {"pair_id": "v1_0", "transcription": "b"}],
     "line 3: pair_id 'v1_0' again (first on line 1); give each pair_id once"),
    ([{"pair_id": 7, "transcription": "a"}, {"pair_id": "7", "transcription": "b"}],
     "line 2: pair_id '7' again (first on line 1)"),  # an integer pair_id is its decimal string
    (["", "  "], "no transcriptions (the file holds no JSON lines); write one object per line"),
])
def test_each_bad_line_is_named_with_its_line_and_value(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        lines: list[Any], message: str) -> None:
    # Lines are checked before the benchmark's documents are read: no data is needed for these.
    source = _jsonl(tmp_path / "in.jsonl", *lines)
    out = tmp_path / "out"
    assert _import(source, out) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rd-eval twins: error: {source}: ")
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_all_problems_are_counted_and_the_first_five_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _jsonl(tmp_path / "in.jsonl", *[{"pair_id": f"p{i}", "transcription": ""} for i in range(8)])
    assert _import(source, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"{source}: 8 problems, nothing written: line 1: pair_id 'p0': empty transcription" in err
    assert "line 5: pair_id 'p4'" in err and "line 6" not in err and err.rstrip().endswith("; and 3 more")


def test_file_benchmark_output_and_data_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    good = _jsonl(tmp_path / "in.jsonl", *_texts())
    cases: list[tuple[list[str], str]] = [
        ([str(tmp_path / "nope.jsonl")], "nope.jsonl: file not found"),
        ([str(tmp_path)], "is a folder; name a JSON-lines file"),
        ([str(good), "--benchmark", "mathverse"], "--benchmark mathverse: its text twin is the dataset's own text "
                                                  "version, not a transcript; benchmarks with transcript twins: "
                                                  "mathvista, mathvision, wemath, logicvista, dynamath"),
        ([str(good), "--benchmark", "chartqa"], "--benchmark 'chartqa': not a benchmark with transcript twins"),
    ]
    for args, message in cases:
        code = main(["twins", "import", *args[:1], "--benchmark", "logicvista", "--transcriber", "m", "--out",
                     str(tmp_path / "out"), *args[1:]])
        assert code == 2 and message in capsys.readouterr().err
    (tmp_path / "bytes.jsonl").write_bytes(b'{"pair_id": "v1_0", "transcription": "caf\xe9"}\n')
    assert _import(tmp_path / "bytes.jsonl", tmp_path / "out") == 2
    assert "line 1: not UTF-8 text (byte 0xe9 at column 42)" in capsys.readouterr().err
    assert main(["twins", "import", str(good), "--benchmark", "logicvista", "--transcriber", " ", "--out",
                 str(tmp_path / "out")]) == 2
    assert "--transcriber ' ': name who or what made the transcriptions" in capsys.readouterr().err
    monkeypatch.setenv("RD_EVAL_DATA_DIR", str(tmp_path / "empty_mirror"))
    (tmp_path / "empty_mirror").mkdir()
    assert _import(good, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "cannot read the logicvista documents to check the pair_ids against (LocalDataError: " in err
    assert "logicvista/dataset.json does not exist, and RD_EVAL_DATA_DIR is set" in err
    assert not (tmp_path / "out").exists()


def test_the_command_line_exits_2_with_one_line(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "in.jsonl", "{oops")
    result = subprocess.run([sys.executable, "-m", "rd_eval", "twins", "import", str(source), "--benchmark",
                             "wemath", "--transcriber", "m", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"rd-eval twins: error: {source}: 1 problem, nothing written: line 1: not valid JSON "
                             "(Expecting property name enclosed in double quotes at column 2): '{oops'\n")


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs the real benchmark samples in ../shared/data")
@pytest.mark.parametrize("benchmark", ["mathvista", "mathvision", "wemath", "logicvista", "dynamath"])
def test_real_pair_ids_of_every_transcript_twin_import(benchmark: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from rd_eval.benchmarks import BENCHMARKS
    from rd_eval.twins.transcripts import load_transcripts

    monkeypatch.setenv("RD_EVAL_DATA_DIR", str(SHARED_DATA))
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    pair_ids = [str(p) for p in BENCHMARKS[benchmark].load("txt")["pair_id"]]
    assert len(pair_ids) >= 50
    # Reversed file order, and digit pair_ids given as JSON integers: both name the same documents.
    lines: list[Any] = [{"pair_id": int(p) if p.isdigit() else p, "transcription": f"image of {p}"}
                        for p in reversed(pair_ids)]
    assert _import(_jsonl(tmp_path / "t.jsonl", *lines), tmp_path / "out", benchmark=benchmark) == 0
    loaded = load_transcripts(benchmark, tmp_path / "out")
    assert dict(loaded.entries) == {p: f"image of {p}" for p in pair_ids}
