"""Tier 2: the copy engine's Verilog on Verilator, on 1, 4 and 8 ports of the HBM model."""

import pytest

from hw.config import PRESETS
from sim.toolchain import run

# 1 port at the HBM width; 4 and 8 narrower ports keep the Verilator builds short; 4 ports
# interleaved by 256-byte granules (four words of a port to a stripe)
CONFIGS = {
    "1": PRESETS["default"].replace(name="dma1", mem_ports=1),
    "4": PRESETS["default"].replace(name="dma4", mem_ports=4, port_width=64),
    "8": PRESETS["default"].replace(name="dma8", mem_ports=8, port_width=64),
    "4-g256": PRESETS["default"].replace(name="dma4g", mem_ports=4, port_width=64,
                                         interleave_bytes=256),
}


@pytest.mark.parametrize("case", ["random_copies", "random_copies_backpressure", "read_error",
                                  "write_error"])
@pytest.mark.parametrize("ports", sorted(CONFIGS))
def test_copy_engine_on_verilator(ports, case, tmp_path):
    env = {"TB_SEED": str(len(ports) * 10 + len(case))}
    assert run(CONFIGS[ports], "sim.tb_copy", testcase=case, top="copy_engine",
               test_dir=tmp_path, env=env) == (1, 0)
