"""Tier 1: the controller (fetch, decode, queues, tokens, errors) with modelled engines."""

import itertools

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.config import AccelConfig
from hw.controller import Controller
from hw.engine import ErrorCode
from hw.isa import (
    HEADER_WIDTH,
    INSTR_BYTES,
    Buffer,
    Dataflow,
    InstructionError,
    LoadLayout,
    Opcode,
    OutType,
    StoreLayout,
    decode,
    encode,
    validate,
)
from sim.transfers import stripes

CONFIGS = {
    # 16-byte stripes: an instruction spans two of them
    "narrow": AccelConfig(name="narrow", rows=4, cols=3, spad_depth=32, acc_depth=16,
                          mem_ports=2, port_width=64, addr_width=20),
    # 64-byte stripes: two instructions in each
    "wide": AccelConfig(name="wide", rows=2, cols=2, spad_depth=16, acc_depth=16,
                        mem_ports=2, port_width=256, addr_width=20),
}

ENGINES = ("load", "compute", "store")
QUEUE = {Opcode.LOAD: "load", Opcode.MATMUL: "compute", Opcode.STORE: "store"}
POPS = {"load": {"pop_next": "cl"}, "compute": {"pop_prev": "lc", "pop_next": "sc"},
        "store": {"pop_prev": "cs"}}
PUSHES = {"load": {"push_next": "lc"}, "compute": {"push_prev": "cl", "push_next": "cs"},
          "store": {"push_prev": "sc"}}


def random_instr(cfg, rng, op):
    if op == Opcode.LOAD:
        return {"opcode": op, "buf": Buffer.SPAD_A, "buf_addr": int(rng.integers(0, 4)),
                "rows": int(rng.integers(1, 5)), "row_bytes": 1, "addr": 64, "stride": 8}
    if op == Opcode.MATMUL:
        return {"opcode": op, "dataflow": Dataflow.WS, "m": int(rng.integers(1, 5)), "k": 1,
                "n": 1}
    return {"opcode": op, "rows": int(rng.integers(1, 5)), "row_bytes": 1, "addr": 256,
            "stride": 4, "out_type": OutType.INT8}


def token_program(cfg, rng, steps):
    """A double-buffered pipeline of LOAD, MATMUL, STORE steps, as the ISA describes."""
    prog = []
    for t in range(steps):
        prog.append({**random_instr(cfg, rng, Opcode.LOAD), "push_next": True,
                     "pop_next": t >= 2})
        prog.append({**random_instr(cfg, rng, Opcode.MATMUL), "pop_prev": True,
                     "push_next": True, "pop_next": t >= 2, "push_prev": t < steps - 2})
        prog.append({**random_instr(cfg, rng, Opcode.STORE), "pop_prev": True,
                     "push_prev": t < steps - 2})
    prog.append({"opcode": Opcode.END})
    return prog


