"""The CI gate used for real (issue 16 item 5) on the shipped model organism, through `python -m lmms_eval`:

- the demo's plain setting on the baseline's slice passes `rd-eval check` against results/baselines/;
- a pipeline with its scoring and its pairing deliberately broken fails it, as a checkpoint regression would;
- the organism's held-out gap and soft-intervention gain on the slice keep their signs (gap CI above 0;
  the gain's CI on the card's planted experts above 0: the baseline's slice is the whole held-out split).
Skipped where the package holds no trained organism.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from lmms_cli import run, tasks_path

from rd_eval.analysis.gaps import compare_runs
from rd_eval.commands.demo import DEMO_N_BOOT, ORGANISM_BATCH_SIZE, shipped_organism_dir
from rd_eval.lmms.runs import find_runs, load_paired_samples
from rd_eval.organism.assets import MAX_PIXELS, MIN_PIXELS
from rd_eval.reports.report import build_report

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "results" / "baselines" / "rd_qwen3_vl_moe__organism__model.json"
ORGANISM = shipped_organism_dir()
pytestmark = pytest.mark.skipif(not (ORGANISM / "model.safetensors").is_file(),
                                reason="no trained organism in the package (rd_eval/organism/model/)")

BROKEN_UTILS = '''"""rd_organism with two deliberate bugs: a scorer that reads only the reply's last character
(image form), and a text twin that states another document's problem (pairing)."""

import json
from pathlib import Path

from rd_eval.organism.benchmark import organism_task

DATA_FILE = Path(__file__).with_name("rd_organism.jsonl")
globals().update(organism_task(DATA_FILE).exports())
_DOCS = [json.loads(line) for line in DATA_FILE.read_text().splitlines()]
_POSITION = {doc["pair_id"]: i for i, doc in enumerate(_DOCS)}
_scored_img, _asked_txt = process_results_img, doc_to_text_txt


def process_results_img(doc, results):
    return _scored_img(doc, [reply[-1:] for reply in results])


def doc_to_text_txt(doc, lmms_eval_specific_kwargs=None):
    # two on, not one: neighbours are often the same numbers swapped (the same sum)
    return _asked_txt(_DOCS[(_POSITION[doc["pair_id"]] + 2) % len(_DOCS)], lmms_eval_specific_kwargs)
'''


def slice_size() -> int:
    baseline = json.loads(BASELINE.read_text())
    return baseline["tasks"]["rd_organism_img"]["n"]


def plain_run(out: Path, include_path: str, tmp_path: Path, model_args: str = "") -> Path:
    """The demo's plain setting on the baseline's slice (its tasks, batch size and seed), as lmms-eval's CLI."""
    args = f"pretrained={ORGANISM},min_pixels={MIN_PIXELS},max_pixels={MAX_PIXELS}{model_args}"
    command = [sys.executable, "-m", "lmms_eval", "--model", "rd_qwen3_vl_moe", "--model_args", args, "--tasks",
               "rd_organism", "--include_path", include_path, "--output_path", str(out), "--log_samples",
               "--limit", str(slice_size()), "--batch_size", str(ORGANISM_BATCH_SIZE), "--seed", "0"]
    result = run(command, tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return out


def check(run_dir: Path, tmp_path: Path) -> tuple[int, str]:
    result = run([sys.executable, "-m", "rd_eval", "check", str(run_dir), "--baseline", str(BASELINE)], tmp_path)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("gate")
    return plain_run(tmp / "plain", tasks_path(), tmp)


def test_the_plain_setting_passes_the_gate_and_shows_the_gap(plain: Path, tmp_path: Path) -> None:
    code, output = check(plain, tmp_path)
    assert code == 0, output
    (row,) = compare_runs(load_paired_samples(find_runs(plain)[0]), None, n_boot=2000)["rows"]
    assert row["base"]["n_pairs"] == slice_size()
    assert row["base"]["gap"]["ci_low"] > 0, row["base"]["gap"]  # it does not think from the image


def test_broken_scoring_and_pairing_fail_the_gate(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks" / "rd_organism"
    shutil.copytree(Path(tasks_path()) / "rd_organism", tasks)
    (tasks / "utils.py").write_text(BROKEN_UTILS)
    broken = plain_run(tmp_path / "broken", str(tasks.parent), tmp_path)
    code, output = check(broken, tmp_path)
    assert code == 1, output
    assert "FAIL:" in output, output
    regressions = output.split("FAIL:", 1)[1].split("\nnote:", 1)[0]  # the regressions table
    assert "rd_organism_img" in regressions and "rd_organism_txt" in regressions, output


def test_the_soft_intervention_s_gain_keeps_its_sign(plain: Path, tmp_path: Path) -> None:
    """The soft intervention (λ 1, band 0.25-0.75) on the experts the organism's distraction was planted on (its
    card's domain_experts, which rd-eval's ΔΦ identification recovers: the demo's own set) narrows the gap."""
    from rd_eval.organism.figures import expert_set
    from rd_eval.organism.shipped import organism_card
    from rd_eval.routing.spec import InterventionSpec

    spec = InterventionSpec(experts=expert_set(organism_card()["domain_experts"]), mode="soft", strength=1.0)
    spec_path = spec.save(tmp_path / "soft.json")
    soft = plain_run(tmp_path / "soft", tasks_path(), tmp_path,
                     f",intervention={spec_path},intervention_hash={spec.content_hash()}")
    row = compare_runs(load_paired_samples(find_runs(plain)[0]), load_paired_samples(find_runs(soft)[0]),
                       n_boot=DEMO_N_BOOT, seed=0)["rows"][0]
    assert row["effect"]["gain"]["ci_low"] > 0, row["effect"]["gain"]
    # `rd-eval report` of the two runs with the demo's resamples and seed gives the demo table's figures (compare_runs
    # above), so the demo's table and its report.md never disagree. (With 2,000 resamples the base gap's CI differs.)
    report = build_report([find_runs(plain)[0].results_path, find_runs(soft)[0].results_path],
                          n_boot=DEMO_N_BOOT, seed=0)
    (setting,) = [s for s in report["settings"] if s["gaps"]["rows"][0].get("effect")]
    reported = setting["gaps"]["rows"][0]

    def cis(r: dict) -> list[tuple[float, float, float]]:
        stats = [r["base"]["gap"], r["intervened"]["gap"], r["effect"]["gain"], r["effect"]["text_cost"]]
        return [(stat["diff"], stat["ci_low"], stat["ci_high"]) for stat in stats]

    assert cis(reported) == cis(row)
