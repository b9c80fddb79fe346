"""Tier 1: the processing element in Amaranth's simulator."""

import pytest
from amaranth.sim import Simulator

from hw.config import AccelConfig
from hw.pe import ProcessingElement
from sim.reference import wrap


def run_pe(cfg, steps, row=0):
    """Apply ``steps`` (one per cycle, en high): ``a``/``b``/``w`` go to a_i/b_i/w_i, and
    ``psum`` is the
    partial sum that meets this step's operands, so it goes to psum_i ``PSUM_DELAY`` cycles
    later (when operands and product have been registered). Returns psum_o after each step,
    plus ``PSUM_DELAY`` more cycles: the result of step k is at index k + PSUM_DELAY."""
    dut = ProcessingElement(cfg, row=row)
    seen = []
    zero_a = {"data": 0, "ws": 0, "os": 0, "first": 0, "last": 0, "drain": 0}
    zero_w = {"data": 0, "load": 0, "row": 0}

    async def bench(ctx):
        ctx.set(dut.en, 1)
        psums = [0] * ProcessingElement.PSUM_DELAY
        for step in steps + [{}] * ProcessingElement.PSUM_DELAY:
            ctx.set(dut.a_i, {**zero_a, **step.get("a", {})})
            ctx.set(dut.b_i, step.get("b", 0))
            ctx.set(dut.w_i, {**zero_w, **step.get("w", {})})
            psums.append(step.get("psum", 0))
            ctx.set(dut.psum_i, psums.pop(0))
            await ctx.tick()
            seen.append(ctx.get(dut.psum_o))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def ws(x, first=0):
    return {"data": x, "ws": 1, "first": first}


def weight(w, row=0):
    return {"data": w, "load": 1, "row": row}


CFG = AccelConfig(name="pe")
D = ProcessingElement.PSUM_DELAY


@pytest.mark.parametrize("x, w, psum", [
    (-128, -128, 0), (-128, 127, 0), (127, 127, 0), (-128, -128, 2**31 - 1 - 16383),
    (-128, -128, 2**31 - 16383), (127, -128, -2**31), (-1, 1, -2**31), (0, -128, 5),
])
def test_ws_multiply_add_wraps_at_accumulator_limits(x, w, psum):
    # the weight is captured from w_i; the first A row, entering in the same cycle, switches
    # to it.
    steps = [{"w": weight(w), "a": ws(x, first=1), "psum": psum}]
    out = run_pe(CFG, steps)
    assert out[D] == int(wrap(psum + x * w, 32))


def test_ws_captures_only_its_own_row_and_switch_is_per_row():
    steps = [
        {"w": weight(5, row=1)}, {"w": weight(7, row=0)}, {"w": weight(9, row=1)}, {},
        {"a": ws(3, first=1)},                               # switches to the captured 7
        {"a": ws(2), "psum": 100, "w": weight(-4, row=0)},   # -4 waits for the next switch
        {"a": ws(1, first=1), "psum": 1000},                 # switches to -4 in this row
        {"a": ws(-1), "psum": 1},
        {"a": ws(6, first=1), "w": weight(8, row=0)},        # 8 offered as it switches
        {"a": ws(5, first=1), "w": weight(9, row=0)},        # so is 9, a row later
    ]
    out = run_pe(CFG, steps, row=0)
    assert out[4 + D:10 + D] == [3 * 7, 100 + 2 * 7, 1000 - 4, 1 + 4, 6 * 8, 5 * 9]


def os_step(x, y, first=0, last=0, psum=0):
    return {"a": {"data": x, "os": 1, "first": first, "last": last}, "b": y,
            "psum": psum}


def test_os_accumulates_and_wraps_to_acc_width():
    cfg = AccelConfig(name="pe18", acc_width=18)
    # eight (-128 * -128) = 2**17: one past the largest 18-bit value
    steps = [os_step(-128, -128, first=(k == 0), last=(k == 7)) for k in range(8)]
    steps += [{"a": {"drain": 1}}]
    out = run_pe(cfg, steps)
    assert out[8 + D] == int(wrap(8 * 16384, 18)) == -2**17


def test_os_first_restarts_and_drain_returns_captured_sum():
    steps = [os_step(3, 4, first=1), os_step(-2, 5, last=1),       # 12 - 10 = 2
             os_step(1, 1, first=1), os_step(-128, -128),           # next tile runs...
             {"a": {"drain": 1}},                                    # ...while 2 drains
             os_step(127, 127, last=1), {"a": {"drain": 1}}]
    out = run_pe(CFG, steps)
    assert out[4 + D] == 2
    assert out[6 + D] == 1 + 16384 + 127 * 127


def test_os_without_drain_passes_partial_sums_through():
    steps = [os_step(3, 4, first=1, last=1, psum=77), {"a": {"os": 1}, "psum": -5}]
    out = run_pe(CFG, steps)
    assert out[D:D + 2] == [77, -5]


def test_unsigned_operands():
    cfg = AccelConfig(name="pe_u", in_signed=False)
    steps = [{"w": weight(255)}, {}, {"a": ws(255, first=1), "psum": 2**31 - 1}]
    out = run_pe(cfg, steps)
    assert out[2 + D] == int(wrap(2**31 - 1 + 255 * 255, 32))
