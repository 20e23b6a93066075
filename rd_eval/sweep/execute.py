"""A sweep's lmms-eval side: the model built once through lmms-eval's registry, then each setting evaluated by
lmms-eval's own evaluator on that instance and written by lmms-eval's own `EvaluationTracker`, so a setting's
folder holds what `python -m lmms_eval ... --log_samples` writes (lmms_eval/__main__.py, `cli_evaluate_single`).

Every option goes through lmms-eval's own argument parser (the command line of
:func:`rd_eval.lmms.runner.lmms_eval_command`), so defaults, types and the results' `resolved_cli_args` are the
CLI's. Two fields lmms-eval derives from the model it is given are put back to what the CLI records: the
results' `config.model` and the tracker's `model_source` (for an instance lmms-eval would write the checkpoint's
`_name_or_path` and the object's repr, where the CLI writes the `--model` id that rd-eval's catalogue reads).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rd_eval.lmms.runner import lmms_eval_command
from rd_eval.lmms.runs import RunRecord, read_run

# The CLI's process-group timeout (cli_evaluate): ranks wait on each other through whole evaluations.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(seconds=60000)


class SweepRunError(RuntimeError):
    """A setting failed at run time (the message names its log and its folder): exit code 1."""


class SweepTaskError(ValueError):
    """The config names tasks lmms-eval does not know: bad input, exit code 2."""


@dataclass(frozen=True)
class LmmsInvocation:
    """One setting's lmms-eval options: what a separate `python -m lmms_eval` run of it would be given."""

    model_id: str
    model_args: str
    tasks: tuple[str, ...]
    output_path: Path
    include_path: Path
    batch_size: int = 1
    seed: int | None = None
    limit: int | float | None = None
    gen_kwargs: str | None = None

    def command(self) -> list[str]:
        """The equivalent command line, `python -m lmms_eval ...`."""
        return lmms_eval_command(self.model_id, self.model_args, self.tasks, self.output_path,
                                 include_path=self.include_path, batch_size=self.batch_size, seed=self.seed,
                                 limit=self.limit, gen_kwargs=self.gen_kwargs)  # type: ignore[arg-type]

    def namespace(self) -> argparse.Namespace:
        """lmms-eval's parsed options for this run, from its own parser (its defaults, types and checks)."""
        return cli_namespace(self.command()[3:])  # without `python -m lmms_eval`