class Bench:
    """Memory and the read engine, modelled in Python, for the controller's fetch port, and
    three engines that take instructions and retire them after random delays."""

    def __init__(self, cfg, words, rng, prog_addr=0x100, fail_at=None, stall=0.3,
                 read_window=None, write_window=None):
        self.cfg, self.rng, self.stall = cfg, rng, stall
        top = (1 << cfg.addr_width) - 1
        self.windows = {"read": read_window or (0, top), "write": write_window or (0, top)}
        self.memory = np.zeros(1 << 14, dtype=np.uint8)
        raw = b"".join(w.to_bytes(INSTR_BYTES, "little") for w in words)
        self.memory[prog_addr:prog_addr + len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        self.prog_addr, self.words, self.fail_at = prog_addr, words, fail_at
        self.dut = Controller(cfg)
        self.accepted = {name: [] for name in ENGINES}
        self.order = []
        self.taken_at, self.retired_at = {}, {}     # instruction index -> cycle
        self.fetches = []           # the fetcher's read descriptors
        self.tokens = dict.fromkeys(("lc", "cl", "cs", "sc"), 0)
        self.result = None

    async def memory_side(self, ctx):
        rd, S = self.dut.rd, self.cfg.stripe_bytes
        while True:
            ctx.set(rd.desc.ready, 1)
            valid = False
            while not valid:
                _, _, valid, payload = await ctx.tick().sample(rd.desc.valid, rd.desc.payload)
            desc = {k: int(getattr(payload, k)) for k in ("addr", "rows", "row_bytes", "stride")}
            self.fetches.append(desc)
            ctx.set(rd.desc.ready, 0)
            failed = self.fail_at is not None and \
                desc["addr"] <= self.fail_at < desc["addr"] + desc["row_bytes"]
            for s, lo, hi, last, end in stripes(desc, S):
                if failed and s * S + lo >= self.fail_at:
                    break
                raw = self.memory[s * S:(s + 1) * S].tobytes()
                ctx.set(rd.data.payload, {"data": int.from_bytes(raw, "little"),
                                          "mask": (1 << hi) - (1 << lo), "last": last,
                                          "end": end})
                ctx.set(rd.data.valid, 1)
                await ctx.tick().until(rd.data.ready)
            ctx.set(rd.data.valid, 0)
            ctx.set(rd.status.payload, {"resp": 2 if failed else 0,
                                        "addr": self.fail_at if failed else 0})
            ctx.set(rd.status.valid, 1)
            await ctx.tick().until(rd.status.ready)
            ctx.set(rd.status.valid, 0)

    def engine(self, name):
        async def run(ctx):
            port = getattr(self.dut, name)
            waiting = []
            for cycle in itertools.count():
                ready = self.rng.random() >= self.stall
                ctx.set(port.instr.ready, ready)
                ctx.set(port.busy, bool(waiting))
                retire = waiting and waiting[0][0] <= 0
                if retire:
                    _, flags, index = waiting.pop(0)
                    self.retired_at[index] = cycle
                    for bit, ch in PUSHES[name].items():
                        self.tokens[ch] += flags[bit]
                    ctx.set(port.retire.payload, {k: flags[k] for k in
                                                  ("push_prev", "push_next")})
                ctx.set(port.retire.valid, bool(retire))
                _, _, valid, payload = await ctx.tick().sample(port.instr.valid,
                                                               port.instr.payload)
                for w in waiting:
                    w[0] -= 1
                if valid and ready:
                    header = {k: int(getattr(payload.header, k))
                              for k in ("pop_prev", "pop_next", "push_prev", "push_next")}
                    for bit, ch in POPS[name].items():
                        if header[bit]:
                            assert self.tokens[ch] > 0, f"{name} popped empty channel {ch}"
                            self.tokens[ch] -= 1
                    index = int(payload.index)
                    self.accepted[name].append(index)
                    self.order.append(index)
                    self.taken_at[index] = cycle
                    waiting.append([int(self.rng.integers(0, 6)), header, index])
        return run

    async def control(self, ctx):
        dut = self.dut
        ctx.set(dut.prog_addr, self.prog_addr)
        ctx.set(dut.prog_len, len(self.words))
        for side, (base, limit) in self.windows.items():
            ctx.set(getattr(dut, f"{side}_base"), base)
            ctx.set(getattr(dut, f"{side}_limit"), limit)
        await ctx.tick()
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for cycle in range(20000):
            _, _, done, error, busy = await ctx.tick().sample(dut.done, dut.error, dut.busy)
            if done or error:
                self.result = {"done": done, "error": error, "cycles": cycle,
                               "code": ErrorCode(ctx.get(dut.error_code)),
                               "index": ctx.get(dut.error_index),
                               "addr": ctx.get(dut.error_addr)}
                await ctx.tick()
                assert not ctx.get(dut.busy)
                return
        raise AssertionError("the controller never finished")

    def run(self):
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        sim.add_testbench(self.memory_side, background=True)
        for name in ENGINES:
            sim.add_testbench(self.engine(name), background=True)
        sim.add_testbench(self.control)
        sim.run()
        return self.result


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_token_pipeline(name):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(len(name))
    prog = token_program(cfg, rng, 6)
    words = [encode(cfg, f) for f in prog]
    bench = Bench(cfg, words, rng)
    result = bench.run()
    assert result["done"] and not result["error"]
    for opcode, queue in QUEUE.items():
        want = [i for i, f in enumerate(prog) if f["opcode"] == opcode]
        assert bench.accepted[queue] == want
    assert all(v == 0 for v in bench.tokens.values())


@pytest.mark.parametrize("before", [(Opcode.LOAD, Opcode.STORE), (Opcode.LOAD,),
                                    (Opcode.STORE,), (Opcode.MATMUL,)])
@pytest.mark.parametrize("name, seed", [(n, s) for n in sorted(CONFIGS) for s in range(3)])
def test_fence_waits_for_every_queue(before, name, seed):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed)
    after = Opcode.LOAD if before == (Opcode.MATMUL,) else Opcode.MATMUL
    prog = ([random_instr(cfg, rng, op) for op in before] + [{"opcode": Opcode.FENCE}] +
            [random_instr(cfg, rng, after), {"opcode": Opcode.END}])
    bench = Bench(cfg, [encode(cfg, f) for f in prog], rng)
    assert bench.run()["done"]
    # the instruction after the FENCE is taken only after every earlier one retired
    n = len(before)
    assert bench.order[-1] == n + 1 and sorted(bench.order[:n]) == list(range(n))
    assert bench.taken_at[n + 1] > max(bench.retired_at[i] for i in range(n))


