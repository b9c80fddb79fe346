"""Tier 1: the block-RAM AXI4 subordinate against a numpy model, with random bursts, IDs, strobes
and random valid gaps and ready backpressure on all five channels of every port."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.axi import Burst, Resp
from hw.axi_ram import AXI4RAM

DATA_WIDTH, ADDR_WIDTH, ID_WIDTH = 32, 12, 3
W = DATA_WIDTH // 8


def make_ops(rng, lo, hi, phases, per_phase, depth):
    """Alternating write and read phases of random bursts on words [lo, hi). Each op is a dict;
    some run past ``depth`` (DECERR beats) and a few have a bad size or type (SLVERR)."""
    ops = []
    for phase in range(phases):
        kind = "w" if phase % 2 == 0 else "r"
        for _ in range(per_phase):
            beats = int(rng.integers(1, 17)) if rng.random() < 0.8 else int(rng.integers(17, 40))
            start = int(rng.integers(lo, max(lo + 1, hi - beats + 1)))
            op = {"kind": kind, "phase": phase, "addr": start * W, "beats": beats,
                  "id": int(rng.integers(0, 1 << ID_WIDTH)), "size": 2, "burst": Burst.INCR}
            if rng.random() < 0.06:
                op["size"] = 1
            elif rng.random() < 0.06:
                op["burst"] = Burst.FIXED
            if kind == "w":
                op["data"] = [int(x) for x in rng.integers(0, 1 << 32, beats, dtype=np.uint64)]
                op["strb"] = [int(x) for x in rng.integers(0, 16, beats)]
            ops.append(op)
    # a final read of the whole region checks every word
    for start in range(lo, hi, 32):
        ops.append({"kind": "r", "phase": phases, "addr": start * W,
                    "beats": min(32, hi - start), "id": 0, "size": 2, "burst": Burst.INCR})
    return ops


def bad(op):
    return op["size"] != 2 or op["burst"] != Burst.INCR


class Manager:
    """Five testbench coroutines driving one port through ``ops``: a read phase starts once
    every earlier write has its response, a write phase once every earlier read is done."""

    def __init__(self, bus, ops, model, depth, rng, stall):
        self.bus, self.model, self.depth, self.rng, self.stall = bus, model, depth, rng, stall
        self.writes = [op for op in ops if op["kind"] == "w"]
        self.reads = [op for op in ops if op["kind"] == "r"]
        self.w_done = self.r_done = 0
        self.beat_cycles = []          # per read burst, the cycles its beats were taken in

    def _before(self, ops, phase):
        return sum(op["phase"] < phase for op in ops)

    async def _idle(self, ctx, valid):
        while self.rng.random() < self.stall:
            ctx.set(valid, 0)
            await ctx.tick()

    async def aw(self, ctx):
        b = self.bus
        for op in self.writes:
            while self.r_done < self._before(self.reads, op["phase"]):
                await ctx.tick()
            await self._idle(ctx, b.awvalid)
            ctx.set(b.awaddr, op["addr"])
            ctx.set(b.awlen, op["beats"] - 1)
            ctx.set(b.awsize, op["size"])
            ctx.set(b.awburst, op["burst"])
            ctx.set(b.awid, op["id"])
            ctx.set(b.awvalid, 1)
            await ctx.tick().until(b.awready)
            ctx.set(b.awvalid, 0)

    async def w(self, ctx):
        b = self.bus
        for op in self.writes:
            for i, (data, strb) in enumerate(zip(op["data"], op["strb"], strict=True)):
                await self._idle(ctx, b.wvalid)
                ctx.set(b.wdata, data)
                ctx.set(b.wstrb, strb)
                ctx.set(b.wlast, i == op["beats"] - 1)
                ctx.set(b.wvalid, 1)
                await ctx.tick().until(b.wready)
        ctx.set(b.wvalid, 0)

    async def b(self, ctx):
        b = self.bus
        for op in self.writes:
            while True:
                ready = self.rng.random() >= self.stall
                ctx.set(b.bready, ready)
                _, _, valid, bid, bresp = await ctx.tick().sample(b.bvalid, b.bid, b.bresp)
                if valid and ready:
                    break
            ctx.set(b.bready, 0)
            words = range(op["addr"] // W, op["addr"] // W + op["beats"])
            if bad(op):
                expect = Resp.SLVERR
            else:
                expect = Resp.DECERR if words[-1] >= self.depth else Resp.OKAY
                for word, data, strb in zip(words, op["data"], op["strb"], strict=True):
                    if word < self.depth:
                        for k in range(W):
                            if strb >> k & 1:
                                self.model[word * W + k] = data >> 8 * k & 0xFF
            assert (bid, bresp) == (op["id"], expect), op
            self.w_done += 1

    async def ar(self, ctx):
        b = self.bus
        for op in self.reads:
            while self.w_done < self._before(self.writes, op["phase"] + 1):
                await ctx.tick()
            await self._idle(ctx, b.arvalid)
            ctx.set(b.araddr, op["addr"])
            ctx.set(b.arlen, op["beats"] - 1)
            ctx.set(b.arsize, op["size"])
            ctx.set(b.arburst, op["burst"])
            ctx.set(b.arid, op["id"])
            ctx.set(b.arvalid, 1)
            await ctx.tick().until(b.arready)
            ctx.set(b.arvalid, 0)

    async def r(self, ctx):
        b = self.bus
        cycle = 0
        for op in self.reads:
            cycles = []
            for i in range(op["beats"]):
                while True:
                    ready = self.rng.random() >= self.stall
                    ctx.set(b.rready, ready)
                    _, _, valid, rid, data, resp, last = await ctx.tick().sample(
                        b.rvalid, b.rid, b.rdata, b.rresp, b.rlast)
                    cycle += 1
                    if valid and ready:
                        break
                cycles.append(cycle)
                word = op["addr"] // W + i
                if bad(op):
                    expect = (Resp.SLVERR, 0)
                elif word >= self.depth:
                    expect = (Resp.DECERR, 0)
                else:
                    expect = (Resp.OKAY, int.from_bytes(
                        self.model[word * W:word * W + W].tobytes(), "little"))
                assert (rid, resp, data, last) == (op["id"], *expect, i == op["beats"] - 1), \
                    (op, i)
            ctx.set(b.rready, 0)
            self.beat_cycles.append(cycles)
            self.r_done += 1


def run(depth, ports, stall, seed, phases=6, per_phase=6, init=None):
    rng = np.random.default_rng(seed)
    init = init if init is not None else [int(x) for x in rng.integers(0, 1 << 32, depth,
                                                                          dtype=np.uint64)]
    dut = AXI4RAM(data_width=DATA_WIDTH, addr_width=ADDR_WIDTH, id_width=ID_WIDTH,
                  depth=depth, ports=ports, init=init)
    model = np.frombuffer(b"".join(x.to_bytes(W, "little") for x in init), np.uint8).copy()
    # port p owns a slice of the words; the last slice runs past the end of the memory
    edges = [depth * p // ports for p in range(ports)] + [depth + 24]
    managers = [Manager(getattr(dut, f"s_axi{p}"),
                        make_ops(rng, edges[p], edges[p + 1], phases, per_phase, depth),
                        model, depth, np.random.default_rng(seed * 10 + p), stall)
                for p in range(ports)]
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    finished = []
    for mgr in managers:
        for name in ("aw", "w", "ar"):
            sim.add_testbench(getattr(mgr, name), background=True)

        for coro in (mgr.b, mgr.r):
            async def done(ctx, coro=coro):
                await coro(ctx)
                finished.append(coro)
            sim.add_testbench(done)

    async def watchdog(ctx):
        for _ in range(50_000):
            await ctx.tick()
        raise AssertionError(f"hung: {len(finished)} of {2 * ports} response checkers done")
    sim.add_testbench(watchdog, background=True)
    sim.run()
    return managers


@pytest.mark.parametrize("ports", [1, 2, 3])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_random_bursts(ports, stall):
    run(depth=100, ports=ports, stall=stall, seed=ports * 7 + int(stall * 10))


def test_bursts_stream_one_beat_per_cycle():
    mgrs = run(depth=64, ports=1, stall=0.0, seed=3, phases=2, per_phase=4)
    for cycles in mgrs[0].beat_cycles:
        assert cycles == list(range(cycles[0], cycles[0] + len(cycles)))


@pytest.mark.parametrize("kwargs, message", [
    ({"depth": 0}, "depth must be a positive integer, not 0"),
    ({"depth": 1025}, "depth must be at most 1024 words"),
    ({"ports": 9}, "ports must be an integer from 1 to 8, not 9"),
    ({"data_width": 24}, "data_width must be"),
])
def test_bad_parameters(kwargs, message):
    args = dict(data_width=DATA_WIDTH, addr_width=ADDR_WIDTH, id_width=ID_WIDTH, depth=16)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        AXI4RAM(**args)