@contextlib.contextmanager
def _argv(argv: Sequence[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = ["lmms_eval", *argv]
    try:
        yield
    finally:
        sys.argv = saved


def cli_namespace(argv: Sequence[str]) -> argparse.Namespace:
    """lmms-eval's CLI options as `python -m lmms_eval ARGV` parses them: its parser reads only `sys.argv`, so it
    is shown `argv` for the call and the process's own arguments are put back."""
    from lmms_eval.__main__ import parse_eval_args

    with _argv(argv):
        _, args = parse_eval_args()
    return args


def start_processes() -> None:
    """What lmms-eval's CLI does before any model: one Accelerator, which joins the ranks of a launched run."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        Accelerator(kwargs_handlers=[InitProcessGroupKwargs(timeout=PROCESS_GROUP_TIMEOUT)])


def load_model(invocation: LmmsInvocation) -> Any:
    """The lmms-eval model instance of `invocation`, built as `simple_evaluate` builds it from `--model` and
    `--model_args` (lmms-eval's registry, with batch size, max batch size and device from its options)."""
    from lmms_eval import models

    args = invocation.namespace()
    model_class = models.get_model(args.model, args.force_simple)
    return model_class.create_from_arg_string(
        args.model_args, {"batch_size": args.batch_size, "max_batch_size": args.max_batch_size, "device": args.device}
    )


def task_manager(invocation: LmmsInvocation) -> Any:
    """lmms-eval's task index for the invocation's include path (one per sweep: building it reads every task
    YAML lmms-eval ships)."""
    from lmms_eval.tasks import TaskManager

    args = invocation.namespace()
    return TaskManager(args.verbosity, include_path=args.include_path, model_name=args.model)


def match_tasks(manager: Any, tasks: Sequence[str], source: str) -> list[Any]:
    """The task names lmms-eval resolves `tasks` to; unknown ones are one error naming them and `source`."""
    names = manager.match_tasks(list(tasks))
    missing = [task for task in tasks if task not in names and "*" not in task]
    if missing:
        raise SweepTaskError(f"{source}: tasks {', '.join(missing)} unknown to lmms-eval (with rd-eval's tasks "
                             "folder on its include path); list them with `python -m lmms_eval --tasks list`")
    return names


@contextlib.contextmanager
def _modules_kept(lm: Any) -> Iterator[None]:
    """lmms-eval's `evaluate` ends with `lm.clean()`, which deletes the instance's torch modules (to free memory for
    an LLM judge); the sweep's next setting needs the same loaded model, so they are put back afterwards."""
    import torch

    modules = {name: value for name, value in vars(lm).items() if isinstance(value, torch.nn.Module)}
    try:
        yield
    finally:
        for name, module in modules.items():
            setattr(lm, name, module)


def _simple_evaluate(lm: Any, args: argparse.Namespace, task_names: list[Any], tracker: Any, manager: Any,
                     datetime_str: str, distributed: bool) -> dict[str, Any] | None:
    """`evaluator.simple_evaluate` called with the CLI's arguments (cli_evaluate_single), the instance as model."""
    from lmms_eval import evaluator
    from lmms_eval.evaluator import request_caching_arg_to_dict

    return evaluator.simple_evaluate(
        model=lm, model_args=args.model_args, tasks=task_names, num_fewshot=args.num_fewshot,
        batch_size=args.batch_size, max_batch_size=args.max_batch_size, device=args.device, use_cache=args.use_cache,
        limit=args.limit, offset=args.offset, check_integrity=args.check_integrity, write_out=args.write_out,
        log_samples=args.log_samples, evaluation_tracker=tracker, system_instruction=args.system_instruction,
        apply_chat_template=args.apply_chat_template, fewshot_as_multiturn=args.fewshot_as_multiturn,
        gen_kwargs=args.gen_kwargs, task_manager=manager, verbosity=args.verbosity, predict_only=args.predict_only,
        random_seed=args.seed[0], numpy_random_seed=args.seed[1], torch_random_seed=args.seed[2],
        fewshot_random_seed=args.seed[3], cli_args=args, datetime_str=datetime_str,
        distributed_executor_backend="torchrun" if distributed else "accelerate", force_simple=args.force_simple,
        launcher_args=args.launcher_args, repeats=args.repeats, baseline=args.baseline, max_tokens=args.max_tokens,
        process_docs_parallel=getattr(args, "process_docs_parallel", 4),
        **request_caching_arg_to_dict(cache_requests=args.cache_requests),
    )


def evaluate(lm: Any, invocation: LmmsInvocation, manager: Any) -> RunRecord | None:
    """Evaluate `invocation` on the loaded instance `lm` and write its results and samples as the CLI does.

    Returns the run written (rank 0), or None on the other ranks of a launched run, which write only their routing
    shards. Raises SweepRunError when lmms-eval wrote no results file (its tracker logs a failed write and goes on).
    """
    import torch
    from lmms_eval import utils
    from lmms_eval.loggers import EvaluationTracker

    args = invocation.namespace()
    args.hf_hub_log_args += f",output_path={args.output_path}"  # as the CLI does, before it records its options
    tracker = EvaluationTracker(**utils.simple_parse_args_string(args.hf_hub_log_args))
    task_names = match_tasks(manager, args.tasks.split(","), f"--tasks {args.tasks}")
    datetime_str = utils.get_datetime_str(timezone=args.timezone)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    with _modules_kept(lm):
        results = _simple_evaluate(lm, args, task_names, tracker, manager, datetime_str, distributed)
    if results is None:
        return None
    samples = results.pop("samples")
    results["config"]["model"] = args.model
    tracker.general_config_tracker.model_source = args.model
    tracker.save_results_aggregated(results=results, samples=samples, datetime_str=datetime_str)
    for task_name in results["configs"]:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    folder = Path(args.output_path) / tracker.general_config_tracker.model_name_sanitized
    results_path = folder / f"{datetime_str.replace(':', '-')}_results.json"  # the tracker's file name
    if not results_path.is_file():
        raise SweepRunError(f"lmms-eval wrote no results file {results_path}")
    run = read_run(results_path)
    unsaved = sorted(set(results["configs"]) - set(run.samples))
    if unsaved:
        raise SweepRunError(f"lmms-eval wrote no samples for {', '.join(unsaved)} beside {results_path}")
    return run
