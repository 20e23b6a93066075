"""The one adapter layer that adds routing records and the intervention to any family's lmms-eval class.

A family adapter subclasses lmms-eval's own model class (or ours, where lmms-eval has none) together with
`RoutingAdapterMixin`, pops the routing settings before the base `__init__`, and provides
`_rd_prepare_batch(chunk)`, usually the base class's own preprocessing. The mixin owns the generation
loop so that it can:
- batch only requests of the same task (lmms-eval 0.7.3's Qwen3-VL loop applies the first request's
  `doc_to_visual` to the whole batch, which would give a text twin its image-form partner's image);
- check that an image-form prompt really carries image tokens;
- isolate a failing document (it is answered with a marked error response and the run goes on, so one
  rank never crashes while the others wait in a collective);
- record routing per document and stream it to this rank's shard after each batch.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lmms_eval import utils as lmms_utils
from loguru import logger
from PIL import Image
from tqdm import tqdm

from rd_eval.doc_errors import error_response, is_error_response
from rd_eval.routing.recording import BatchRouting
from rd_eval.routing.records import (
    DocIdentity,
    ShardWriter,
    document_record,
    error_record,
    form_of_task,
    routing_folder,
)
from rd_eval.routing.session import routing_session
from rd_eval.routing.settings import RoutingSettings
from rd_eval.routing.sites import find_router_sites

# A request tuple of lmms-eval's simple generate_until: (context, gen_kwargs, doc_to_visual, doc_id, task, split)
Request = tuple[str, dict, Any, int, str, str]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def output_path_from_argv(argv: Sequence[str]) -> str | None:
    """lmms-eval's --output_path, when this process was started by its CLI (routing records go beside it)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--output_path", default=None)
    known, _ = parser.parse_known_args(list(argv))
    return known.output_path


def _count_images(visuals: Any) -> int:
    if not visuals:
        return 0
    return sum(1 for v in visuals if isinstance(v, Image.Image) or (isinstance(v, str) and not v.endswith(".wav")))


class RoutingAdapterMixin:
    """Mixed in before an lmms-eval model class; see the module docstring."""

    rd_model_id: str = ""

    # -- set-up ----------------------------------------------------------------------------------------
    def _rd_setup(self, settings: RoutingSettings, *, pretrained: str) -> None:
        self.rd_settings = settings
        self.rd_pretrained = pretrained
        self.rd_sites = find_router_sites(self.model)
        self.rd_image_token_ids = tuple(
            int(t) for t in (getattr(self.model.config, "image_token_id", None),
                             getattr(self.model.config, "video_token_id", None)) if t is not None
        )
        self.rd_shard: ShardWriter | None = None
        if settings.record_routing:
            base = settings.routing_dir
            if base is None:
                base = routing_folder(output_path_from_argv(sys.argv) or ".", pretrained, settings.intervention_hash)
            self.rd_routing_dir = Path(base)
            self.rd_shard = ShardWriter(self.rd_routing_dir, self.rank)
        spec = settings.intervention
        logger.info(
            f"[rd-eval] {self.rd_model_id}: {len(self.rd_sites)} MoE layers; intervention "
            f"{'none' if spec is None else f'{spec.mode} lambda={spec.strength} hash={settings.intervention_hash}'}"
            f"; routing records {'-> ' + str(self.rd_routing_dir) if self.rd_shard else 'off'}"
        )

    def _rd_prepare_batch(self, chunk: list[Request]) -> tuple[Any, list[str], dict, list[str]]:
        """(model inputs on the host, contexts, gen_kwargs, until strings) for one batch."""
        raise NotImplementedError

    # -- generation ------------------------------------------------------------------------------------
    def generate_until(self, requests) -> list[str]:
        def sort_key(args: Request) -> tuple[int, str]:
            return -len(self.tokenizer.encode(args[0])), args[0]

        collator = lmms_utils.Collator(
            [req.args for req in requests], sort_key, group_fn=lambda a: {"rd_task": a[4], **a[1]}, grouping=True
        )
        progress = tqdm(total=len(requests), disable=(self.rank != 0), desc="Model Responding")
        responses: list[str] = []
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
        progress.close()
        return collator.get_original(responses)

    def _rd_identity(self, args: Request) -> DocIdentity:
        return DocIdentity(task=str(args[4]), doc_id=int(args[3]), form=form_of_task(str(args[4])))

    def _rd_failed(self, args: Request, reason: str) -> tuple[list[str], list[dict[str, Any]]]:
        logger.warning(f"[rd-eval] {args[4]} doc {args[3]}: {reason}")
        record = error_record(self._rd_identity(args), model=self.rd_model_id,
                              intervention_hash=self.rd_settings.intervention_hash, error=reason)
        return [error_response(reason)], [record]

    def _rd_run_chunk(self, chunk: list[Request], session) -> tuple[list[str], list[dict[str, Any]]]:
        """Run one batch; on any failure, rerun its documents one by one so only the culprit fails."""
        try:
            return self._rd_generate_batch(chunk, session)
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

    def _rd_generate_batch(self, chunk: list[Request], session) -> tuple[list[str], list[dict[str, Any]]]:
        visuals_seen: list[Any] = []
        real_doc_to_visual = chunk[0][2]

        def capture_visuals(doc: Any) -> Any:
            visuals = real_doc_to_visual(doc)
            visuals_seen.append(visuals)
            return visuals

        # All requests of a chunk share one task (see generate_until), hence one doc_to_visual.
        wrapped = [(a[0], a[1], capture_visuals, a[3], a[4], a[5]) for a in chunk]
        inputs, _contexts, gen_kwargs, until = self._rd_prepare_batch(wrapped)
        self._rd_check_images(chunk, inputs["input_ids"], visuals_seen)
        inputs = inputs.to(self.device)
        generate_kwargs = self._build_generate_kwargs(gen_kwargs)
        eos = generate_kwargs.get("eos_token_id")
        session.begin(len(chunk), stop_token_ids=None if eos is None else list(eos if isinstance(eos, list) else [eos]))
        with torch.inference_mode():
            output_ids = self.model.generate(**inputs, **generate_kwargs)
        routing: BatchRouting | None = session.recorder.finish_batch() if session.recorder is not None else None
        new_tokens = [out[len(inp):] for inp, out in zip(inputs["input_ids"], output_ids, strict=True)]
        texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        responses = []
        for text in texts:
            for stop in until:
                if stop:
                    text = text.split(stop)[0]
            responses.append(self._strip_thinking(text))
        records = []
        if routing is not None:
            for row, args in enumerate(chunk):
                records.append(document_record(self._rd_identity(args), routing, row, model=self.rd_model_id,
                                               intervention_hash=self.rd_settings.intervention_hash))
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