def _refusal(cfg, word, **windows):
    """The error code the ISA module gives ``word``, or None if it accepts it."""
    try:
        validate(cfg, decode(cfg, word), **windows)
        return None
    except InstructionError as e:
        return e.code


@pytest.mark.parametrize("seed", range(4))
def test_decode_matches_validate(seed):
    """Random mutations of legal words, under random protection windows: the controller
    dispatches exactly the words the ISA module accepts and stops at the first other one
    with the code the ISA module gives it."""
    cfg = CONFIGS["narrow"]
    rng = np.random.default_rng(seed)
    # LOADs read from 64 on, STOREs write from 256 on, the program lies at 0x100 .. 0x41f
    windows = {"read_window": (int(rng.integers(0, 80)), int(rng.integers(0x420, 1 << 14))),
               "write_window": (int(rng.integers(200, 260)), int(rng.integers(260, 1 << 14)))}
    words, codes = [], []
    while len(words) < 24:
        op = Opcode(int(rng.integers(1, 4)))
        word = encode(cfg, random_instr(cfg, rng, op))
        for _ in range(int(rng.integers(0, 3))):
            # flip a bit in the header or the body's first fields, or far above
            bit = int(rng.choice([rng.integers(0, 80), rng.integers(80, 256)]))
            word ^= 1 << bit
        words.append(word)
        codes.append(_refusal(cfg, word, **windows))
    words.append(encode(cfg, {"opcode": Opcode.END}))
    bench = Bench(cfg, words, rng, stall=0.0, **windows)
    result = bench.run()
    refused = [i for i, c in enumerate(codes) if c is not None]
    if not refused:
        assert result["done"] and not result["error"]
        assert sorted(bench.order) == list(range(len(words) - 1))
    else:
        first = refused[0]
        assert result["error"] and result["code"] == codes[first]
        assert result["index"] == first
        assert result["addr"] == bench.prog_addr + first * INSTR_BYTES
        assert sorted(bench.order) == list(range(first))


def with_field(word, body, name, value):
    """``word`` with field ``name`` of its body layout set to ``value``, unchecked."""
    field = body[name]
    mask = ((1 << field.width) - 1) << (HEADER_WIDTH + field.offset)
    return (word & ~mask) | (value << (HEADER_WIDTH + field.offset))


