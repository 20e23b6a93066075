"""`python -m lmms_eval` with the model's generate phase timed: the benchmark's driver for one lmms-eval run.

Usage: python perf/lmms_eval_timed.py TIMING.json <the arguments of python -m lmms_eval>

It wraps `generate_until` of lmms-eval's stock Qwen3-VL class and of rd-eval's adapter mixin with a wall-clock
timer (wall and process CPU time), and `generate` of the Hugging Face model with a token counter, then runs
lmms-eval's own CLI entry point unchanged. The wrappers cost a few clock reads per call, the same for both classes.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

TIMINGS: dict[str, Any] = {"generate_until_seconds": 0.0, "generate_until_cpu_seconds": 0.0, "generate_calls": 0,
                           "generated_tokens": 0, "prompt_tokens": 0}


def _timed(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return method(self, *args, **kwargs)
        finally:
            TIMINGS["generate_until_seconds"] += time.perf_counter() - start
            TIMINGS["generate_until_cpu_seconds"] += time.process_time() - cpu  # all threads of the process

    return wrapper


def _counted(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = method(self, *args, **kwargs)
        input_ids = kwargs.get("input_ids")
        if input_ids is not None and hasattr(out, "shape"):
            TIMINGS["generate_calls"] += 1
            TIMINGS["prompt_tokens"] += int(input_ids.numel())
            TIMINGS["generated_tokens"] += int(out.shape[0] * (out.shape[1] - input_ids.shape[1]))
        return out

    return wrapper


def install_timers() -> None:
    from lmms_eval.models.simple.qwen3_vl import Qwen3_VL
    from rd_eval_adapters.routing_adapter import RoutingAdapterMixin
    from transformers.generation.utils import GenerationMixin

    Qwen3_VL.generate_until = _timed(Qwen3_VL.generate_until)
    RoutingAdapterMixin.generate_until = _timed(RoutingAdapterMixin.generate_until)
    GenerationMixin.generate = _counted(GenerationMixin.generate)


def main() -> None:
    out = Path(sys.argv[1])
    sys.argv = ["lmms_eval", *sys.argv[2:]]
    install_timers()
    from lmms_eval.cli.dispatch import main as lmms_eval_main

    try:
        lmms_eval_main()
    finally:
        out.write_text(json.dumps(TIMINGS, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
