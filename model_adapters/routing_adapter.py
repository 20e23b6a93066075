"""The one adapter layer that adds routing records and the intervention to any family's lmms-eval class.

`RoutingAdapterMixin` owns the recipe every family shares: its `__init__` pops the routing settings from
`model_args`, checks the checkpoint folder, picks the device, loads the base class (the base `__init__`, made to
work on a multi-process CPU run too, and, for an lmms-eval base class, to load by rd-eval's loading policy: the
model class from the checkpoint's model_type, no remote code and no hub kernels unless model_args opt in; see
`rd_eval_adapters.loading`) and sets up routing. A family adapter subclasses the mixin and its lmms-eval base
class (or ours, where lmms-eval has none) and states only what differs: its model id, default checkpoint and
model classes, and `_rd_prepare_batch(chunk) -> PreparedBatch` (the base class's own preprocessing where
lmms-eval factors one out), plus any quirk through the named hooks (`_rd_device_map`, `_rd_base_args`,
`_rd_after_load`, `_rd_decode`, `_rd_finish_text`). The mixin owns the generation loop so that it can:
- batch only requests of the same task (lmms-eval 0.7.3's Qwen3-VL loop applies the first request's
  `doc_to_visual` to the whole batch, which would give a text twin its image-form partner's image);
- check that an image-form prompt really carries image tokens;
- isolate a failing document (it is answered with a marked error response and the run goes on, so one
  rank never crashes while the others wait in a collective);
- record routing per document and stream it to this rank's shard after each batch.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from accelerate import Accelerator, DistributedType
from lmms_eval import utils as lmms_utils
from loguru import logger
from PIL import Image
from rd_eval_adapters.loading import choose_checkpoint, lmms_loading_policy
from tqdm import tqdm

from rd_eval.analysis.flips import noop_message
from rd_eval.models.checkpoints import LoadPolicy
from rd_eval.routing.records import CheckpointRef, DocIdentity, error_record, routing_folder
from rd_eval.routing.session import RoutingHooksNotFiredError, RoutingSession, routing_session
from rd_eval.routing.settings import RoutingSettings, pop_routing_settings
from rd_eval.routing.shards import ShardWriter
from rd_eval.routing.site_table import SiteTable
from rd_eval.routing.sites import find_router_sites, image_token_ids
from rd_eval.routing.validation import validate_intervention
from rd_eval.scoring.doc_errors import error_response, is_error_response
from rd_eval.vocabulary.task_names import form_of_task

# A request tuple of lmms-eval's simple generate_until: (context, gen_kwargs, doc_to_visual, doc_id, task, split)
Request = tuple[str, dict, Any, int, str, str]
# A batch answered: one response per request, and the routing records of its documents (none when not recording)
AnsweredBatch = tuple[list[str], list[dict[str, Any]]]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def positive_batch_size(value: Any) -> int:
    """model_args' batch_size as a positive integer."""
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"batch_size={value!r} invalid; give a positive integer") from None
    if size < 1:
        raise ValueError(f"batch_size={value!r} invalid; give a positive integer")
    return size


def require_checkpoint_folder(pretrained: str) -> None:
    """A `pretrained` that names a local path (absolute, `~` or `.`-relative) must be an existing folder."""
    local = Path(pretrained).expanduser()
    looks_local = local.is_absolute() or pretrained.startswith((".", "~"))
    if looks_local and not local.is_dir():
        raise ValueError(f"pretrained={pretrained!r}: no such checkpoint folder")


def _cli_options(argv: Sequence[str]) -> argparse.Namespace:
    """lmms-eval's options among `argv` (a process's arguments, without the program name). Never exits:
    a process that was not started by lmms-eval's CLI simply has none of them."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--output_path", default=None)
    parser.add_argument("--use_cache", "-c", default=None)
    try:
        known, _ = parser.parse_known_args(list(argv))
    except argparse.ArgumentError:
        return argparse.Namespace(output_path=None, use_cache=None)
    return known


def output_path_from_argv(argv: Sequence[str]) -> str | None:
    """lmms-eval's --output_path, when this process was started by its CLI (routing records go beside it)."""
    return _cli_options(argv).output_path


def response_cache_from_argv(argv: Sequence[str]) -> bool:
    """Whether lmms-eval's CLI runs with its response cache (--use_cache PATH)."""
    return _cli_options(argv).use_cache is not None


