"""Routing record shards: JSONL lines plus binary sidecars; round trip, version 1 shards, crash safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rd_eval.routing.recording import BatchRouting
from rd_eval.routing.records import DocIdentity, document_record, error_record
from rd_eval.routing.shards import ShardWriter, merge_routing_records, read_routing_records, sidecar_paths
from rd_eval.vocabulary.scopes import BASE_SCOPES

LAYERS, EXPERTS = 5, 7


def batch(rng: np.random.Generator, size: int, *, high: int = 40) -> BatchRouting:
    counts = rng.integers(0, high, size=(size, LAYERS, len(BASE_SCOPES), EXPERTS)).astype(np.float32)
    prob_sums = rng.random((size, LAYERS, len(BASE_SCOPES), EXPERTS), dtype=np.float32) * 10
    tokens = rng.integers(0, 100, size=(size, len(BASE_SCOPES))).astype(np.float32)
    return BatchRouting(counts=counts, prob_sums=prob_sums, tokens=tokens)


def records_of(routing: BatchRouting, task: str, first_doc: int) -> list[dict]:
    return [document_record(DocIdentity(task, first_doc + row, "img"), routing, row, model="m",
                            intervention_hash="none") for row in range(routing.batch_size)]


def assert_matches(record: dict, routing: BatchRouting, row: int) -> None:
    for s, scope in enumerate(BASE_SCOPES):
        np.testing.assert_array_equal(record["counts"][scope], routing.counts[row, :, s, :])
        np.testing.assert_array_equal(record["prob_sums"][scope], routing.prob_sums[row, :, s, :])
        assert record["tokens"][scope] == int(routing.tokens[row, s])


def test_round_trip_keeps_counts_exact_and_probability_sums_in_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    first, second = batch(rng, 3), batch(rng, 2, high=70_000)  # the second needs 32-bit counts
    writer = ShardWriter(tmp_path, 0)
    writer.append(records_of(first, "t_img", 0))
    writer.append(records_of(second, "t_img", 3)
                  + [error_record(DocIdentity("t_img", 5, "img"), model="m", intervention_hash="none", error="bad")])
    records = list(read_routing_records(tmp_path))
    assert [r["doc_id"] for r in records] == [0, 1, 2, 3, 4, 5]
    for row in range(3):
        assert_matches(records[row], first, row)
    for row in range(2):
        assert_matches(records[3 + row], second, row)
    assert records[0]["counts"]["prompt_text"].dtype == np.uint16
    assert records[3]["counts"]["prompt_text"].dtype == np.uint32
    assert records[0]["prob_sums"]["generated"].dtype == np.float32
    assert records[5]["error"] == "bad" and records[5]["counts"] is None and records[5]["tokens"] is None
    assert {r["version"] for r in records} == {3}
    assert all("arrays" not in r for r in records)
    # The JSON lines stay small and readable: arrays live in the sidecars, counts apart from the sums.
    lines = (tmp_path / "routing_rank000.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(len(line) < 1000 for line in lines)
    sidecars = sidecar_paths(tmp_path / "routing_rank000.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["routing_rank000.jsonl", "routing_rank000.counts.bin", "routing_rank000.probs.bin"])
    # 3 + 2 documents of 3 x 5 x 7 counts: 16-bit, then 32-bit; sums always float32.
    assert sidecars["counts"].stat().st_size == 105 * (3 * 2 + 2 * 4)
    assert sidecars["prob_sums"].stat().st_size == 105 * 5 * 4


def test_version_1_shards_are_still_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    routing = batch(rng, 2)
    lines = []
    for record in records_of(routing, "old_txt", 0):
        record |= {"version": 1, "counts": {k: np.asarray(v).tolist() for k, v in record["counts"].items()},
                   "prob_sums": {k: np.round(np.asarray(v, dtype=np.float64), 6).tolist()
                                 for k, v in record["prob_sums"].items()}}
        lines.append(json.dumps(record))
    (tmp_path / "routing_rank000.jsonl").write_text("\n".join(lines) + "\n")
    ShardWriter(tmp_path, 0).append(records_of(routing, "old_txt", 2))  # a version 2 batch after them
    records = merge_routing_records(tmp_path)
    assert [r["version"] for r in records] == [1, 1, 3, 3]
    for record, row in zip(records, [0, 1, 0, 1], strict=True):
        np.testing.assert_array_equal(np.asarray(record["counts"]["prompt_image"]), routing.counts[row, :, 1, :])
        np.testing.assert_allclose(np.asarray(record["prob_sums"]["generated"]), routing.prob_sums[row, :, 2, :],
                                   atol=1e-5)


def test_early_version_2_shards_with_one_shared_sidecar_are_still_read(tmp_path: Path) -> None:
    routing = batch(np.random.default_rng(11), 3)
    ShardWriter(tmp_path, 0).append(records_of(routing, "t_img", 0))
    # Rewrite the shard as the first version 2 writer did: counts, then sums, in routing_rank000.bin, and
    # lines that name no file.
    shard = tmp_path / "routing_rank000.jsonl"
    sidecars = sidecar_paths(shard)
    counts_bytes = sidecars["counts"].read_bytes()
    (tmp_path / "routing_rank000.bin").write_bytes(counts_bytes + sidecars["prob_sums"].read_bytes())
    for path in sidecars.values():
        path.unlink()
    lines = [json.loads(line) for line in shard.read_text().splitlines()]
    for line in lines:
        del line["arrays"]["counts"]["file"], line["arrays"]["prob_sums"]["file"]
        line["arrays"]["prob_sums"]["offset"] += len(counts_bytes)
    shard.write_text("".join(json.dumps(line) + "\n" for line in lines))
    records = merge_routing_records(tmp_path)
    assert len(records) == 3
    for row, record in enumerate(records):
        assert_matches(record, routing, row)


def test_a_batch_that_died_before_its_lines_is_skipped_and_later_batches_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    first, second = batch(rng, 2), batch(rng, 2)
    ShardWriter(tmp_path, 0).append(records_of(first, "t_img", 0))
    for sidecar in sidecar_paths(tmp_path / "routing_rank000.jsonl").values():
        with open(sidecar, "ab") as fh:
            fh.write(b"\x07" * 123)  # arrays of a batch whose process died before writing its lines
    ShardWriter(tmp_path, 0).append(records_of(second, "t_img", 2))  # the rerun appends
    records = list(read_routing_records(tmp_path))
    assert [r["doc_id"] for r in records] == [0, 1, 2, 3]
    assert_matches(records[2], second, 0)
    assert_matches(records[3], second, 1)


def test_a_torn_last_line_is_skipped_and_trimmed_by_the_next_writer(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    first, second = batch(rng, 2), batch(rng, 1)
    ShardWriter(tmp_path, 0).append(records_of(first, "t_img", 0))
    shard = tmp_path / "routing_rank000.jsonl"
    text = shard.read_text()
    shard.write_text(text[: len(text) - 20])  # the crash tore the second line
    assert [r["doc_id"] for r in read_routing_records(tmp_path)] == [0]
    ShardWriter(tmp_path, 0).append(records_of(second, "t_img", 5))
    records = list(read_routing_records(tmp_path))  # the torn line is gone, not left in the middle
    assert [r["doc_id"] for r in records] == [0, 5]
    assert_matches(records[1], second, 0)
    assert all(line.startswith("{") and line.endswith("}") for line in shard.read_text().splitlines())


def test_a_truncated_sidecar_is_an_error_naming_the_line(tmp_path: Path) -> None:
    ShardWriter(tmp_path, 0).append(records_of(batch(np.random.default_rng(4), 2), "t_img", 0))
    sidecar = sidecar_paths(tmp_path / "routing_rank000.jsonl")["counts"]
    sidecar.write_bytes(sidecar.read_bytes()[:100])
    with pytest.raises(ValueError,
                       match=r"routing_rank000.jsonl:1: its counts lie outside routing_rank000.counts.bin"):
        list(read_routing_records(tmp_path))
    sidecar.unlink()
    with pytest.raises(ValueError, match="missing or truncated sidecar"):
        list(read_routing_records(tmp_path))


def test_corrupt_references_and_unknown_versions_are_errors(tmp_path: Path) -> None:
    ShardWriter(tmp_path, 0).append(records_of(batch(np.random.default_rng(5), 1), "t_img", 0))
    shard = tmp_path / "routing_rank000.jsonl"
    line = json.loads(shard.read_text())
    for field, value in (("dtype", "<f8"), ("file", "../elsewhere.counts.bin"), ("file", "other.counts.bin"),
                         ("offset", -1)):
        bad = json.loads(json.dumps(line))
        bad["arrays"]["counts"][field] = value
        shard.write_text(json.dumps(bad) + "\n" + json.dumps(line) + "\n")
        with pytest.raises(ValueError, match="corrupt sidecar reference"):
            list(read_routing_records(tmp_path))
    shard.write_text(json.dumps(line | {"version": 99}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(ValueError, match="version 99 is newer"):
        list(read_routing_records(tmp_path))


def test_ranks_are_merged_and_a_rerun_record_wins(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    old, new, other = batch(rng, 1), batch(rng, 1), batch(rng, 1)
    ShardWriter(tmp_path, 0).append(records_of(old, "t_img", 0))
    ShardWriter(tmp_path, 1).append(records_of(other, "t_img", 1))
    ShardWriter(tmp_path, 0).append(records_of(new, "t_img", 0))
    records = merge_routing_records(tmp_path)
    assert [r["doc_id"] for r in records] == [0, 1]
    assert_matches(records[0], new, 0)
    assert_matches(records[1], other, 0)


def test_scope_names_match_the_recorder() -> None:
    from rd_eval.routing import recording
    from rd_eval.vocabulary import scopes

    assert recording.BASE_SCOPES == scopes.BASE_SCOPES == ("prompt_text", "prompt_image", "generated")
    assert scopes.SCOPE_MEMBERS == {name: tuple(recording.BASE_SCOPES[i] for i in members)
                                    for name, members in recording.SCOPE_INDICES.items()}
    assert scopes.SCOPE_MEMBERS == {"all": ("prompt_text", "prompt_image", "generated"),
                                    "prompt": ("prompt_text", "prompt_image"), "generated": ("generated",),
                                    "text": ("prompt_text", "generated"), "image": ("prompt_image",)}


def test_readers_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, rd_eval.reports.report, rd_eval.experts.identify; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_two_processes_appending_to_one_shard_keep_every_record_intact(tmp_path: Path) -> None:
    # Two runs with the same output path, checkpoint and setting share one default routing folder, hence one
    # shard per rank: their batches interleave. Every record must still point at its own arrays.
    import multiprocessing

    import shard_writers

    batches, size = 100, 8
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    writers = [context.Process(target=shard_writers.append_batches, args=(str(tmp_path), w, batches, size, start))
               for w in (0, 1)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
        assert process.exitcode == 0
    records = list(read_routing_records(tmp_path))
    assert len(records) == 2 * batches * size
    wrong = 0
    for record in records:
        writer = int(record["model"][-1])
        assert record["task"] == shard_writers.task_of(writer)
        batch, row = divmod(int(record["doc_id"]), size)
        expected = shard_writers.batch_routing(writer, batch, size)
        for s, scope in enumerate(BASE_SCOPES):
            same = (np.array_equal(record["counts"][scope], expected.counts[row, :, s, :])
                    and np.array_equal(record["prob_sums"][scope], expected.prob_sums[row, :, s, :]))
            wrong += not same
    assert wrong == 0, f"{wrong} of {len(records) * len(BASE_SCOPES)} record scopes read another writer's arrays"


def test_checkpoint_identity_is_the_absolute_folder_or_the_hub_id(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from rd_eval.routing.records import CheckpointRef, checkpoint_identity

    folder = tmp_path / "ckpts" / "step_1000"
    folder.mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "ckpts")
    monkeypatch.chdir(tmp_path)
    for spelling in ("ckpts/step_1000", "./ckpts/step_1000/", str(folder), "link/step_1000"):
        assert checkpoint_identity(spelling) == str(folder.resolve())
    assert checkpoint_identity("Qwen/Qwen3-VL-30B-A3B-Instruct") == "Qwen/Qwen3-VL-30B-A3B-Instruct"
    assert CheckpointRef.of("./ckpts/step_1000") == CheckpointRef("./ckpts/step_1000", str(folder.resolve()))


def test_records_name_their_checkpoint_and_a_shared_folder_keeps_each_checkpoints_records(tmp_path: Path) -> None:
    from rd_eval.routing.records import CheckpointRef

    rng = np.random.default_rng(7)
    first, second = batch(rng, 2), batch(rng, 2)
    for routing, pretrained in ((first, "acme/step_1000"), (second, "acme/step_2000")):
        ref = CheckpointRef.of(pretrained)
        ShardWriter(tmp_path, 0).append(
            [document_record(DocIdentity("t_img", row, "img"), routing, row, model="m", intervention_hash="none",
                             checkpoint=ref) for row in range(2)]
            + [error_record(DocIdentity("t_img", 9, "img"), model="m", intervention_hash="none", error="x",
                            checkpoint=ref)])
    records = merge_routing_records(tmp_path)  # the same documents of two checkpoints: both kept
    assert [(r["doc_id"], r["checkpoint"]) for r in records] == [
        (0, "acme/step_1000"), (0, "acme/step_2000"), (1, "acme/step_1000"), (1, "acme/step_2000"),
        (9, "acme/step_1000"), (9, "acme/step_2000")]
    assert all(r["pretrained"] == r["checkpoint"] for r in records)
    assert_matches(records[0], first, 0)
    assert_matches(records[3], second, 1)


def _owned(pretrained: str | None, checkpoint: str | None, *, model: str = "m", intervention: str = "none",
           doc_id: int = 0) -> dict:
    record = {"task": "t_img", "doc_id": doc_id, "model": model, "intervention": intervention}
    if checkpoint is not None:
        record |= {"pretrained": pretrained, "checkpoint": checkpoint}
    return record


def test_select_records_picks_a_runs_model_checkpoint_and_setting(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from rd_eval.routing.records import RecordOwner, select_records

    mine = _owned("/c/a", "/c/a")
    others = [_owned("/c/b", "/c/b"), _owned("/c/a", "/c/a", model="rd_other"),
              _owned("/c/a", "/c/a", intervention="h")]
    legacy = _owned(None, None, doc_id=1)  # written before records named their checkpoint
    owner = RecordOwner(model="m", pretrained="/c/a", intervention="none")
    assert select_records([mine, *others, legacy], owner, where="f") == [mine, legacy]
    # A run whose results name no rd_* model or no pretrained= checks what it knows.
    assert select_records([mine, others[1]], RecordOwner(None, "/c/a", "none"), where="f") == [mine, others[1]]
    with pytest.raises(ValueError, match=r"^f: routing records of 2 checkpoints \(/c/a, /c/b\) match"):
        select_records([mine, others[0]], RecordOwner("m", None, "none"), where="f")

    # One relative name run from two folders: two checkpoints; the run's folder, if it is here, picks its own.
    (tmp_path / "ckpt").mkdir()
    monkeypatch.chdir(tmp_path)
    here, there = _owned("./ckpt", str((tmp_path / "ckpt").resolve())), _owned("./ckpt", "/elsewhere/ckpt")
    assert select_records([here, there], RecordOwner("m", "./ckpt", "none"), where="f") == [here]
    monkeypatch.chdir("/")
    with pytest.raises(ValueError, match="give each checkpoint its own routing_dir"):
        select_records([here, there], RecordOwner("m", "./ckpt", "none"), where="f")


def test_adapter_records_name_the_checkpoint(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmms_eval.api.instance import Instance
    from rd_eval_adapters.qwen3_vl_moe import RDQwen3VLMoe

    monkeypatch.chdir(tiny_dir.parent)
    relative = f"./{tiny_dir.name}"
    model = RDQwen3VLMoe(pretrained=relative, batch_size=2, routing_dir=str(tmp_path / "routing"))
    gen = {"max_new_tokens": 2, "temperature": 0, "do_sample": False, "until": ["\n\n"]}

    def broken_image(doc: dict) -> list:
        if doc["i"] == 1:
            raise OSError("image unreadable")
        return []

    model.task_dict["ck_txt"] = {"test": [{"i": 0}, {"i": 1}]}
    requests = [Instance("generate_until", (f"Q{i}", dict(gen), broken_image, i, "ck_txt", "test"), 0,
                         {"task": "ck_txt", "doc_id": i, "repeats": 1}) for i in range(2)]
    model.generate_until(requests)
    records = merge_routing_records(tmp_path / "routing")
    assert [r["error"] is None for r in records] == [True, False]  # a document record and an error record
    assert {(r["pretrained"], r["checkpoint"]) for r in records} == {(relative, str(tiny_dir.resolve()))}


def test_a_writer_that_died_mid_line_beside_a_running_one_leaves_no_torn_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    first, second = batch(rng, 2), batch(rng, 2)
    writer = ShardWriter(tmp_path, 0)
    writer.append(records_of(first, "t_img", 0))
    with open(tmp_path / "routing_rank000.jsonl", "a") as fh:  # a concurrent run on this shard, killed mid-line
        fh.write('{"format":"rd-eval.routing-record","version":2,"task":"t_img","doc')
    writer.append(records_of(second, "t_img", 2))  # the running writer trims it before its next batch
    records = list(read_routing_records(tmp_path))
    assert [r["doc_id"] for r in records] == [0, 1, 2, 3]
    assert_matches(records[3], second, 1)


def test_a_file_system_without_locks_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    writer = ShardWriter(tmp_path, 0)
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(OSError, match=r"routing_rank000.jsonl: cannot lock it for appending \(No locks available\)"):
        writer.append(records_of(batch(np.random.default_rng(9), 1), "t_img", 0))