def test_every_refusal_code_is_reachable():
    """One word per refusal code, each alone before an END."""
    cfg = CONFIGS["narrow"]
    rng = np.random.default_rng(9)
    load = encode(cfg, {**random_instr(cfg, rng, Opcode.LOAD), "rows": 2, "buf_addr": 0})
    store = encode(cfg, {**random_instr(cfg, rng, Opcode.STORE), "rows": 2})
    cases = {
        ErrorCode.ILLEGAL_INSTRUCTION: load | 1 << 250,
        ErrorCode.BAD_DIMENSION: with_field(load, LoadLayout(cfg), "rows", 0),
        ErrorCode.BUFFER_RANGE: with_field(load, LoadLayout(cfg), "buf_addr",
                                           cfg.spad_depth - 1),
        ErrorCode.READ_PROTECTION: with_field(load, LoadLayout(cfg), "addr", 0x80),
        ErrorCode.WRITE_PROTECTION: with_field(store, StoreLayout(cfg), "stride", 0x100),
    }
    windows = {"read_window": (0, 0x7F), "write_window": (0x100, 0x1FF)}
    for code, word in cases.items():
        assert _refusal(cfg, word, **windows) == code, code
        words = [word, encode(cfg, {"opcode": Opcode.END})]
        bench = Bench(cfg, words, rng, prog_addr=0, read_window=(0, 0x7F),
                      write_window=(0x100, 0x1FF))
        result = bench.run()
        assert (result["code"], result["index"], result["addr"]) == (code, 0, 0), code
        assert bench.order == []


def test_program_outside_the_read_window():
    cfg = CONFIGS["wide"]
    rng = np.random.default_rng(4)
    words = [encode(cfg, {"opcode": Opcode.END})] * 3
    for window in ((0x101, 0xFFFF), (0, 0x100 + 3 * INSTR_BYTES - 2)):
        bench = Bench(cfg, words, rng, read_window=window)
        result = bench.run()
        assert (result["code"], result["addr"]) == (ErrorCode.READ_PROTECTION, 0x100)
        assert bench.fetches == []      # not a byte of it is read
    assert Bench(cfg, words, rng, read_window=(0x100, 0x100 + 3 * INSTR_BYTES - 1)).run()["done"]


def test_token_deadlock_is_detected():
    cfg = CONFIGS["narrow"]
    rng = np.random.default_rng(6)
    # the MATMUL waits for a LOAD token nobody gives; the STORE after it waits for the MATMUL
    prog = [random_instr(cfg, rng, Opcode.LOAD),
            {**random_instr(cfg, rng, Opcode.MATMUL), "pop_prev": True, "push_next": True},
            {**random_instr(cfg, rng, Opcode.STORE), "pop_prev": True},
            {"opcode": Opcode.END}]
    result = Bench(cfg, [encode(cfg, f) for f in prog], rng).run()
    assert (result["code"], result["index"]) == (ErrorCode.TOKEN_DEADLOCK, 1)
    assert result["addr"] == 0x100 + INSTR_BYTES


def test_fetch_error_and_bad_programs():
    cfg = CONFIGS["wide"]
    rng = np.random.default_rng(5)
    prog = [random_instr(cfg, rng, Opcode.LOAD) for _ in range(12)] + [{"opcode": Opcode.END}]
    words = [encode(cfg, f) for f in prog]
    fail = 0x100 + 9 * INSTR_BYTES
    result = Bench(cfg, words, rng, fail_at=fail).run()
    assert result["error"] and result["code"] == ErrorCode.FETCH_ERROR
    assert result["index"] == 9 and result["addr"] == fail
    # no END within PROG_LEN
    result = Bench(cfg, words[:-1], rng).run()
    assert result["code"] == ErrorCode.PROGRAM_OVERRUN and result["index"] == len(words) - 1
    # a misaligned program
    bench = Bench(cfg, words, rng, prog_addr=0x110)
    result = bench.run()
    assert result["code"] == ErrorCode.BAD_PROGRAM and result["addr"] == 0x110
    assert bench.fetches == []
