"""Tier 2: the generated Verilog of the systolic array under cocotb on Verilator."""

import pytest

from hw.config import PRESETS
from sim.toolchain import run

CASES = ["ws_random", "ws_random_backpressure", "os_random_backpressure",
         "mixed_dataflows_backpressure", "ws_back_to_back_timing"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("preset", ["tiny", "default"])
def test_array_on_verilator(preset, case, tmp_path):
    tests, failed = run(PRESETS[preset], "sim.tb_array", testcase=case, test_dir=tmp_path,
                        env={"TB_SEED": str(sum(map(ord, preset + case)))})
    assert (tests, failed) == (1, 0)
