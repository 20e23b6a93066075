"""A generic lmms-eval model class for Hugging Face image-text-to-text checkpoints.

lmms-eval 0.7.3 has no class for some MoE VLMs (ERNIE-4.5-VL, native in transformers; Kimi-VL, remote code
only). `HFImageTextModel` runs any checkpoint that `AutoModelForImageTextToText` (or, for remote code whose
auto map offers only that, `AutoModelForCausalLM`) and `AutoProcessor` load, on lmms-eval's simple
`generate_until` requests. `RoutedImageTextModel` puts `RoutingAdapterMixin` on top of it and uses its
`prepare_batch` as the mixin's `_rd_prepare_batch`; the routing adapters of those families subclass it.

Remote code runs only when `trust_remote_code=true` is in `model_args` (lmms-eval's own classes pass it
unconditionally); a checkpoint that needs it is refused with a message saying so. Hub kernels stay off unless
`use_kernels=true` is in `model_args` (rd_eval.models.checkpoints.LoadPolicy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import transformers
from accelerate import Accelerator
from lmms_eval import utils as lmms_utils
from lmms_eval.api.model import lmms
from loguru import logger
from PIL import Image
from rd_eval_adapters.loading import model_id_hint
from rd_eval_adapters.routing_adapter import (
    PreparedBatch,
    Request,
    RoutingAdapterMixin,
    default_device,
    positive_batch_size,
)
from tqdm import tqdm
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from rd_eval.models.checkpoints import LoadPolicy, checkpoint_config_dict, local_checkpoint
from rd_eval.routing.settings import parse_bool

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Auto classes tried in this order; remote code names its own in the config's auto_map.
_AUTO_CLASSES = ("AutoModelForImageTextToText", "AutoModelForCausalLM")
_DTYPES = {"auto": "auto", "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
           "fp16": torch.float16, "half": torch.float16, "float32": torch.float32, "fp32": torch.float32,
           "float": torch.float32}


def _parse_dtype(value: Any) -> torch.dtype | str:
    if isinstance(value, torch.dtype):
        return value
    key = str(value).strip().lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"model_args dtype={value!r} invalid; use one of {', '.join(sorted(_DTYPES))}")
    return _DTYPES[key]


def auto_model_class(pretrained: str, config: Any, config_dict: dict[str, Any], trust_remote_code: bool) -> type:
    """The Auto class to load with: remote code's own auto_map first, else transformers' native mappings."""
    auto_map = config_dict.get("auto_map") or {}
    classes = {"AutoModelForImageTextToText": AutoModelForImageTextToText,
               "AutoModelForCausalLM": AutoModelForCausalLM}
    if trust_remote_code and auto_map:
        for name in _AUTO_CLASSES:
            if name in auto_map:
                return classes[name]
    for name in _AUTO_CLASSES:
        if config is not None and type(config) in classes[name]._model_mapping:
            return classes[name]
    raise ValueError(f"pretrained={pretrained!r}: neither {' nor '.join(_AUTO_CLASSES)} can load model_type "
                     f"{config_dict.get('model_type')!r}")


class HFImageTextModel(lmms):
    """lmms-eval simple model for HF image-text-to-text checkpoints (generate_until only)."""

    # checkpoint model_types this class accepts (empty: any); a subclass names its family's
    model_types: tuple[str, ...] = ()
    # extra words for a refused model_type, e.g. how to get the right variant of a checkpoint
    model_type_hints: Mapping[str, str] = {}

    def __init__(
        self,
        pretrained: str,
        revision: str | None = None,
        device: str | None = None,
        device_map: str | None = None,
        dtype: str = "auto",
        batch_size: int | str = 1,
        max_new_tokens: int = 128,
        system_prompt: str | None = None,
        trust_remote_code: bool = False,
        use_kernels: bool = False,
        attn_implementation: str | None = None,
        use_cache: bool = True,
        enable_thinking: bool | None = None,
        max_batch_size: int | None = None,  # lmms-eval passes it when set; batches are fixed-size here
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"{self._model_name()}: unknown model_args {sorted(kwargs)}")
        pretrained = str(pretrained)
        revision = None if revision in (None, "") else str(revision)
        self.load_policy = LoadPolicy.pop_from({"trust_remote_code": trust_remote_code, "use_kernels": use_kernels})
        trust_remote_code = self.load_policy.trust_remote_code
        self.batch_size_per_gpu = positive_batch_size(batch_size)

        config_dict = checkpoint_config_dict(pretrained, revision)
        self._check_model_type(pretrained, config_dict)
        self._check_remote_code(pretrained, config_dict, trust_remote_code)

        accelerator = Accelerator()
        if accelerator.num_processes > 1:
            # Data parallel inference: one full copy per process, no DDP wrapper (nothing is trained);
            # lmms-eval shards the documents over the ranks.
            device = f"cuda:{accelerator.local_process_index}" if torch.cuda.is_available() else "cpu"
            device_map = device
            self.accelerator = accelerator
            self._rank = accelerator.process_index
            self._world_size = accelerator.num_processes
        else:
            device = device or default_device()
            device_map = device_map or device

        config = AutoConfig.from_pretrained(pretrained, revision=revision, trust_remote_code=trust_remote_code)
        model_class = auto_model_class(pretrained, config, config_dict, trust_remote_code)
        load_kwargs: dict[str, Any] = {"revision": revision, "dtype": _parse_dtype(dtype), "device_map": device_map,
                                       **self.load_policy.model_kwargs()}
        if attn_implementation is not None:
            load_kwargs["attn_implementation"] = attn_implementation
        self._model = model_class.from_pretrained(pretrained, **load_kwargs).eval()
        if isinstance(device_map, str) and device_map not in ("auto", "balanced", "balanced_low_0", "sequential"):
            self._device = torch.device(device_map)
        else:  # spread over devices: inputs go where they enter the model
            self._device = self._model.get_input_embeddings().weight.device

        self.processor = AutoProcessor.from_pretrained(pretrained, revision=revision,
                                                       trust_remote_code=trust_remote_code)
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None or not hasattr(self.processor, "image_processor"):
            raise ValueError(f"pretrained={pretrained!r}: AutoProcessor gave {type(self.processor).__name__}, "
                             "not a processor with a tokenizer and an image processor")
        if not getattr(self.processor, "chat_template", None):
            raise ValueError(f"pretrained={pretrained!r}: the processor has no chat template")
        tokenizer.padding_side = "left"  # decoder-only generation: batches are left-padded
        self._tokenizer = tokenizer

        self.pretrained = pretrained
        self._config = self._model.config
        text_config = getattr(self._config, "text_config", None) or self._config
        self._max_length = int(getattr(text_config, "max_position_embeddings", None) or 2048)
        self.max_new_tokens = int(max_new_tokens)
        self.system_prompt = self._resolve_system_prompt(system_prompt) if system_prompt else None
        self.use_cache = parse_bool("use_cache", use_cache)
        self.enable_thinking = None if enable_thinking is None else parse_bool("enable_thinking", enable_thinking)
        self._eos_token_ids = self._stop_token_ids()
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = getattr(self._model.generation_config, "pad_token_id", None)
        self._pad_token_id = pad if pad is not None else self._eos_token_ids[0] if self._eos_token_ids else None

    # -- checks and loading ------------------------------------------------------------------------------
    def _model_name(self) -> str:
        return getattr(self, "rd_model_id", "") or type(self).__name__

    def _check_model_type(self, pretrained: str, config_dict: dict[str, Any]) -> None:
        model_type = config_dict.get("model_type")
        if not self.model_types or model_type in self.model_types:
            return
        hint = self.model_type_hints.get(model_type, "") or model_id_hint(str(model_type))
        raise ValueError(
            f"pretrained={pretrained!r} has model_type {model_type!r}; {self._model_name()} runs model_type "
            f"{' / '.join(repr(t) for t in self.model_types)} only{hint}"
        )

    def _check_remote_code(self, pretrained: str, config_dict: dict[str, Any], trust_remote_code: bool) -> None:
        model_type = config_dict.get("model_type")
        auto_map = config_dict.get("auto_map") or {}
        native = model_type in CONFIG_MAPPING
        if not native and not auto_map:
            raise ValueError(f"pretrained={pretrained!r}: transformers {transformers.__version__} has no class for "
                             f"model_type {model_type!r} and the checkpoint ships no remote code (auto_map)")
        if native or not auto_map:
            return
        if not trust_remote_code:
            raise ValueError(
                f"pretrained={pretrained!r}: model_type {model_type!r} runs only with the checkpoint's own Python "
                "code (its config has an auto_map); add trust_remote_code=true to model_args to allow that"
            )
        local = local_checkpoint(pretrained)
        if local is None:
            return
        needed = sorted({ref.rsplit(".", 1)[0] + ".py" for ref in auto_map.values()
                         if isinstance(ref, str) and "--" not in ref})
        missing = [name for name in needed if not (local / name).is_file()]
        if missing:
            raise ValueError(f"pretrained={pretrained!r}: the remote code its auto_map names is missing from the "
                             f"folder: {', '.join(missing)}; download the complete checkpoint")

    def _stop_token_ids(self) -> list[int]:
        """The generation config's end-of-turn ids, then the tokenizer's eos (chat models stop on either)."""
        found: list[int] = []
        configured = getattr(self._model.generation_config, "eos_token_id", None)
        for value in [*(configured if isinstance(configured, list) else [configured]), self._tokenizer.eos_token_id]:
            if isinstance(value, int) and value not in found:
                found.append(value)
        return found

    # -- the standard lmms properties ----------------------------------------------------------------------
    @property
    def config(self):
        return self._config

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def model(self):
        return self._model

    @property
    def eot_token_id(self):
        return self._tokenizer.eos_token_id

    @property
    def max_length(self):
        return self._max_length

    @property
    def batch_size(self):
        return self.batch_size_per_gpu

    @property
    def device(self):
        return self._device

    @property
    def rank(self):
        return self._rank

    @property
    def world_size(self):
        return self._world_size

    # -- requests -------------------------------------------------------------------------------------------
    def _images(self, visuals: Any) -> list[Image.Image]:
        """The images of one document; other visuals (video, audio) are left out with a warning."""
        if visuals is None:
            return []
        if not isinstance(visuals, list | tuple):
            visuals = [visuals]
        images = []
        for visual in visuals:
            if isinstance(visual, Image.Image):
                images.append(visual if visual.mode == "RGB" else visual.convert("RGB"))
            elif isinstance(visual, str) and visual.lower().endswith(IMAGE_EXTENSIONS):
                with Image.open(visual) as image:
                    images.append(image.convert("RGB"))
            else:
                logger.warning(f"{self._model_name()}: visual of type {type(visual).__name__} left out "
                               f"({str(visual)[:80]!r}); this class passes images only")
        return images

    def _messages(self, context: str, num_images: int) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [{"type": "image"} for _ in range(num_images)]
        content.append({"type": "text", "text": context.replace("<image>", "")})
        messages = [{"role": "user", "content": content}]
        return self._apply_system_prompt(messages, self.system_prompt) if self.system_prompt else messages

    def generate_kwargs(self, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
        """`model.generate` kwargs: greedy unless temperature > 0; stop on the end-of-turn ids."""
        temperature = float(gen_kwargs.get("temperature") or 0.0)
        kwargs: dict[str, Any] = {
            "max_new_tokens": int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens),
            "eos_token_id": list(self._eos_token_ids),
            "pad_token_id": self._pad_token_id,
            "use_cache": self.use_cache,
            "do_sample": temperature > 0,
        }
        if temperature > 0:
            kwargs["temperature"] = temperature
            for key in ("top_p", "top_k"):
                if gen_kwargs.get(key) is not None:
                    kwargs[key] = gen_kwargs[key]
        if gen_kwargs.get("num_beams") is not None:
            kwargs["num_beams"] = int(gen_kwargs["num_beams"])
        return kwargs

    def stop_strings(self, gen_kwargs: dict[str, Any]) -> list[str]:
        """`until` as a list. A bare "\\n\\n" (lmms-eval's default when a task sets none) is dropped, as
        lmms-eval's Qwen3-VL class does, so that answers with paragraphs are compared alike across families."""
        until = gen_kwargs.get("until", [])
        if isinstance(until, str):
            until = [until]
        elif not isinstance(until, list | tuple):
            raise ValueError(f"gen_kwargs['until'] must be a str or a list, got {type(until).__name__}")
        return [stop for stop in until if stop and stop != "\n\n"]

    def prepare_batch(self, chunk: list[Request]) -> PreparedBatch:
        """Inputs (on the host, left-padded, floats in the model's dtype), generate kwargs, stop strings."""
        texts: list[str] = []
        images: list[Image.Image] = []
        for context, _, doc_to_visual, doc_id, task, split in chunk:
            doc_images = self._images(doc_to_visual(self.task_dict[task][split][doc_id]))
            images.extend(doc_images)
            template_kwargs = {} if self.enable_thinking is None else {"enable_thinking": self.enable_thinking}
            texts.append(self.processor.apply_chat_template(self._messages(context, len(doc_images)), tokenize=False,
                                                            add_generation_prompt=True, **template_kwargs))
        inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        dtype = self._model.dtype
        for key, value in list(inputs.items()):
            if torch.is_tensor(value) and value.is_floating_point() and value.dtype != dtype:
                inputs[key] = value.to(dtype)
        gen_kwargs = chunk[0][1]
        return PreparedBatch(inputs, self.generate_kwargs(gen_kwargs), self.stop_strings(gen_kwargs))

    def finish_text(self, text: str) -> str:
        if self.enable_thinking:
            _, _, answer = text.partition("</think>")
            return answer.strip()
        return text

    def generate_until(self, requests) -> list[str]:
        """Plain generation (no routing records): batches of one task and one gen_kwargs each."""
        collator = lmms_utils.Collator(
            [req.args for req in requests], lambda a: (-len(self._tokenizer.encode(a[0])), a[0]),
            group_fn=lambda a: {"rd_task": a[4], **a[1]}, grouping=True,
        )
        responses: list[str] = []
        progress = tqdm(total=len(requests), disable=(self.rank != 0), desc="Model Responding")
        for chunk in collator.get_batched(n=self.batch_size, batch_fn=None):
            batch = self.prepare_batch(list(chunk))
            inputs = batch.inputs.to(self.device)
            with torch.inference_mode():
                output_ids = self._model.generate(**inputs, **batch.generate_kwargs)
            new_tokens = [out[len(inp):] for inp, out in zip(inputs["input_ids"], output_ids, strict=True)]
            texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True,
                                                clean_up_tokenization_spaces=False)
            for args, text in zip(chunk, texts, strict=True):
                for stop in batch.until:
                    text = text.split(stop)[0]
                text = self.finish_text(text)
                self.cache_hook.add_partial("generate_until", (args[0], args[1]), text)
                responses.append(text)
            progress.update(len(chunk))
        progress.close()
        return collator.get_original(responses)

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        raise NotImplementedError(f"{self._model_name()} implements generate_until only; loglikelihood and "
                                  "multiple_choice tasks are not supported")

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError(f"{self._model_name()} implements generate_until only; multi-round "
                                  "generation is not supported")


class RoutedImageTextModel(RoutingAdapterMixin, HFImageTextModel):
    """`HFImageTextModel` with routing records and the intervention: its own batch preparation and answer
    finish serve the mixin's generation loop. A family names its model id, default checkpoint and model_types."""

    def _rd_prepare_batch(self, chunk: list[Request]) -> PreparedBatch:
        return self.prepare_batch(chunk)

    def _rd_finish_text(self, text: str) -> str:
        return self.finish_text(text)
