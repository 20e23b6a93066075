"""The wheel carries the task YAMLs (so `--include_path "$(rd-eval tasks-path)"` works from any install),
the embedded probe data, the console script and the lmms-eval entry point; that entry point stays light."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contents(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = zipfile.ZipFile(next(tmp_path.glob("rd_eval-*.whl")))
    names = set(wheel.namelist())
    for path in (
        "rd_eval_tasks/rd_demo/rd_demo.yaml",
        "rd_eval_tasks/rd_demo/rd_demo_img.yaml",
        "rd_eval_tasks/rd_demo/rd_demo_txt.yaml",
        "rd_eval_tasks/rd_demo/_default_template_rd_demo",
        "rd_eval_tasks/rd_demo/rd_demo.jsonl",
        "rd_eval_tasks/rd_demo/utils.py",
        "rd_eval/experts/general_probe.txt",
        "rd_eval_adapters/manifests.py",
        "rd_eval_adapters/qwen3_vl_moe.py",
    ):
        assert path in names, path
    entry_points = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "rd-eval = rd_eval.commands.main:main" in entry_points
    assert "[lmms_eval.models]" in entry_points and "rd_eval_adapters.manifests:MANIFESTS" in entry_points


def test_entry_point_module_imports_no_torch() -> None:
    code = (
        "import sys; import rd_eval_adapters.manifests as m; "
        "assert sorted(x.model_id for x in m.MANIFESTS) == sorted(['rd_qwen3_vl_moe', 'rd_qwen3_5_moe', "
        "'rd_glm4v_moe', 'rd_llama4', 'rd_aria', 'rd_internvl_moe', 'rd_ernie4_5_vl_moe', 'rd_kimi_vl']); "
        "assert 'torch' not in sys.modules, 'the lmms_eval.models entry point imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_lmms_eval_resolves_our_model_ids() -> None:
    code = (
        "import sys; from lmms_eval.models import get_model; from rd_eval_adapters.manifests import ADAPTER_CLASSES; "
        "[get_model(i).__name__ == p.rsplit('.', 1)[1] or sys.exit(i) for i, p in ADAPTER_CLASSES.items()]; "
        "assert get_model('rd_aria').rd_model_id == 'rd_aria'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
