"""The sweep's YAML (docs/sweep.md), read and validated once into frozen dataclasses.

Every error is a :class:`SweepConfigError` naming the file, the key path (``settings.soft.lambda[2]``) and what is
valid. Whatever the routing spec validates (λ, bands, token scopes, seeds) is checked by building the spec's own
objects and wrapping their :class:`SpecError` with the key path, never by a second set of rules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rd_eval.fileio.jsonio import JsonFileError, canonical_hash
from rd_eval.routing.describe import SCALED_MODES
from rd_eval.routing.settings import SETTING_KEYS
from rd_eval.routing.spec import EXPERT_KINDS, MODES, ExpertSet, InterventionSpec, LayerBand, SpecError
from rd_eval.vocabulary.scopes import TOKEN_SCOPES

# `pretrained=@organism` in model_args: the model organism shipped inside rd-eval, wherever it is installed.
ORGANISM_REF = "@organism"
TOP_KEYS = ("model", "model_args", "tasks", "experts", "settings", "lmms", "output_path")
REQUIRED_TOP_KEYS = ("model", "model_args", "tasks", "settings")
EXPERT_STEP_KEYS = ("file", "identify", "visual_file")
IDENTIFY_KEYS = ("domain", "general", "n", "seed", "band", "token_scope")
LMMS_KEYS = ("batch_size", "limit", "gen_kwargs", "seed", "include_path")
SETTING_GROUPS = ("plain", *MODES)
# The axes each mode's grid may list; lambda only where the mode scales by it, seeds only for the random control.
MODE_AXES: dict[str, tuple[str, ...]] = {
    mode: ("lambda",) * (mode in SCALED_MODES) + ("seeds",) * (mode == "random") + ("bands", "token_scope", "experts")
    for mode in MODES
}
DEFAULT_BAND = "0.25-0.75"
DEFAULT_SCOPE = "all"  # InterventionSpec's default: the boost on every token
HASH_LENGTH = 16

T = TypeVar("T")


class SweepConfigError(ValueError):
    """The sweep YAML is invalid; the message names the file, the key path and what is valid."""


@dataclass(frozen=True)
class IdentifyStep:
    """Expert identification the sweep runs first (`rd-eval experts`' ΔΦ: domain probes vs general probes)."""

    domain: str  # a probe set name of rd_eval.experts.probes, or a JSON/JSONL probe file (resolved to absolute)
    general: str = "general"
    n: int = 20
    seed: int = 0
    band: LayerBand = dataclasses.field(default_factory=LayerBand)
    token_scope: str = "prompt"
    probe_hashes: tuple[str, ...] = ()  # content hashes of probe files (not of named sets), so edits change the hash

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "general": self.general, "n": self.n, "seed": self.seed,
                "band": self.band.to_json(), "token_scope": self.token_scope, "probe_hashes": list(self.probe_hashes)}


@dataclass(frozen=True)
class ExpertStep:
    """Where the sweep's experts come from: an expert set file, or identification; and optional visual experts
    (a file). All None: no experts (then only plain settings are allowed)."""

    file: Path | None = None
    identify: IdentifyStep | None = None
    visual_file: Path | None = None
    # Content hashes of the files, so an edited expert file changes the config hash.
    file_hash: str | None = None
    visual_file_hash: str | None = None

    @property
    def has_domain(self) -> bool:
        return self.file is not None or self.identify is not None

    def to_json(self) -> dict[str, Any]:
        return {"file": None if self.file is None else str(self.file), "file_hash": self.file_hash,
                "identify": None if self.identify is None else self.identify.to_json(),
                "visual_file": None if self.visual_file is None else str(self.visual_file),
                "visual_file_hash": self.visual_file_hash}


@dataclass(frozen=True)
class ModeGrid:
    """One intervention mode's axes; the settings are their product. Axes a mode does not use are empty."""

    mode: str
    lambdas: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    bands: tuple[LayerBand, ...] = ()
    token_scopes: tuple[str, ...] = ()
    experts: tuple[str, ...] = ()  # expert kinds: "domain", "visual"

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "lambda": list(self.lambdas), "seeds": list(self.seeds),
                "bands": [b.to_json() for b in self.bands], "token_scope": list(self.token_scopes),
                "experts": list(self.experts)}


