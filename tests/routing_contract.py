"""Family-independent routing checks and helpers shared by the routing tests of every family.

Inputs are built with the family's own processor and chat template; the helpers only assume lmms-eval's
message format and a left-padded batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn
from torch.overrides import TorchFunctionMode

from rd_eval.routing.recording import BatchRouting
from rd_eval.routing.session import routing_session
from rd_eval.routing.sites import find_router_sites
from rd_eval.routing.spec import ExpertSet, InterventionSpec, LayerExperts


def drawn_image(seed: int, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
        x1, y1 = x0 + int(rng.integers(8, size // 2)), y0 + int(rng.integers(8, size // 2))
        draw.rectangle([x0, y0, x1, y1], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw.text((4, size // 2), "42", fill=(0, 0, 0))
    return image


def encode(processor: Any, docs: list[tuple[str, Image.Image | None]]) -> Any:
    """A left-padded batch; each doc is (text, image or None). Pixels come back in float32 (some image
    processors, Llama 4's, return bfloat16) to match the float32 test models."""
    prompts, images = [], []
    for text, image in docs:
        content: list[dict[str, str]] = [{"type": "text", "text": text}]
        if image is not None:
            content.insert(0, {"type": "image"})
            images.append(image)
        messages = [{"role": "user", "content": content}]
        prompts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    kwargs: dict[str, Any] = {"images": images} if images else {}
    inputs = processor(text=prompts, padding=True, padding_side="left", return_tensors="pt", **kwargs)
    if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
        inputs["pixel_values"] = inputs["pixel_values"].float()
    return inputs


def expert_set(by_layer: dict[int, tuple[int, ...]]) -> ExpertSet:
    layers = tuple(LayerExperts(moe_index=i, experts=tuple(e)) for i, e in sorted(by_layer.items()))
    return ExpertSet(model="tiny", kind="domain", layers=layers)


def routers(model: nn.Module) -> list[nn.Module]:
    modules = dict(model.named_modules())
    return [modules[site.module_path] for site in find_router_sites(model)]


def record_forward(model: nn.Module, inputs: Any, intervention: InterventionSpec | None = None,
                   **kwargs: Any) -> tuple[Any, BatchRouting]:
    with routing_session(model, record=True, intervention=intervention) as session, torch.inference_mode():
        session.begin(inputs["input_ids"].shape[0])
        outputs = model(**inputs, **kwargs)
        routing = session.finish_batch().routing
    return outputs, routing


def record_generate(model: nn.Module, inputs: Any, intervention: InterventionSpec | None = None,
                    **kwargs: Any) -> tuple[torch.Tensor, BatchRouting]:
    with routing_session(model, record=True, intervention=intervention) as session, torch.inference_mode():
        stop = [kwargs["eos_token_id"]] if "eos_token_id" in kwargs else None
        session.begin(inputs["input_ids"].shape[0], stop_token_ids=stop)
        ids = model.generate(**inputs, do_sample=False, **kwargs)
        routing = session.finish_batch().routing
    return ids, routing


def hook_counts(model: nn.Module) -> list[tuple[int, int]]:
    return [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in [model, *routers(model)]]


SYNC_NAMES = frozenset({"item", "tolist", "__bool__", "cpu", "numpy", "nonzero", "__int__", "__float__"})


class HostSyncViolation(AssertionError):
    pass


class HostSyncGuard(TorchFunctionMode):
    """Records calls that synchronise with the host; raises for those made while `armed` (inside hooks).

    transformers' own generate loop syncs (stopping criteria, rope indices), so the guard is armed only
    between bracketing hooks registered around the session's hooks.
    """

    def __init__(self) -> None:
        super().__init__()
        self.armed = 0
        self.seen: list[tuple[str, bool]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNC_NAMES:
            self.seen.append((name, bool(self.armed)))
            if self.armed:
                raise HostSyncViolation(f"host-device sync {name!r} inside a routing hook")
        return func(*args, **(kwargs or {}))


def bracket_session_hooks(model: nn.Module, guard: HostSyncGuard) -> list[Any]:
    """Arm the guard just before the session's hooks run and disarm it right after (call after install)."""

    def arm(*_: Any) -> None:
        guard.armed += 1

    def disarm(*_: Any) -> None:
        guard.armed -= 1

    handles = [model.register_forward_pre_hook(arm, prepend=True), model.register_forward_pre_hook(disarm)]
    for router in routers(model):
        handles.append(router.register_forward_hook(arm, prepend=True))
        handles.append(router.register_forward_hook(disarm))
    return handles


def tiny_checkpoint_fixtures(family: str, folder: str, *, dir_fixture: str,
                             model_class: str = "AutoModelForImageTextToText", processor_class: str = "AutoProcessor",
                             processor_fixture: str = "processor") -> tuple[Any, Any, Any]:
    """Module-scoped fixtures (checkpoint folder, float32 model, processor) for one family's tiny checkpoint.

    Assign the three to module-level names in a test file; pytest registers them by the `name`s given here.
    """
    import pytest

    @pytest.fixture(scope="module", name=dir_fixture)
    def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Any:
        from rd_eval.models.tiny import make_tiny

        return make_tiny(family, tmp_path_factory.mktemp(family) / folder, seed=0)

    @pytest.fixture(scope="module", name="model")
    def model(request: pytest.FixtureRequest) -> nn.Module:
        import transformers

        path = request.getfixturevalue(dir_fixture)
        return getattr(transformers, model_class).from_pretrained(path, dtype=torch.float32, use_kernels=False).eval()

    @pytest.fixture(scope="module", name=processor_fixture)
    def processor(request: pytest.FixtureRequest) -> Any:
        import transformers

        return getattr(transformers, processor_class).from_pretrained(request.getfixturevalue(dir_fixture))

    return checkpoint, model, processor


def mixed_batch_fixtures(image_prompt: str, text_prompt: str, *, model_fixture: str = "model",
                         processor_fixture: str = "processor", max_new_tokens: int = 5) -> tuple[Any, Any, Any]:
    """Module-scoped fixtures `mixed_batch` (row 0 image + text, row 1 text only and left-padded),
    `plain_outputs` (logits and greedy ids with no hooks at all) and `baseline_routing` (a recorded prefill).
    Assign the three to module-level names in a test file."""
    import pytest

    @pytest.fixture(scope="module", name="mixed_batch")
    def mixed_batch(request: pytest.FixtureRequest) -> Any:
        processor = request.getfixturevalue(processor_fixture)
        inputs = encode(processor, [(image_prompt, drawn_image(1)), (text_prompt, None)])
        assert (inputs["attention_mask"] == 0).any(), "row 1 must be left-padded"
        return inputs

    @pytest.fixture(scope="module", name="plain_outputs")
    def plain_outputs(request: pytest.FixtureRequest, mixed_batch: Any) -> dict[str, torch.Tensor]:
        model = request.getfixturevalue(model_fixture)
        with torch.inference_mode():
            logits = model(**mixed_batch).logits.clone()
            ids = model.generate(**mixed_batch, max_new_tokens=max_new_tokens, do_sample=False)
        return {"logits": logits, "ids": ids}

    @pytest.fixture(scope="module", name="baseline_routing")
    def baseline_routing(request: pytest.FixtureRequest, mixed_batch: Any) -> BatchRouting:
        return record_forward(request.getfixturevalue(model_fixture), mixed_batch)[1]

    return mixed_batch, plain_outputs, baseline_routing
