"""The site table: what each row of a routing array (``[scope, site, expert]``) is.

A *site* is one router of the model. Most families have one per MoE layer, so site row ``i`` is MoE layer
``i``; ERNIE-4.5-VL has a text and a vision router per layer, so its rows alternate between the two groups and
a row index is not a MoE-layer index. Shards, expert sets and readers (identification, band, report) carry this
table and select rows by (MoE-layer index, group), never by position.

Torch-free: built from :class:`rd_eval.routing.sites.RouterSite` objects (or anything with their attributes) by
the writer, read back from JSON by every reader.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rd_eval.fileio.jsonio import canonical_hash

SITE_COLUMNS = ("site", "layer", "moe_index", "group", "module_path", "num_experts", "top_k")


class SiteTableError(ValueError):
    """A site table that is malformed or does not fit the arrays it describes."""


def _int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SiteTableError(f"site table: {what} {value!r} invalid; need an integer >= {minimum}")
    return value


@dataclass(frozen=True)
class SiteRow:
    """One routing site: its row in routing arrays, decoder layer, MoE-layer index and expert group."""

    site: int
    layer: int
    moe_index: int
    group: str = ""  # expert group of modality-isolated families ("text" / "vision"), else ""
    module_path: str = ""
    num_experts: int = 0  # 0: unknown (a table reconstructed for an old shard)
    top_k: int = 0

    def __post_init__(self) -> None:
        for name in ("site", "layer", "moe_index", "num_experts", "top_k"):
            _int(getattr(self, name), name, 0)
        if not isinstance(self.group, str) or not isinstance(self.module_path, str):
            raise SiteTableError(f"site table: site {self.site}: group and module_path must be strings")

    @property
    def key(self) -> tuple[int, str]:
        """(MoE-layer index, group): how expert sets and interventions name a site."""
        return self.moe_index, self.group

    def label(self) -> str:
        return f"{self.moe_index}/{self.group}" if self.group else str(self.moe_index)


@dataclass(frozen=True)
class SiteTable:
    """Every routing site of a model, in row order. ``legacy`` marks a table reconstructed for records or expert
    sets written before tables were recorded: row i is MoE layer i, group ""."""

    rows: tuple[SiteRow, ...]
    legacy: bool = False

    def __post_init__(self) -> None:
        if not self.rows:
            raise SiteTableError("site table: no sites")
        if [row.site for row in self.rows] != list(range(len(self.rows))):
            raise SiteTableError(f"site table: sites {[row.site for row in self.rows]} must be 0..{len(self.rows) - 1} "
                                 "in order")
        keys = [row.key for row in self.rows]
        if len(set(keys)) != len(keys):
            raise SiteTableError(f"site table: a (MoE layer, group) is listed twice: {keys}")
        moe = sorted({row.moe_index for row in self.rows})
        if moe != list(range(len(moe))):
            raise SiteTableError(f"site table: MoE-layer indices {moe} must be 0..{len(moe) - 1} without gaps")

    @classmethod
    def of_sites(cls, sites: Iterable[Any]) -> SiteTable:
        """From a model's router sites (:func:`rd_eval.routing.sites.find_router_sites`)."""
        return cls(tuple(SiteRow(site=s.site_index, layer=s.layer_index, moe_index=s.moe_index, group=s.group,
                                 module_path=s.module_path, num_experts=s.num_experts, top_k=s.top_k)
                         for s in sites))

    @classmethod
    def legacy_of(cls, n_sites: int) -> SiteTable:
        """What a site row meant before tables were recorded: row i is MoE layer i (decoder layer unknown, shown
        as i), one router per layer."""
        return cls(tuple(SiteRow(site=i, layer=i, moe_index=i) for i in range(n_sites)), legacy=True)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def num_moe_layers(self) -> int:
        return 1 + max(row.moe_index for row in self.rows)

    @property
    def groups(self) -> tuple[str, ...]:
        """The expert groups, in first-seen order ((""), or ("text", "vision") for ERNIE)."""
        return tuple(dict.fromkeys(row.group for row in self.rows))

    @property
    def grouped(self) -> bool:
        return self.groups != ("",)

    @property
    def is_plain(self) -> bool:
        """One router per MoE layer and every decoder layer a MoE layer: site row = MoE layer = decoder layer (what
        readers assumed before tables were recorded; true of a legacy table)."""
        return not self.grouped and all(row.site == row.moe_index == row.layer for row in self.rows)

    def rows_in(self, moe_layers: Iterable[int]) -> tuple[SiteRow, ...]:
        """The sites of the given MoE layers (every group of each), in row order."""
        wanted = set(moe_layers)
        return tuple(row for row in self.rows if row.moe_index in wanted)

    def row_of(self, moe_index: int, group: str = "") -> SiteRow | None:
        return next((row for row in self.rows if row.key == (moe_index, group)), None)

    def check_rows(self, n_rows: int, where: str) -> None:
        if n_rows != len(self.rows):
            raise SiteTableError(f"{where}: arrays have {n_rows} site rows but the site table lists {len(self.rows)}")

    def same_layout(self, other: SiteTable) -> bool:
        """Whether two tables describe the same rows (a legacy table matches any table of its length and single
        group, the meaning old records had)."""
        if self.legacy or other.legacy:
            return len(self) == len(other) and not self.grouped and not other.grouped
        return self.rows == other.rows

    def to_json(self) -> dict[str, Any]:
        return {"columns": list(SITE_COLUMNS),
                "rows": [[getattr(row, column) for column in SITE_COLUMNS] for row in self.rows]}

    def digest(self) -> str:
        return canonical_hash(self.to_json())

    @classmethod
    def from_json(cls, data: Any, *, source: str = "site table") -> SiteTable:
        try:
            if not isinstance(data, Mapping):
                raise SiteTableError("need an object {columns, rows}")
            columns = list(data["columns"])
            missing = [c for c in SITE_COLUMNS if c not in columns]
            if missing:
                raise SiteTableError(f"columns lack {missing}")
            rows: Sequence[Any] = data["rows"]
            if not isinstance(rows, list):
                raise SiteTableError("rows must be a list")
            return cls(tuple(SiteRow(**{c: row[columns.index(c)] for c in SITE_COLUMNS}) for row in rows))
        except SiteTableError as exc:
            raise SiteTableError(f"{source}: {str(exc).removeprefix('site table: ')}") from None
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise SiteTableError(f"{source}: malformed site table ({exc!r}); need {{'columns': "
                                 f"{list(SITE_COLUMNS)}, 'rows': [[...], ...]}}") from None