@dataclass(frozen=True)
class SettingsGrid:
    """The YAML's `settings`: the plain baseline and one grid per intervention mode it turns on."""

    plain: bool = True
    modes: tuple[ModeGrid, ...] = ()  # in MODES order

    def grid(self, mode: str) -> ModeGrid | None:
        return next((g for g in self.modes if g.mode == mode), None)

    def to_json(self) -> dict[str, Any]:
        return {"plain": self.plain, "modes": [g.to_json() for g in self.modes]}


@dataclass(frozen=True)
class LmmsOptions:
    """lmms-eval options every setting's run gets (its --output_path is the sweep's, per setting)."""

    batch_size: int = 1
    limit: int | float | None = None
    gen_kwargs: str | None = None
    seed: int = 0
    include_path: Path | None = None  # None: rd-eval's installed tasks folder (installed_tasks_dir())

    def to_json(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "limit": self.limit, "gen_kwargs": self.gen_kwargs,
                "seed": self.seed, "include_path": None if self.include_path is None else str(self.include_path)}


@dataclass(frozen=True)
class SweepConfig:
    """A sweep YAML, validated: the model, its tasks, the expert step, the settings grid and lmms-eval's options;
    `out_dir` is the sweep folder (--out, else the YAML's output_path) and takes no part in `config_hash`."""

    source: Path
    model: str
    model_args: str  # the base model_args, @organism resolved, no routing key
    tasks: tuple[str, ...]
    experts: ExpertStep
    settings: SettingsGrid
    lmms: LmmsOptions
    out_dir: Path | None
    config_hash: str

    def output_relevant(self) -> dict[str, Any]:
        """Everything that changes a sweep's outputs (not where they go): what config_hash is taken over."""
        return {"model": self.model, "model_args": self.model_args, "tasks": list(self.tasks),
                "experts": self.experts.to_json(), "settings": self.settings.to_json(), "lmms": self.lmms.to_json()}

    @property
    def include_path(self) -> Path:
        """--include_path of every run: the configured one, else rd-eval's installed tasks."""
        return self.lmms.include_path if self.lmms.include_path is not None else installed_tasks_dir()


def installed_tasks_dir() -> Path:
    """Installed location of rd-eval's task YAMLs (lmms-eval's --include_path)."""
    from rd_eval.lmms.runner import installed_tasks_dir as installed

    folder = installed()
    if folder is None:
        raise SweepConfigError("rd-eval's tasks package (rd_eval_tasks) is not installed; reinstall rd-eval or "
                               "set lmms.include_path")
    return folder


def organism_dir() -> Path:
    """What `@organism` stands for: the shipped model organism's folder."""
    from rd_eval.organism.shipped import SHIPPED_DIR

    return SHIPPED_DIR


class _Reader:
    """Typed access to the YAML's values with errors naming the file and key path."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def error(self, key: str, message: str) -> SweepConfigError:
        return SweepConfigError(f"{self.source}: {key}: {message}")

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, Mapping):
            raise self.error(key, f"{_shown(value)} invalid; need a mapping with keys {', '.join(allowed)}")
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise self.error(key, f"unknown key(s) {', '.join(unknown)}; valid: {', '.join(allowed)}")
        missing = [k for k in required if k not in value]
        if missing:
            raise self.error(key, f"missing required key(s) {', '.join(missing)}")
        return dict(value)

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"{_shown(value)} invalid; need a non-empty string")
        return value.strip()

    def integer(self, value: Any, key: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"{_shown(value)} invalid; need a whole number >= {minimum}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"{_shown(value)} invalid; need true or false")
        return value

    def path(self, value: Any, key: str) -> Path:
        """A path; relative ones resolve against the YAML's folder."""
        path = Path(self.text(value, key)).expanduser()
        return path if path.is_absolute() else (self.source.parent / path).absolute()

    def items(self, value: Any, key: str, parse: Callable[[Any, str], T]) -> tuple[T, ...]:
        """A list (or one value standing for a list of one), each parsed; empty lists and repeats refused."""
        values = value if isinstance(value, list) else [value]
        if not values:
            raise self.error(key, "an empty list; give at least one value (or remove the key for its default)")
        parsed = tuple(parse(v, f"{key}[{i}]") for i, v in enumerate(values))
        for i, item in enumerate(parsed):
            if item in parsed[:i]:
                raise self.error(f"{key}[{i}]", f"{_shown(values[i])} repeats an earlier value; list each once")
        return parsed

    def spec_check(self, key: str, **fields: Any) -> None:
        """Let InterventionSpec judge one field (an empty expert set stands in for the experts)."""
        try:
            InterventionSpec(experts=ExpertSet(model="", kind="domain", layers=()), **fields)
        except SpecError as exc:
            raise self.error(key, str(exc)) from None


