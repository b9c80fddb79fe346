import re

import pytest

from hw.axi import AXI4LiteSignature, AXI4Signature
from hw.config import PRESETS
from sim.toolchain import verilog_text


def test_axi4_members_and_widths():
    sig = AXI4Signature(addr_width=34, data_width=256, id_width=2)
    assert sig.members["awaddr"].shape == 34
    assert sig.members["wstrb"].shape == 32
    assert sig.members["rid"].shape == 2
    assert sig == AXI4Signature(addr_width=34, data_width=256, id_width=2)
    assert sig != AXI4Signature(addr_width=34, data_width=128, id_width=2)
    assert "data_width=256" in repr(sig)


@pytest.mark.parametrize("kwargs, words", [
    ({"addr_width": 8, "data_width": 32, "id_width": 1}, ["addr_width", "8"]),
    ({"addr_width": 32, "data_width": 96, "id_width": 1}, ["data_width", "96", "power of two"]),
    ({"addr_width": 32, "data_width": 32, "id_width": 0}, ["id_width", "0"]),
])
def test_axi4_bad_widths(kwargs, words):
    with pytest.raises(ValueError) as info:
        AXI4Signature(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_axi4_widths_are_keyword_only():
    with pytest.raises(TypeError):
        AXI4Signature(32, 32, 1)


def test_axi4_lite():
    sig = AXI4LiteSignature(addr_width=16)
    assert sig.members["wdata"].shape == 32 and sig.members["wstrb"].shape == 4
    with pytest.raises(ValueError, match="data_width must be 32 or 64, not 128"):
        AXI4LiteSignature(addr_width=16, data_width=128)


def test_generated_ports_carry_the_amba_names():
    text = verilog_text(PRESETS["tiny"].replace(mem_ports=2), "read_engine")
    ports = set(re.findall(r"^\s+(?:input|output) (?:\[\d+:0\] )?(\w+);", text, re.M))
    for p in range(2):
        for member in ("araddr", "arvalid", "arready", "arlen", "arsize", "arburst", "arid",
                       "rdata", "rresp", "rlast", "rvalid", "rready", "awaddr", "wstrb",
                       "bresp"):
            assert f"m_axi_hbm{p}_{member}" in ports
