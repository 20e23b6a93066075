"""`rd-eval sweep CONFIG.yaml [--out DIR]`: the whole protocol of one model on one model load (docs/sweep.md).

Exit codes: 0 done (the paths written are listed), 1 a setting failed (one line naming its log and folder; rerun
to resume), 2 bad input (the config, the sweep folder, the tasks: one line, nothing run).
"""

from __future__ import annotations

import argparse
from typing import Any

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sweep", help="run a settings grid on one model load: experts, every setting through "
                                     "lmms-eval, report and leaderboard (resumable)")
    p.add_argument("config", metavar="CONFIG", help="the sweep YAML (docs/sweep.md; e.g. examples/demo_sweep.yaml)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="the sweep folder (default: the YAML's output_path); rerun with the same DIR to resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per setting still)")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from rd_eval.fileio.outpaths import check_output_dir, require_input
    from rd_eval.sweep.config import load_sweep_config
    from rd_eval.sweep.run import run_sweep

    config_path = require_input(args.config, "CONFIG")
    out = check_output_dir(args.out, "--out") if args.out is not None else None
    config = load_sweep_config(config_path, out=out)
    # lmms-eval's log stays as importing lmms_eval.models sets it (WARNING on the terminal); each setting's whole
    # log goes to OUT/logs/<key>.log.
    result = run_sweep(config, progress=not args.no_progress, say=lambda line: print(line, flush=True))
    from accelerate import PartialState

    if PartialState().is_main_process:
        ran = sum(outcome.ran for outcome in result.outcomes)
        print(f"Sweep done: {len(result.outcomes)} settings ({ran} run, {len(result.outcomes) - ran} complete "
              f"before), model loaded once in {result.load_seconds:.1f} s")
        print("Written:")
        for name, path in result.paths.items():
            print(f"  {name:<22} {path}")
    _end_process_group()
    return 0


def _end_process_group() -> None:
    """Under `accelerate launch`, close the ranks' process group before the interpreter exits: left to exit-time
    teardown, a rank sometimes aborted ("terminate called without an active exception") after a finished sweep."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def bad_input_errors() -> tuple[type[Exception], ...]:
    """The sweep's bad-input errors (exit 2), for the CLI's dispatcher."""
    from rd_eval.sweep.config import SweepConfigError
    from rd_eval.sweep.execute import SweepTaskError
    from rd_eval.sweep.state import SweepStateError

    return SweepConfigError, SweepStateError, SweepTaskError


def failure_errors() -> tuple[type[Exception], ...]:
    """The sweep's run-time failures (exit 1)."""
    from rd_eval.sweep.execute import SweepRunError

    return (SweepRunError,)
