"""Settings named by what they are (rd_eval.routing.describe), and the run catalogue naming each setting so."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from test_report import CKPT, MID, _write_setting, build_runs

from rd_eval.reports.catalogue import open_catalogue
from rd_eval.routing.describe import describe_band, describe_family, describe_setting, setting_names
from rd_eval.routing.site_table import SiteTable
from rd_eval.routing.spec import MODES, TOKEN_SCOPES, ExpertSet, InterventionSpec, LayerBand, LayerExperts, SpecError

DOMAIN = ExpertSet(model="m", kind="domain", layers=(LayerExperts(1, (2, 3)), LayerExperts(2, (0,))))
OTHER_DOMAIN = ExpertSet(model="m", kind="domain", layers=(LayerExperts(1, (4, 3)),))
VISUAL = dataclasses.replace(DOMAIN, kind="visual")
SOFT = InterventionSpec(experts=DOMAIN)
HEX = re.compile(r"\b[0-9a-f]{12}\b")


def test_the_names_the_paper_uses() -> None:
    assert describe_setting(None) == "plain"
    assert describe_setting(SOFT) == "soft λ=1, domain experts, band 0.25–0.75"
    assert describe_setting(dataclasses.replace(SOFT, mode="soft_topk", strength=2, token_scope="image")) == \
        "soft_topk λ=2, domain experts, band 0.25–0.75, image tokens"
    assert describe_setting(dataclasses.replace(SOFT, mode="random", seed=3, strength=0.5)) == \
        "random control, seed 3, λ=0.5, band 0.25–0.75"
    assert describe_setting(dataclasses.replace(SOFT, mode="suppress")) == "suppress domain experts, band 0.25–0.75"
    assert describe_setting(dataclasses.replace(SOFT, mode="force", band=LayerBand(None, (12, 13, 14)))) == \
        "force domain experts, layers 12, 13, 14"
    assert describe_setting(InterventionSpec(experts=VISUAL, strength=-1.5, token_scope="generated")) == \
        "soft λ=-1.5, visual experts, band 0.25–0.75, generated tokens"
    assert describe_setting(dataclasses.replace(SOFT, mode="random", experts=VISUAL)) == \
        "random control for visual experts, seed 0, λ=1, band 0.25–0.75"
    assert describe_setting(dataclasses.replace(SOFT, mode="selection_only", std_correction=0, seed=2)) == \
        "selection-only λ=1, domain experts, band 0.25–0.75, seed 2, population std"
    assert describe_setting(InterventionSpec(experts=dataclasses.replace(DOMAIN, layers=()))) == \
        "soft λ=1, no experts (empty set), band 0.25–0.75"
    assert describe_band(LayerBand((0.1, 0.9))) == "band 0.1–0.9"
    assert describe_family(dataclasses.replace(SOFT, strength=3)) == "soft λ=…, domain experts, band 0.25–0.75"


def test_experts_kind_names_the_set_and_is_checked() -> None:
    assert describe_setting(SOFT, experts_kind="visual") == "soft λ=1, visual experts, band 0.25–0.75"
    with pytest.raises(SpecError, match="experts_kind 'vision' invalid; valid: domain, visual"):
        describe_setting(SOFT, experts_kind="vision")


def test_lambda_is_written_exactly_so_close_strengths_stay_apart() -> None:
    names = {describe_setting(dataclasses.replace(SOFT, strength=x)) for x in (1.0, 1.0000001, 0.1 + 0.2, 0.3)}
    assert len(names) == 4
    assert describe_setting(dataclasses.replace(SOFT, strength=1e-7)).startswith("soft λ=1e-07,")


def test_every_field_of_a_spec_changes_its_name() -> None:
    """Over a grid of every mode, scope, band, seed, std and kind, distinct specs never share a name."""
    specs = [
        InterventionSpec(experts=experts, mode=mode, strength=strength, band=band, token_scope=scope, seed=seed,
                         std_correction=std)
        for experts, mode, strength, band, scope, seed, std in itertools.product(
            (DOMAIN, VISUAL), MODES, (1.0, 2.0), (LayerBand(), LayerBand((0.5, 1.0)), LayerBand(None, (1, 2))),
            TOKEN_SCOPES, (0, 1), (0, 1))
    ]
    names = setting_names({spec.content_hash(): spec for spec in specs} | {"none": None})
    assert len(set(names.values())) == len(names) == len({s.content_hash() for s in specs}) + 1
    # Only specs whose differences the words leave out (λ or std of force/suppress) needed a hash suffix.
    suffixed = [spec for spec in specs if names[spec.content_hash()].endswith(spec.content_hash()[:6])]
    assert suffixed and all(spec.mode in ("force", "suppress") for spec in suffixed)
    assert not any(HEX.search(name) for name in names.values())


def test_two_expert_sets_of_one_kind_get_the_sets_hash_beside_the_name() -> None:
    a, b = SOFT, InterventionSpec(experts=OTHER_DOMAIN)
    assert describe_setting(a) == describe_setting(b)  # the words alone cannot tell them apart
    suppress = dataclasses.replace(a, mode="suppress")
    names = setting_names({"a": a, "b": b, "a again": a, "plain": None, "suppress": suppress})
    assert names["a"] != names["b"] and names["a"] == names["a again"]
    assert re.fullmatch(r"soft λ=1, domain experts, band 0\.25–0\.75, experts [0-9a-f]{6}", names["a"])
    assert names["plain"] == "plain" and names["suppress"] == "suppress domain experts, band 0.25–0.75"


def test_a_site_table_or_method_difference_in_the_set_is_told_apart() -> None:
    table = SiteTable.legacy_of(4)
    with_table = InterventionSpec(experts=dataclasses.replace(DOMAIN, sites=table))
    with_method = InterventionSpec(experts=dataclasses.replace(DOMAIN, method={"n": 20}))
    names = setting_names({"a": SOFT, "b": with_table, "c": with_method})
    assert len(set(names.values())) == 3


# --- the catalogue names each setting ---------------------------------------------------------------------


def test_catalogue_names_settings_from_their_specs(tmp_path: Path) -> None:
    runs, hash_ = build_runs(tmp_path)
    plain, soft = open_catalogue([runs]).settings
    assert (plain.name, plain.spec) == ("plain", None)
    assert soft.name == "soft λ=1.5, domain experts, band 0.25–0.75" and soft.spec.content_hash() == hash_
    assert soft.label == "acme__rd-tiny-A1B [soft λ=1.5, domain experts, band 0.25–0.75]"


def test_a_setting_whose_spec_is_gone_is_named_so_with_its_hash_beside(tmp_path: Path) -> None:
    runs, hash_ = build_runs(tmp_path, spec_readable=False)
    soft = open_catalogue([runs]).settings[1]
    assert soft.spec is None and soft.name == f"intervention spec not readable here ({hash_})"


def test_a_spec_file_changed_since_the_run_does_not_name_it(tmp_path: Path) -> None:
    """The run pinned its hash; the file now holds another spec: the setting is not named after the new one."""

    spec_path = tmp_path / "spec.json"
    old = InterventionSpec(experts=ExpertSet(model=CKPT, kind="domain", layers=(LayerExperts(MID[0], (0, 1)),)))
    old_hash = old.content_hash()
    dataclasses.replace(old, strength=4.0).save(spec_path)
    _write_setting(tmp_path / "runs" / "soft", "20250101_130000", old_hash,
                   f"pretrained={CKPT},intervention={spec_path},intervention_hash={old_hash}",
                   np.random.default_rng(0), image_dist=np.full((8, 8), 1 / 8), drop=False)
    (soft,) = open_catalogue([tmp_path / "runs"]).settings
    assert soft.intervention == old_hash and soft.spec is None
    assert soft.name == f"intervention spec not readable here ({old_hash})"
