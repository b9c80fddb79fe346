"""Runs the cocotb tests of the HBM AXI adapter (``sim/tb_hbm_axi.py``) on Verilator, against a
wire-through DUT."""

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.axi import AXI4Signature
from sim.toolchain import build_component, run

TOP = "axi_passthrough"


class AxiPassthrough(wiring.Component):
    """Subordinate port ``s_axi_*`` wired straight to manager port ``m_axi_hbm0_*``."""

    def __init__(self):
        sig = AXI4Signature(addr_width=32, data_width=256, id_width=4)
        super().__init__({"s_axi": In(sig), "m_axi_hbm0": Out(sig), "r_beats": Out(32)})

    def elaborate(self, platform):
        m = Module()
        wiring.connect(m, wiring.flipped(self.s_axi), wiring.flipped(self.m_axi_hbm0))
        # a clocked counter of R beats gives the module its clock and reset ports
        with m.If(self.s_axi.rvalid & self.s_axi.rready):
            m.d.sync += self.r_beats.eq(self.r_beats + 1)
        return m


@pytest.fixture(scope="module")
def passthrough():
    return build_component(AxiPassthrough(), TOP)


@pytest.mark.parametrize("testcase", ["random_traffic", "streaming_reads",
                                      "violations_and_injected_errors", "violations_by_hand",
                                      "fail_fast_fails_the_test"])
def test_hbm_axi(passthrough, testcase, tmp_path):
    assert run(None, "sim.tb_hbm_axi", testcase=testcase, top=TOP, build_dir=passthrough,
               test_dir=tmp_path) == (1, 0)
