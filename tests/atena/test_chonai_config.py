"""Which ordinance an atena applies (renkei.atena.chonai.ordinance_for), and none at all."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest

from renkei.atena import chonai
from renkei.catalogue import load_catalogue
from renkei.catalogue.ordinance import OrdinanceError, packaged_ordinance
from renkei.core.errors import Problem
from renkei.federation.topology import NAKANO, SHINJUKU
from tests.api.fed import Federation


def test_shinjuku_gets_its_sample_nakano_none(fed: Federation) -> None:
    catalogue = load_catalogue()
    shinjuku = chonai.ordinance_for(fed.config(SHINJUKU, "atena"), catalogue)
    assert shinjuku is not None and shinjuku.lg_code == "131041"
    assert chonai.ordinance_for(fed.config(NAKANO, "atena"), catalogue) is None


def test_without_an_ordinance_every_read_is_refused() -> None:
    req = chonai.ReadRequest("kodomo", "JM13104100000001", "tax", "TM00000000000002", ["000000007500017"], date(2025, 4, 1))
    with pytest.raises(Problem) as info:
        chonai.authorize(None, req)
    assert info.value.code == "ordinance_missing" and info.value.status == 403 and "条例" in info.value.title


def test_configured_file_wins_and_a_bad_one_stops_the_start(fed: Federation, tmp_path: Path) -> None:
    sample = packaged_ordinance("131041")
    assert sample is not None
    own = tmp_path / "jourei.toml"
    own.write_text(sample.read_text(encoding="utf-8").replace('id = "T1-05"', 'id = "X-05"'), encoding="utf-8")
    cfg = fed.config(NAKANO, "atena")
    cfg = dataclasses.replace(cfg, extra={**cfg.extra, "ordinance": str(own)})
    ordinance = chonai.ordinance_for(cfg, load_catalogue())
    assert ordinance is not None and ordinance.entry("X-05") is not None
    own.write_text("format = 1\n", encoding="utf-8")
    with pytest.raises(OrdinanceError) as info:
        chonai.ordinance_for(cfg, load_catalogue())
    assert "jourei.toml" in str(info.value)