def pop_adapter_settings(kwargs: dict[str, Any], pretrained: str | None = None) -> RoutingSettings:
    """The routing settings of `model_args`, removed from `kwargs` before the base class sees them;
    `pretrained` (the checkpoint) maps an EasySteer intervention file's decoder layers."""
    return pop_routing_settings(kwargs, response_cache=response_cache_from_argv(sys.argv[1:]), pretrained=pretrained)


@dataclass(frozen=True)
class PreparedBatch:
    """One batch ready for `model.generate`: inputs still on the host, the generate kwargs, the stop strings."""

    inputs: Any  # a transformers BatchFeature (has input_ids; `.to(device)`)
    generate_kwargs: dict[str, Any]
    until: list[str] = field(default_factory=list)


def sampling_kwargs(gen_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """`generate`'s sampling kwargs as lmms-eval's Aria and InternVLHf set them: greedy unless the task's
    temperature is above 0, then that temperature and the task's top_p, if any."""
    temperature = float(gen_kwargs.get("temperature") or 0)
    if temperature <= 0:
        return {"do_sample": False}
    top_p = {} if gen_kwargs.get("top_p") is None else {"top_p": float(gen_kwargs["top_p"])}
    return {"do_sample": True, "temperature": temperature, **top_p}


class _OneProcessView:
    """What an lmms-eval constructor sees on a multi-process CPU run: a single process.

    lmms-eval's HF classes bind every rank to `cuda:<local rank>` and accept only GPU distributed types, so
    on `accelerate launch --cpu` they cannot load at all. Seen through this view they load on the device
    they were given; the adapter then restores the real accelerator, rank and world size. Data-parallel
    inference needs no DDP wrapper (nothing is trained), only per-rank documents, which lmms-eval shards.
    """

    num_processes = 1
    process_index = 0
    local_process_index = 0
    is_main_process = True
    is_local_main_process = True
    distributed_type = DistributedType.NO

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def unwrap_model(self, model: Any) -> Any:
        return model

    def wait_for_everyone(self) -> None:
        pass


@contextlib.contextmanager
def _lmms_classes_see_one_process(cls: type) -> Iterator[None]:
    """Within the block, the lmms-eval modules defining `cls`'s bases construct `_OneProcessView`s."""
    modules = {sys.modules[base.__module__] for base in cls.__mro__ if base.__module__.startswith("lmms_eval.")}
    patched = [m for m in modules if getattr(m, "Accelerator", None) is Accelerator]
    for module in patched:
        module.Accelerator = _OneProcessView
    try:
        yield
    finally:
        for module in patched:
            module.Accelerator = Accelerator


# Constructor arguments lmms-eval adds from its own options (simple_evaluate's batch_size, max_batch_size, device),
# never written in model_args.
_LMMS_OPTION_KEYS = ("batch_size", "max_batch_size", "device")


def _count_images(visuals: Any) -> int:
    if not visuals:
        return 0
    return sum(1 for v in visuals if isinstance(v, Image.Image) or (isinstance(v, str) and not v.endswith(".wav")))


class RoutingAdapterMixin:
    """Mixed in before an lmms-eval model class; see the module docstring."""

    rd_model_id: str = ""
    rd_default_pretrained: str = ""  # the checkpoint when model_args name none
    # An lmms-eval base class: checkpoint model_type -> the transformers model class it loads as (any other
    # model_type is refused, with `rd_model_type_hints`' words where given). Empty: the base class is ours
    # (HFImageTextModel), which checks the checkpoint, picks the device and applies the loading policy itself.
    rd_model_classes: Mapping[str, str] = MappingProxyType({})
    rd_model_type_hints: Mapping[str, str] = MappingProxyType({})

    # -- set-up ----------------------------------------------------------------------------------------
    def __init__(self, pretrained: str | None = None, **model_args: Any) -> None:
        pretrained = pretrained or self.rd_default_pretrained
        settings = pop_adapter_settings(model_args, pretrained)
        # What the loaded model was built from (routing keys aside): a later settings switch must name the same.
        self.rd_constructed_args = MappingProxyType({"pretrained": pretrained, **model_args})
        self._rd_load_base(super().__init__, **self._rd_base_args(pretrained, model_args))
        self._rd_after_load()
        self._rd_setup(settings, pretrained=pretrained)

    def rd_apply_routing(self, model_args: str) -> None:
        """Switch the loaded model to the routing settings of `model_args`, a full model_args string, exactly as a
        new instance constructed from it would set them up (intervention, record_routing, routing_dir, shard).

        Between evaluations only: a routing session lives within one `generate_until`, and a shard writer holds no
        open file between batches, so the previous setting leaves nothing behind. Everything but the routing keys
        must be what this instance was built from (keys lmms-eval adds from its own options, such as batch_size,
        may be absent): another checkpoint or dtype needs another model load, never a silent switch.
        """
        kwargs = dict(lmms_utils.simple_parse_args_string(model_args))
        pretrained = kwargs.pop("pretrained", None) or self.rd_default_pretrained
        settings = pop_adapter_settings(kwargs, pretrained)
        built = dict(self.rd_constructed_args)
        problems = [f"{key}={value!r} (built with {built[key]!r})" if key in built else f"{key}={value!r} (built "
                    "without it)" for key, value in sorted({"pretrained": pretrained, **kwargs}.items())
                    if key not in built or built[key] != value]
        problems += [f"no {key} (built with {built[key]!r})" for key in sorted(set(built) - set(kwargs))
                     if key not in ("pretrained", *_LMMS_OPTION_KEYS)]
        if problems:
            raise ValueError(f"model_args {model_args!r} cannot switch the loaded {self.rd_model_id} model: "
                             f"{'; '.join(problems)}; only the routing keys may change between settings (another "
                             "checkpoint or model option needs a model load of its own)")
        self._rd_setup(settings, pretrained=pretrained)

    def _rd_base_args(self, pretrained: str, model_args: dict[str, Any]) -> dict[str, Any]:
        """The base constructor's arguments (routing settings already popped). For an lmms-eval base class: the
        checkpoint folder checked and the device defaulted (lmms-eval's classes assume a GPU)."""
        if not self.rd_model_classes:
            return {"pretrained": pretrained, **model_args}
        require_checkpoint_folder(pretrained)
        device = model_args.pop("device", None) or default_device()
        device_map = model_args.pop("device_map", None) or self._rd_device_map(device)
        return {"pretrained": pretrained, "device": device, "device_map": device_map, **model_args}

    def _rd_device_map(self, device: str) -> str:
        """The device_map when model_args give none: a CPU run stays on the CPU (lmms-eval's classes move inputs
        to "cuda" whenever device_map is "auto")."""
        return device if device == "cpu" else "auto"

    def _rd_after_load(self) -> None:
        """The family's touch on the loaded base class, before routing is set up."""

    def _rd_load_base(self, base_init: Callable[..., None], **kwargs: Any) -> None:
        """Run the base class's constructor under the loading policy; on a multi-process CPU run, as one
        process, then set the ranks."""
        accelerator = Accelerator()
        with self._rd_loading(kwargs):
            if accelerator.num_processes > 1 and accelerator.distributed_type == DistributedType.MULTI_CPU:
                with _lmms_classes_see_one_process(type(self)):
                    base_init(**kwargs)
                self.accelerator = accelerator
                self._rank = accelerator.process_index
                self._world_size = accelerator.num_processes
            else:
                base_init(**kwargs)

    def _rd_loading(self, kwargs: dict[str, Any]) -> contextlib.AbstractContextManager[Any]:
        """For an lmms-eval base class: the policy `kwargs` ask for (`trust_remote_code`, `use_kernels`, taken
        out), the model class from the checkpoint's model_type, and the context that makes the base constructor
        load by them. Our own base class (HFImageTextModel) takes the policy's keys and applies it itself."""
        if not self.rd_model_classes:
            return contextlib.nullcontext()
        self.load_policy = LoadPolicy.pop_from(kwargs)
        choice = choose_checkpoint(str(kwargs["pretrained"]), self.rd_model_classes, model_id=self.rd_model_id,
                                   policy=self.load_policy, revision=kwargs.get("revision"),
                                   hints=self.rd_model_type_hints)
        return lmms_loading_policy(type(self), choice)

    def _rd_setup(self, settings: RoutingSettings, *, pretrained: str) -> None:
        self.rd_settings = settings
        self.rd_pretrained = pretrained
        self.rd_checkpoint = CheckpointRef.of(pretrained)  # every record names it (identity computed once)
        self.rd_sites = find_router_sites(self.model)
        self.rd_site_table = SiteTable.of_sites(self.rd_sites)  # named by every routing record
        if settings.intervention is not None:  # an impossible spec fails here, at model construction
            validate_intervention(settings.intervention, self.rd_sites, source=settings.source)
        self.rd_image_token_ids = image_token_ids(self.model)
        # Generation continues every row of a batch from its last position: padding must be on the left (some
        # checkpoints ship tokenizers that pad right, which makes batched answers depend on batch mates).
        for holder in (self, getattr(self, "processor", None)):
            tokenizer = getattr(holder, "tokenizer", None)
            if tokenizer is not None and hasattr(tokenizer, "padding_side"):
                tokenizer.padding_side = "left"
        self.rd_shard: ShardWriter | None = None
        if settings.record_routing:
            base = settings.routing_dir
            if base is None:
                output_path = output_path_from_argv(sys.argv[1:]) or "."
                base = routing_folder(output_path, pretrained, settings.intervention_hash)
            self.rd_routing_dir = Path(base)
            # fails now if the folder is unusable
            self.rd_shard = ShardWriter(self.rd_routing_dir, self.rank, sites=self.rd_site_table)
            self.rd_shard_rank = self.rank
        spec = settings.intervention
        policy: LoadPolicy = self.load_policy
        logger.info(
            f"[rd-eval] {self.rd_model_id}: {type(self.model).__name__} (model_type "
            f"{getattr(self.model.config, 'model_type', '?')}; {policy.describe()}); "
            f"{len(self.rd_sites)} MoE layers; intervention "
            f"{'none' if spec is None else f'{spec.mode} lambda={spec.strength} hash={settings.intervention_hash}'}"
            f"; routing records {'-> ' + str(self.rd_routing_dir) if self.rd_shard else 'off'}"
        )

    def _rd_prepare_batch(self, chunk: list[Request]) -> PreparedBatch:
        """Model inputs (on the host), generate kwargs and stop strings for one batch of one task."""
        raise NotImplementedError

    def _rd_decode(self, new_tokens: list[torch.Tensor]) -> list[str]:
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _rd_finish_text(self, text: str) -> str:
        """The family's last touch on an answer (after the stop strings), e.g. dropping a thinking block."""
        return text

    # -- generation ------------------------------------------------------------------------------------
    def generate_until(self, requests) -> list[str]:
        def sort_key(args: Request) -> tuple[int, str]:
            return -len(self.tokenizer.encode(args[0])), args[0]

        collator = lmms_utils.Collator(
            [req.args for req in requests], sort_key, group_fn=lambda a: {"rd_task": a[4], **a[1]}, grouping=True
        )
        progress = tqdm(total=len(requests), disable=(self.rank != 0), desc="Model Responding")
        responses: list[str] = []
        if self.rd_shard is not None and self.rd_shard_rank != self.rank:
            # lmms-eval injects the global rank after construction (launchers whose ranks all start as
            # single processes, e.g. torchrun without GPUs): each rank must write its own shard.
            self.rd_shard = ShardWriter(self.rd_routing_dir, self.rank, sites=self.rd_site_table)
            self.rd_shard_rank = self.rank
        with routing_session(self.model, record=self.rd_shard is not None,
                             intervention=self.rd_settings.intervention, sites=self.rd_sites) as session:
            for chunk in collator.get_batched(n=self.batch_size, batch_fn=None):
                chunk_responses, records = self._rd_run_chunk(list(chunk), session)
                if self.rd_shard is not None:
                    self.rd_shard.append(records)
                for args, response in zip(chunk, chunk_responses, strict=True):
                    if not is_error_response(response):  # a failed document is retried on the next run
                        self.cache_hook.add_partial("generate_until", (args[0], args[1]), response)
                responses.extend(chunk_responses)
                progress.update(len(chunk))
            if requests:
                self._rd_log_effect(session.effect_totals)
        progress.close()
        return collator.get_original(responses)

    def _rd_log_effect(self, totals: Any) -> None:
        """After the last batch: the intervention's flip rate over the run (rank's share), or a warning that it
        changed no expert selection anywhere (totals [site, (tokens, flipped, newly selected)], summed per batch)."""
        spec = self.rd_settings.intervention
        if spec is None:
            return
        what = (f"[rd-eval] {self.rd_model_id}: intervention {spec.mode} lambda={spec.strength} "
                f"hash={self.rd_settings.intervention_hash}")
        message = noop_message(totals)
        if message is not None:
            logger.warning(f"{what}: {message}")
            return
        tokens, flipped = totals[:, 0], totals[:, 1]
        steered = tokens > 0
        rate = float((flipped[steered] / tokens[steered]).mean())
        logger.info(f"{what}: flip rate {100 * rate:.1f}% (mean over {int(steered.sum())} steered layers), "
                    f"{int(totals[:, 2].sum())} set experts newly selected")

    def _rd_identity(self, args: Request) -> DocIdentity:
        return DocIdentity(task=str(args[4]), doc_id=int(args[3]), form=form_of_task(str(args[4])))

    def _rd_failed(self, args: Request, reason: str) -> AnsweredBatch:
        logger.warning(f"[rd-eval] {args[4]} doc {args[3]}: {reason}")
        record = error_record(self._rd_identity(args), model=self.rd_model_id, checkpoint=self.rd_checkpoint,
                              intervention_hash=self.rd_settings.intervention_hash, error=reason)
        return [error_response(reason)], [record]

    def _rd_run_chunk(self, chunk: list[Request], session: RoutingSession) -> AnsweredBatch:
        """Run one batch; on any failure, rerun its documents one by one so only the culprit fails.

        Router hooks that did not fire are no document's failure: the model as loaded cannot be routed, so
        that error stops the run instead of being answered document by document."""
        try:
            return self._rd_generate_batch(chunk, session)
        except RoutingHooksNotFiredError:
            raise
        except _ImageCheckError as exc:
            if len(chunk) == 1:
                return self._rd_failed(chunk[0], str(exc))
        except Exception as exc:  # one document's failure must never end the run (or hang other ranks)
            if len(chunk) == 1:
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                return self._rd_failed(chunk[0], detail)
        responses: list[str] = []
        records: list[dict[str, Any]] = []
        for args in chunk:
            one_response, one_records = self._rd_run_chunk([args], session)
            responses.extend(one_response)
            records.extend(one_records)
        return responses, records

    def _rd_generate_batch(self, chunk: list[Request], session: RoutingSession) -> AnsweredBatch:
        visuals_seen: list[Any] = []
        real_doc_to_visual = chunk[0][2]

        def capture_visuals(doc: Any) -> Any:
            visuals = real_doc_to_visual(doc)
            visuals_seen.append(visuals)
            return visuals

        # All requests of a chunk share one task (see generate_until), hence one doc_to_visual.
        wrapped = [(a[0], a[1], capture_visuals, a[3], a[4], a[5]) for a in chunk]
        batch = self._rd_prepare_batch(wrapped)
        self._rd_check_images(chunk, batch.inputs["input_ids"], visuals_seen)
        inputs = batch.inputs.to(self.device)
        generate_kwargs = batch.generate_kwargs
        eos = generate_kwargs.get("eos_token_id")
        session.begin(len(chunk), stop_token_ids=None if eos is None else list(eos if isinstance(eos, list) else [eos]))
        with torch.inference_mode():
            output_ids = self.model.generate(**inputs, **generate_kwargs)
        records = session.finish_batch_records([self._rd_identity(args) for args in chunk], model=self.rd_model_id,
                                               checkpoint=self.rd_checkpoint,
                                               intervention_hash=self.rd_settings.intervention_hash)
        new_tokens = [out[len(inp):] for inp, out in zip(inputs["input_ids"], output_ids, strict=True)]
        responses = []
        for text in self._rd_decode(new_tokens):
            for stop in batch.until:
                if stop:
                    text = text.split(stop)[0]
            responses.append(self._rd_finish_text(text))
        return responses, records

    def _rd_check_images(self, chunk: list[Request], input_ids: torch.Tensor, visuals: list[Any]) -> None:
        """An image-form request whose prompt has no image tokens must not be answered as if seen."""
        if not self.rd_image_token_ids:
            return
        has_image_tokens = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        for token_id in self.rd_image_token_ids:
            has_image_tokens |= (input_ids == token_id).any(dim=1).cpu()
        for row in range(len(chunk)):
            expected = _count_images(visuals[row] if row < len(visuals) else None)
            if expected and not bool(has_image_tokens[row]):
                raise _ImageCheckError(
                    f"image check failed: {expected} image(s) given but the prompt reaching the model "
                    "has no image tokens"
                )


class _ImageCheckError(RuntimeError):
    pass
