"""Tier 2: a short randomized regression of the accelerator's Verilog (``make soak`` runs a
long one)."""

import pytest

from hw.config import PRESETS
from scripts.soak import soak


@pytest.mark.parametrize("preset, n, seed", [("tiny", 16, 100), ("default", 6, 200)])
def test_short_soak(preset, n, seed):
    report = soak(PRESETS[preset], n, seed, max_dim=20, corrupt=0.5, abort=0.2, stall=0.3)
    assert report["mismatches"] == 0, report["failures"]
    assert report["programs"] == n and report["corrupted"] > 0 and report["valid"] > 0
    assert report["exact"] > 0 and report["errors"] + report["clean"] > 0
    assert report["aborted"] > 0
