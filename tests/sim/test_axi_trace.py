"""Tier 1: memory-port handshakes grouped into the phases of a run."""

import numpy as np
import pytest

from sim.axi_trace import phases
from sim.transfers import locate, unlocate

REGIONS = {"program": (0x1000, 0x100), "A": (0x2000, 0x800), "C": (0x3000, 0x400)}


def test_runs_split_by_channel_region_and_gap():
    events = [
        (8, 0, "ar", 0x1000, 4), (9, 1, "ar", 0x1020, 4),          # program fetch
        (36, 0, "r", None, None), (37, 1, "r", None, None),
        (52, 0, "ar", 0x2000, 16), (55, 1, "ar", 0x2400, 16),      # A, then A again later
        (70, 0, "r", None, None), (90, 0, "r", None, None),        # gap of 20: two R runs
        (200, 0, "ar", 0x2010, 1), (201, 2, "aw", 0x3000, 1), (202, 3, "aw", 0x5000, 1),
    ]
    assert phases(events, REGIONS) == [
        ("ar", "program", 8, 9, 2), ("r", None, 36, 37, 2), ("ar", "A", 52, 55, 2),
        ("r", None, 70, 70, 1), ("r", None, 90, 90, 1), ("ar", "A", 200, 200, 1),
        ("aw", "C", 201, 201, 1), ("aw", "other", 202, 202, 1)]


def test_events_in_any_order():
    events = [(5, 0, "b", None, None), (3, 0, "b", None, None), (4, 1, "b", None, None)]
    assert phases(events, REGIONS, gap=1) == [("b", None, 3, 5, 3)]


@pytest.mark.parametrize("granule, ports", [(32, 4), (256, 4), (8, 1), (64, 8)])
def test_unlocate_inverts_locate(granule, ports):
    for addr in np.random.default_rng(granule + ports).integers(0, 1 << 30, 500):
        port, port_addr = locate(int(addr), granule, ports)
        assert unlocate(port, port_addr, granule, ports) == addr
