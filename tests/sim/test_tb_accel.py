"""Tier 2: the whole accelerator's Verilog on Verilator with the HBM model, via the driver."""

import pytest

from hw.config import PRESETS
from sim.toolchain import run

CASES = ["random_gemms", "random_gemms_backpressure", "mlp", "conv", "errors",
         "deadlock_and_budget", "protection"]


RUNS = [(preset, case) for preset in ("tiny", "default") for case in CASES]


@pytest.mark.parametrize("preset, case", RUNS)
def test_accelerator_on_verilator(preset, case, tmp_path):
    env = {"TB_SEED": str(len(case) + len(preset)), "TB_CASES": "4",
           "TB_MAX_DIM": "24" if preset == "tiny" else "40"}
    assert run(PRESETS[preset], "sim.tb_accel", testcase=case, top="accelerator",
               test_dir=tmp_path, env=env) == (1, 0)
