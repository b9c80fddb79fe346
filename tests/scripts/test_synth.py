"""Tier 3: a quick Yosys run of the smallest array, and the resource check."""

import dataclasses
import json

import pytest

from hw.config import PRESETS
from scripts.synth import DEVICES, ToolError, block_counts, check_fit, synthesize


def test_yosys_maps_one_multiplier_per_pe(tmp_path):
    cfg = PRESETS["tiny"]
    report = synthesize(cfg, "ecp5-25k", top="systolic_array", out_dir=tmp_path, pnr=False,
                        quiet=True)
    y = report["yosys"]
    assert y["dsps"] == cfg.rows * cfg.cols
    assert y["luts"] > 0 and y["ffs"] > 0
    out = tmp_path / "tiny-systolic_array-ecp5-25k"
    assert (out / "summary.json").exists()
    # the blocks' resources add up to the design's
    for kind in ("luts", "ffs", "dsps", "brams", "carry", "lutram"):
        assert sum(c[kind] for c in report["blocks"].values()) == y[kind], kind
    depth = report["logic_depth"]
    assert depth["deepest"][0]["levels"] == max(depth["histogram"]) >= 1
    # every multiplier keeps its operand and product registers inside the DSP block
    cells = json.loads((out / "systolic_array.json").read_text())["modules"]["systolic_array"][
        "cells"].values()
    dsps = [c["parameters"] for c in cells if c["type"] == "MULT18X18D"]
    assert len(dsps) == cfg.rows * cfg.cols
    for p in dsps:
        assert p["REG_INPUTA_CLK"] == p["REG_INPUTB_CLK"] == p["REG_OUTPUT_CLK"] == "CLK0"


def test_a_design_that_does_not_fit_still_gets_its_report(tmp_path, monkeypatch):
    small = dataclasses.replace(DEVICES["ecp5-25k"], dsps=3)
    monkeypatch.setitem(DEVICES, "small", small)
    with pytest.raises(ToolError, match=r"needs 4 DSP blocks, the device has 3 \(most in "):
        synthesize(PRESETS["tiny"], "small", top="systolic_array", out_dir=tmp_path,
                   pnr=False, quiet=True)
    out = tmp_path / "tiny-systolic_array-small"
    report = json.loads((out / "summary.json").read_text())
    assert "needs 4 DSP blocks" in report["does_not_fit"]
    assert sum(c["dsps"] for c in report["blocks"].values()) == 4
    assert "needs 4 DSP blocks" in (out / "summary.txt").read_text()


@pytest.mark.parametrize("kind, need, words", [
    ("dsps", 64, ["64 DSP blocks", "has 28"]),
    ("luts", 30000, ["30000 LUTs", "has 24288"]),
    ("brams", 57, ["57 block RAMs", "has 56"]),
])
def test_check_fit_names_resource_need_and_capacity(kind, need, words):
    counts = {"luts": 1, "ffs": 1, "dsps": 1, "brams": 0, kind: need}
    with pytest.raises(ToolError) as info:
        check_fit(counts, DEVICES["ecp5-25k"], "big")
    for word in words:
        assert word in str(info.value)
    check_fit({**counts, kind: 1}, DEVICES["ecp5-25k"], "small")


def test_check_fit_names_the_blocks_that_take_most_of_the_resource():
    blocks = {"ctrl": {"luts": 20000, "ffs": 9}, "csr": {"luts": 9000, "ffs": 99},
              "spad": {"luts": 0, "ffs": 1}}
    with pytest.raises(ToolError, match=r"30000 LUTs.*\(most in ctrl 20000, csr 9000\)$"):
        check_fit({"luts": 30000, "ffs": 109}, DEVICES["ecp5-25k"], "big", blocks)


def test_block_counts_attribute_cells_by_their_first_hierarchical_name():
    def cell(kind):
        return {"type": kind, "parameters": {}, "connections": {}}
    cells = {"block.ctrl.fetch.q_LUT4": cell("LUT4"), "block.ctrl.x": cell("TRELLIS_FF"),
             "block.reader.y": cell("LUT4"), "block.reader.z": cell("MULT18X18D"),
             "block.$auto$w": cell("LUT4"), "shift_out_LUT4": cell("LUT4"),
             "block.acc.ram": cell("TRELLIS_DPR16X4"), "block.acc.b": cell("DP16KD"),
             "block.reader.n": cell("$scopeinfo"), "block.reader.m": cell("LUT4")}
    netlist = {"modules": {"LUT4": {"attributes": {}, "cells": {"x.y": cell("LUT4")}},
                           "top": {"attributes": {"top": "00000001"}, "cells": cells}}}
    blocks = block_counts(netlist, "ecp5", "block.")
    zero = dict.fromkeys(("luts", "ffs", "dsps", "brams", "carry", "lutram"), 0)
    assert blocks == {
        "reader": {**zero, "luts": 2, "dsps": 1},
        "(harness)": {**zero, "luts": 1},
        "(top)": {**zero, "luts": 1},
        "ctrl": {**zero, "luts": 1, "ffs": 1},
        "acc": {**zero, "brams": 1, "lutram": 1},
    }
    assert list(blocks)[0] == "reader"      # most LUTs first