def _shown(value: Any) -> str:
    return "nothing (null)" if value is None else repr(value)


def _band(reader: _Reader, value: Any, key: str) -> LayerBand:
    if not isinstance(value, str):
        # YAML 1.1 reads an unquoted 12:13 as the base-60 number 733: a band must be text, so no number is guessed.
        raise reader.error(key, f"{_shown(value)} invalid; give a band as quoted text: fractions like '0.25-0.75' "
                                "or MoE-layer indices like '12:13:14' (unquoted, YAML reads 12:13 as the number 733)")
    try:
        return LayerBand.parse(str(value))
    except SpecError as exc:
        raise reader.error(key, str(exc)) from None


def _lambda(reader: _Reader, value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise reader.error(key, f"{_shown(value)} is not a number; λ is a number such as 0.5, 1 or 2 "
                                "(YAML reads 1e3 as text: write 1.0e+3)")
    reader.spec_check(key, strength=value)
    return float(value)


def _scope(reader: _Reader, value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise reader.error(key, f"{_shown(value)} invalid; valid token scopes: {', '.join(TOKEN_SCOPES)}")
    reader.spec_check(key, token_scope=value)
    return value


def _seed(reader: _Reader, value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise reader.error(key, f"{_shown(value)} invalid; need a whole number >= 0")
    reader.spec_check(key, seed=value)
    return value


def _expert_kind(reader: _Reader, value: Any, key: str) -> str:
    if value not in EXPERT_KINDS:
        raise reader.error(key, f"{_shown(value)} invalid; valid expert kinds: {', '.join(EXPERT_KINDS)}")
    return str(value)


def _mode_grid(reader: _Reader, mode: str, value: Any, key: str) -> ModeGrid | None:
    """One mode's grid: a mapping of its axes; `true` or `{}` takes every default, `false`/null turns it off."""
    if value is None or value is False:
        return None
    axes = MODE_AXES[mode]
    data = {} if value is True else reader.mapping(value, key, axes)
    defaults = {"lambda": [1.0], "seeds": [0], "bands": [DEFAULT_BAND], "token_scope": [DEFAULT_SCOPE],
                "experts": ["domain"]}
    parsers: dict[str, Callable[[Any, str], Any]] = {
        "lambda": lambda v, k: _lambda(reader, v, k), "seeds": lambda v, k: _seed(reader, v, k),
        "bands": lambda v, k: _band(reader, v, k), "token_scope": lambda v, k: _scope(reader, v, k),
        "experts": lambda v, k: _expert_kind(reader, v, k),
    }
    parsed = {axis: reader.items(data.get(axis, defaults[axis]), f"{key}.{axis}", parsers[axis]) for axis in axes}
    return ModeGrid(mode=mode, lambdas=parsed.get("lambda", ()), seeds=parsed.get("seeds", ()),
                    bands=parsed["bands"], token_scopes=parsed["token_scope"], experts=parsed["experts"])


def _settings(reader: _Reader, value: Any) -> SettingsGrid:
    data = reader.mapping(value, "settings", SETTING_GROUPS)
    plain = reader.boolean(data.get("plain", True), "settings.plain")
    modes = tuple(g for mode in MODES if (g := _mode_grid(reader, mode, data.get(mode), f"settings.{mode}")))
    if not plain and not modes:
        raise reader.error("settings", f"the grid is empty; set plain: true and/or give one of {', '.join(MODES)}")
    return SettingsGrid(plain=plain, modes=modes)


def _load_set(reader: _Reader, path: Path, key: str, kind: str) -> str:
    """Validate an expert set file; its content hash."""
    try:
        experts = ExpertSet.load(path)
    except (SpecError, JsonFileError) as exc:
        raise reader.error(key, f"not a usable expert set file: {exc}") from None
    if experts.kind != kind:
        raise reader.error(key, f"{path} holds {experts.kind} experts; this key takes a {kind} expert set")
    return experts.content_hash(HASH_LENGTH)


def _identify(reader: _Reader, value: Any) -> IdentifyStep:
    key = "experts.identify"
    data = reader.mapping(value, key, IDENTIFY_KEYS, required=("domain",))
    domain, domain_hash = _probe_source(reader, data["domain"], f"{key}.domain")
    general, general_hash = _probe_source(reader, data.get("general", "general"), f"{key}.general")
    band = _band(reader, data.get("band", DEFAULT_BAND), f"{key}.band")
    scope = _scope(reader, data.get("token_scope", "prompt"), f"{key}.token_scope")
    return IdentifyStep(domain=domain, general=general, n=reader.integer(data.get("n", 20), f"{key}.n", 1),
                        seed=reader.integer(data.get("seed", 0), f"{key}.seed", 0), band=band, token_scope=scope,
                        probe_hashes=tuple(h for h in (domain_hash, general_hash) if h is not None))


def _probe_source(reader: _Reader, value: Any, key: str) -> tuple[str, str | None]:
    """A probe set name, or a probe file (absolute) with its content hash: an edited file is another config."""
    from rd_eval.experts.probes import PROBE_SETS

    name = reader.text(value, key)
    if name in PROBE_SETS:
        return name, None
    if not (name.endswith((".json", ".jsonl")) or "/" in name):
        raise reader.error(key, f"{name!r} is no probe set; valid: {', '.join(PROBE_SETS)}, or a .json/.jsonl "
                                "probe file")
    path = reader.path(name, key)
    try:
        content = path.read_bytes()
    except OSError:
        raise reader.error(key, f"probe file {path} does not exist or cannot be read") from None
    return str(path), hashlib.sha256(content).hexdigest()[:HASH_LENGTH]


def _expert_step(reader: _Reader, value: Any) -> ExpertStep:
    if value is None:
        return ExpertStep()
    data = reader.mapping(value, "experts", EXPERT_STEP_KEYS)
    if "file" in data and "identify" in data:
        raise reader.error("experts", "give either file (an expert set JSON) or identify, not both")
    file = reader.path(data["file"], "experts.file") if "file" in data else None
    visual = reader.path(data["visual_file"], "experts.visual_file") if "visual_file" in data else None
    return ExpertStep(
        file=file, identify=_identify(reader, data["identify"]) if "identify" in data else None, visual_file=visual,
        file_hash=None if file is None else _load_set(reader, file, "experts.file", "domain"),
        visual_file_hash=None if visual is None else _load_set(reader, visual, "experts.visual_file", "visual"))


def _check_experts_cover(reader: _Reader, step: ExpertStep, grid: SettingsGrid) -> None:
    for mode_grid in grid.modes:
        for i, kind in enumerate(mode_grid.experts):
            key = f"settings.{mode_grid.mode}.experts[{i}]" if len(mode_grid.experts) > 1 \
                else f"settings.{mode_grid.mode}"
            if kind == "domain" and not step.has_domain:
                raise reader.error(key, "needs domain experts, and the config has no expert step: add "
                                        "experts.file (an expert set JSON) or experts.identify, or keep only plain")
            if kind == "visual" and step.visual_file is None:
                raise reader.error(key, "needs visual experts: add experts.visual_file (a visual expert set JSON)")


_ORGANISM_VALUE = re.compile(r"(?<==)" + re.escape(ORGANISM_REF) + r"(?=,|$)")


def _model_args(reader: _Reader, value: Any) -> str:
    from rd_eval.vocabulary.model_args import ModelArgsError, parse_model_args

    text = reader.text(value, "model_args")
    if ORGANISM_REF in text:
        folder = organism_dir()
        if not (folder / "config.json").is_file():
            raise reader.error("model_args", f"{ORGANISM_REF} names the shipped model organism, but {folder} holds "
                                             "no model; reinstall rd-eval or name a checkpoint folder")
        if "," in str(folder):
            raise reader.error("model_args", f"{ORGANISM_REF} resolves to {folder}, whose comma lmms-eval's "
                                             "model_args cannot carry; install rd-eval elsewhere")
        text = _ORGANISM_VALUE.sub(str(folder), text)
        if ORGANISM_REF in text:
            raise reader.error("model_args", f"{ORGANISM_REF} must be a whole value (pretrained={ORGANISM_REF})")
    try:
        parsed = parse_model_args(text)
    except ModelArgsError as exc:
        raise reader.error("model_args", str(exc)) from None
    routing = [k for k in SETTING_KEYS if k in parsed]
    if routing:
        raise reader.error("model_args", f"routing key(s) {', '.join(routing)} belong in settings (the sweep adds "
                                         "each setting's own); remove them from model_args")
    return text


def _limit(reader: _Reader, value: Any) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 \
            or (isinstance(value, float) and value >= 1):
        raise reader.error("lmms.limit", f"{_shown(value)} invalid; need a whole number of documents >= 1 per "
                                         "task, a fraction 0 < f < 1, or null (all documents)")
    return value


def _lmms(reader: _Reader, value: Any) -> LmmsOptions:
    if value is None:
        return LmmsOptions()
    data = reader.mapping(value, "lmms", LMMS_KEYS)
    gen_kwargs = data.get("gen_kwargs")
    include = data.get("include_path")
    include_path = None if include is None else reader.path(include, "lmms.include_path")
    if include_path is not None and not include_path.is_dir():
        raise reader.error("lmms.include_path", f"{include_path} is not a folder of lmms-eval task YAMLs")
    return LmmsOptions(batch_size=reader.integer(data.get("batch_size", 1), "lmms.batch_size", 1),
                       limit=_limit(reader, data.get("limit")),
                       gen_kwargs=None if gen_kwargs is None else reader.text(gen_kwargs, "lmms.gen_kwargs"),
                       seed=reader.integer(data.get("seed", 0), "lmms.seed", 0), include_path=include_path)


def _tasks(reader: _Reader, value: Any) -> tuple[str, ...]:
    def task(item: Any, key: str) -> str:
        name = reader.text(item, key)
        if "," in name:
            raise reader.error(key, f"{name!r}: list tasks one per entry, not comma-separated")
        return name

    return reader.items(value, "tasks", task)


def _read_yaml(path: Path) -> Any:
    import yaml

    from rd_eval.fileio.jsonio import read_text_file

    text = read_text_file(path, SweepConfigError, "sweep YAML file")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SweepConfigError(f"{path}: not valid YAML ({exc})") from None


def load_sweep_config(path: Path, *, out: Path | None = None) -> SweepConfig:
    """The validated sweep config of the YAML at `path`; `out` (the --out option) overrides its output_path."""
    source = Path(path).expanduser().absolute()
    reader = _Reader(source)
    data = reader.mapping(_read_yaml(source), "top level", TOP_KEYS, required=REQUIRED_TOP_KEYS)
    experts = _expert_step(reader, data.get("experts"))
    settings = _settings(reader, data["settings"])
    _check_experts_cover(reader, experts, settings)
    out_dir = Path(out).expanduser().absolute() if out is not None else \
        reader.path(data["output_path"], "output_path") if data.get("output_path") is not None else None
    config = SweepConfig(source=source, model=reader.text(data["model"], "model"),
                         model_args=_model_args(reader, data["model_args"]), tasks=_tasks(reader, data["tasks"]),
                         experts=experts, settings=settings, lmms=_lmms(reader, data.get("lmms")), out_dir=out_dir,
                         config_hash="")
    return dataclasses.replace(config, config_hash=canonical_hash(config.output_relevant(), HASH_LENGTH))
