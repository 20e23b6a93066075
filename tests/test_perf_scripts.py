"""The benchmark scripts' pieces run and produce their keys on tiny sizes (no timing is asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from perf import analysis_scale, hook_overhead, run  # noqa: E402
from perf.common import QWEN3_VL_30B_CONFIG  # noqa: E402

SMALL_TEXT = {"hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 16, "num_experts": 16, "num_experts_per_tok": 4}


def test_shipped_config_is_the_real_qwen3_vl_30b_a3b() -> None:
    text = json.loads(QWEN3_VL_30B_CONFIG.read_text())["text_config"]
    assert (text["num_hidden_layers"], text["num_experts"], text["num_experts_per_tok"], text["hidden_size"],
            text["moe_intermediate_size"]) == (48, 128, 8, 2048, 768)
    assert hook_overhead.load_config(3).text_config.num_hidden_layers == 3


def test_hook_overhead_pieces_produce_their_keys() -> None:
    torch.manual_seed(0)
    result = hook_overhead.measure(layers=4, batch=2, prefill=32, decode_steps=3, repeats=1, device="cpu",
                                   dtype=torch.float32, log=lambda line: None, text_overrides=SMALL_TEXT)
    assert {"record_overhead", "intervene_overhead", "overheads", "median_seconds"} <= set(result)
    assert set(result["overheads"]) == {"wall", "cpu"}
    assert result["settings"]["band_layers"] == [1, 2]
    assert all(len(result["samples"][v]) == 1 for v in hook_overhead.VARIANTS)
    assert "| record |" in hook_overhead.table(result)


def test_analysis_pieces_produce_their_keys(tmp_path: Path) -> None:
    runs = analysis_scale.make_runs(tmp_path, 12)
    out = tmp_path / "analysis.json"
    analysis_scale.analyse(runs, out)
    child = json.loads(out.read_text())
    assert child["routing_pairs"] == 12  # 6 + 6 pairs over the plain and the soft setting
    assert child["expert_layers"] == 24 and child["peak_rss_gib"] > 0
    assert set(child["phases_seconds"]) == {"imports", "build_report", "render_md_json", "expert_identification"}


def test_run_summarises_the_five_keys_and_their_targets() -> None:
    details = {
        "hook": {"record_overhead": 0.01, "intervene_overhead": 0.05, "settings": {"device": "cpu"}},
        "e2e": {"e2e_throughput_ratio": 0.97},
        "analysis": {"analysis_seconds_10k": 4.2, "analysis_peak_gib_10k": 1.5},
    }
    summary = run.summarise(details)
    assert {k: summary[k] for k in run.TARGETS} == {
        "record_overhead": 0.01, "intervene_overhead": 0.05, "e2e_throughput_ratio": 0.97,
        "analysis_seconds_10k": 4.2, "analysis_peak_gib_10k": 1.5}
    assert summary["met"] == {"record_overhead": True, "intervene_overhead": False, "e2e_throughput_ratio": True,
                              "analysis_seconds_10k": True, "analysis_peak_gib_10k": True}
    assert run.summarise({})["met"]["e2e_throughput_ratio"] is None
    assert "| intervene_overhead | 0.05 | <= 0.03 | NO |" in run.table(summary)


@pytest.mark.parametrize("script", sorted(run.SCRIPTS.values()))
def test_scripts_have_a_help(script: str) -> None:
    import subprocess

    result = subprocess.run([sys.executable, str(REPO / "perf" / script), "--help"], capture_output=True,
                            text=True, check=False, timeout=120)
    assert result.returncode == 0 and "--json" in result.stdout
