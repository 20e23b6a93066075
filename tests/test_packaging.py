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
        "rd_eval/data/general_probe.txt",
        "rd_eval_adapters/manifests.py",
        "rd_eval_adapters/qwen3_vl_moe.py",
    ):
        assert path in names, path
    entry_points = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "rd-eval = rd_eval.cli:main" in entry_points
    assert "[lmms_eval.models]" in entry_points and "rd_eval_adapters.manifests:MANIFESTS" in entry_points


def test_entry_point_module_imports_no_torch() -> None:
    code = (
        "import sys; import rd_eval_adapters.manifests as m; "
        "assert [x.model_id for x in m.MANIFESTS] == ['rd_qwen3_vl_moe', 'rd_qwen3_5_moe']; "
        "assert 'torch' not in sys.modules, 'the lmms_eval.models entry point imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_lmms_eval_resolves_our_model_id() -> None:
    code = (
        "from lmms_eval.models import get_model; "
        "assert get_model('rd_qwen3_vl_moe').__name__ == 'RDQwen3VLMoe'; "
        "assert get_model('rd_qwen3_5_moe').__name__ == 'RDQwen3_5Moe'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
