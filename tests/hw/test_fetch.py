"""Tier 1: the instruction fetcher, against a read engine and memory modelled in Python."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.config import AccelConfig
from hw.fetch import Fetcher
from hw.isa import INSTR_BYTES
from sim.transfers import beats

PROG_ADDR = 0x400
RESTART_ADDR = 0x1000


def run(cfg, prog_len, rng, *, latency=6, stall=0.0, stop_at=None):
    """Fetch ``prog_len`` random words. The modelled read engine answers each descriptor in
    order, ``latency`` cycles after it at the earliest, a stripe per cycle as the fetcher
    takes them. With ``stop_at``, ``stop`` is raised at that cycle until the fetcher is idle,
    then another program of the same length is fetched from ``RESTART_ADDR``. Returns the
    words taken after the last start (with random stalls of ``word.ready``) and the words of
    that program in memory."""
    S = cfg.stripe_bytes
    addr = PROG_ADDR if stop_at is None else RESTART_ADDR
    mem = rng.integers(0, 256, RESTART_ADDR + prog_len * INSTR_BYTES + 2 * S, dtype=np.uint8)
    words = [int.from_bytes(mem[addr + i * INSTR_BYTES:][:INSTR_BYTES].tobytes(), "little")
             for i in range(prog_len)]
    dut = Fetcher(cfg)
    got, descs = [], []
    stopped = []                    # decode takes no word while the fetcher is stopped

    async def start(ctx):
        ctx.set(dut.prog_len, prog_len)
        for cycle, prog_addr in ((0, PROG_ADDR), (stop_at, RESTART_ADDR)):
            if cycle is None:
                break
            if cycle:
                await ctx.tick().repeat(cycle)
                ctx.set(dut.stop, 1)        # held until idle, as the controller does
                stopped.append(True)
                await ctx.tick().repeat(2)
                await ctx.tick().until(dut.idle)
                ctx.set(dut.stop, 0)
                stopped.clear()
                got.clear()
            ctx.set(dut.prog_addr, prog_addr)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)

    async def requests(ctx):
        ctx.set(dut.rd.desc.ready, 1)
        cycle = 0
        while True:
            _, _, valid, desc = await ctx.tick().sample(dut.rd.desc.valid, dut.rd.desc.payload)
            cycle += 1
            if valid:
                descs.append((cycle, {"addr": desc.addr, "rows": desc.rows,
                                      "row_bytes": desc.row_bytes, "stride": desc.stride}))

    async def answers(ctx):
        cycle, served = 0, 0
        while True:
            if served < len(descs):
                asked, desc = descs[served]
                while cycle < asked + latency:
                    await ctx.tick()
                    cycle += 1
                for beat in beats(mem, desc, S):
                    ctx.set(dut.rd.data.payload, beat)
                    ctx.set(dut.rd.data.valid, 1)
                    while True:
                        _, _, ready = await ctx.tick().sample(dut.rd.data.ready)
                        cycle += 1
                        if ready:
                            break
                ctx.set(dut.rd.data.valid, 0)
                ctx.set(dut.rd.status.payload, {"resp": 0, "addr": desc["addr"]})
                ctx.set(dut.rd.status.valid, 1)
                await ctx.tick()
                cycle += 1
                ctx.set(dut.rd.status.valid, 0)
                served += 1
            else:
                await ctx.tick()
                cycle += 1

    async def take(ctx):
        while len(got) < prog_len:
            ready = not stopped and rng.random() >= stall
            ctx.set(dut.word.ready, ready)
            _, _, valid, word = await ctx.tick().sample(dut.word.valid, dut.word.payload)
            if valid and ready:
                got.append(word)
        ctx.set(dut.word.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(start)
    sim.add_testbench(requests, background=True)
    sim.add_testbench(answers, background=True)
    sim.add_testbench(take)
    sim.run_until(1e-6 * 20 * prog_len * (1 + stall) + 1e-3)
    return got, words


# 4 ports of 256 bits: 128-byte stripes of four instructions; 1 port of 256 bits: a stripe is
# one instruction; 2 ports of 64 bits: an instruction spans two stripes
CONFIGS = {
    "four": AccelConfig(name="f4", mem_ports=4, port_width=256, addr_width=20),
    "one": AccelConfig(name="f1", mem_ports=1, port_width=256, addr_width=20),
    "narrow": AccelConfig(name="fn", mem_ports=2, port_width=64, addr_width=20),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_words_in_program_order(name, stall):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(len(name) + int(10 * stall))
    got, words = run(cfg, 77, rng, stall=stall)
    assert [int(w) for w in got] == words


@pytest.mark.parametrize("name", ["four", "narrow"])
@pytest.mark.parametrize("stop_at", [9, 10, 11, 12])
def test_stop_drops_everything_and_the_next_start_fetches_cleanly(name, stop_at):
    """``stop`` while stripes are arriving (in the middle of one at some of these cycles):
    what was fetched and what still arrives is dropped; the next program comes out whole."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(stop_at)
    got, words = run(cfg, 40, rng, stop_at=stop_at)
    assert [int(w) for w in got] == words
