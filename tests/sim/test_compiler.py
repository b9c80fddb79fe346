"""The tiling compiler: compiled GEMMs and conv2d layers run on the ISA model and compared
bit-exactly with numpy, the token protocol, the layouts and the schedule's statistics."""

import dataclasses
import random

import numpy as np
import pytest

from hw.config import PRESETS
from hw.isa import Buffer, Dataflow, Opcode, OutType, Queue, buffer_row_bytes
from sim.compiler import (
    ALIGN,
    PostOp,
    Tiling,
    choose_tiling,
    compile_conv2d,
    compile_gemm,
    gemm_at,
    im2col,
    plan_memory,
)
from sim.isa_model import IsaModel, matmul_cycles
from sim.reference import conv2d_reference

WS, OS = Dataflow.WS, Dataflow.OS
OUT_RANGE = {OutType.INT8: (-128, 127), OutType.INT16: (-32768, 32767),
             OutType.INT32: (-2**31, 2**31 - 1)}


# Independent reference ------------------------------------------------------------------------

def reference(A, B, bias=None, relu=False, scale=1, shift=0, out_type=OutType.INT32):
    """``post(A @ B + bias)`` in Python integers, step by step from the ISA text."""
    lo, hi = OUT_RANGE[out_type]
    acc = np.asarray(A, dtype=object).dot(np.asarray(B, dtype=object))
    M, N = acc.shape
    out = np.zeros((M, N), dtype=np.int64)
    for i in range(M):
        for j in range(N):
            x = (int(acc[i, j]) + 2**31) % 2**32 - 2**31
            if bias is not None:
                x = (x + int(bias[j]) + 2**31) % 2**32 - 2**31
            if relu:
                x = max(x, 0)
            p = x * int(scale[j] if np.ndim(scale) else scale)
            q = (abs(p) + (2**(shift - 1) if shift else 0)) >> shift
            out[i, j] = min(max(q if p >= 0 else -q, lo), hi)
    return out


# Running compiled programs --------------------------------------------------------------------

def memory_for(gemm):
    end = max(addr + size for addr, size in gemm.regions().values())
    return np.zeros(end, dtype=np.uint8)


def run(gemm, A, B, bias=None, scales=None):
    """Check the tokens, run the program on the ISA model, return C and the model's stats."""
    assert gemm.program.check_tokens() == {
        "load->compute": 0, "compute->load": 0, "compute->store": 0, "store->compute": 0}
    model = IsaModel(gemm.cfg, memory_for(gemm))
    for addr, data in gemm.inputs(A, B, bias, scales):
        model.write(addr, data)
    model.write(gemm.prog_addr, gemm.program_bytes())
    stats = model.run(gemm.prog_addr, gemm.prog_len)
    addr, size = gemm.output_region()
    return gemm.unpack_output(model.read(addr, size)), stats


def operands(rng, M, K, N):
    return (rng.integers(-128, 128, size=(M, K)), rng.integers(-128, 128, size=(K, N)))


QUEUE_OF = {Opcode.LOAD: Queue.LOAD, Opcode.MATMUL: Queue.COMPUTE, Opcode.STORE: Queue.STORE}
CHANNELS = {  # (queue, token field) -> channel
    (Queue.LOAD, "pop_next"): "c>l", (Queue.LOAD, "push_next"): "l>c",
    (Queue.COMPUTE, "pop_prev"): "l>c", (Queue.COMPUTE, "pop_next"): "s>c",
    (Queue.COMPUTE, "push_prev"): "c>l", (Queue.COMPUTE, "push_next"): "c>s",
    (Queue.STORE, "pop_prev"): "c>s", (Queue.STORE, "push_prev"): "s>c",
}


def run_interleaved(cfg, instrs, memory, order, rng):
    """Run ``instrs`` with the three queues interleaved as the tokens allow: each step runs
    the head of a ready queue, the first ready one in ``order`` (or a random one if
    ``order`` is None). Returns the model."""
    model = IsaModel(cfg, memory)
    tokens = dict.fromkeys(CHANNELS.values(), 0)
    queues = {q: [] for q in Queue}

    def ready(q):
        head = queues[q][0][1]
        return all(tokens[CHANNELS[q, f]] for f in ("pop_prev", "pop_next") if head.get(f))

    def drain():
        while any(queues.values()):
            candidates = [q for q in Queue if queues[q] and ready(q)]
            assert candidates, "deadlock"
            q = rng.choice(candidates) if order is None else \
                next(q for q in order if q in candidates)
            index, instr = queues[q].pop(0)
            for field in ("pop_prev", "pop_next"):
                if instr.get(field):
                    tokens[CHANNELS[q, field]] -= 1
            model.execute(instr, index)
            for field in ("push_prev", "push_next"):
                if instr.get(field):
                    tokens[CHANNELS[q, field]] += 1

    for index, instr in enumerate(instrs):
        queue = QUEUE_OF.get(instr["opcode"])
        if queue is None:
            drain()
            model.execute(instr, index)
        else:
            queues[queue].append((index, instr))
    drain()
    return model


# GEMMs on the model ---------------------------------------------------------------------------

POSTS = [
    dict(bias=False, per_column=False, post=PostOp()),
    dict(bias=True, per_column=False, post=PostOp(OutType.INT8, relu=True, scale=3, shift=9)),
    dict(bias=True, per_column=True, post=PostOp(OutType.INT16, shift=7)),
    dict(bias=False, per_column=True, post=PostOp(OutType.INT8, relu=True, shift=14)),
    dict(bias=True, per_column=False, post=PostOp(OutType.INT32, relu=True)),
    dict(bias=False, per_column=False, post=PostOp(OutType.INT16, scale=65535, shift=14)),
]

SHAPES = {
    "tiny": [(1, 1, 1), (3, 5, 7), (7, 2, 3), (13, 3, 2), (2, 13, 5)],
    "default": [(1, 1, 1), (7, 13, 31), (31, 17, 9), (40, 70, 23), (1, 37, 13), (64, 8, 8)],
    "large": [(1, 300, 1), (31, 37, 50), (13, 16, 17), (100, 33, 7)],
}
CASES = [(preset, shape, dataflow, i % len(POSTS))
         for preset, shapes in SHAPES.items()
         for i, shape in enumerate(shapes)
         for dataflow in (WS, OS)]


def random_tables(rng, N, bias, per_column):
    return (rng.integers(-20000, 20000, size=N) if bias else None,
            rng.integers(0, 1 << 16, size=N) if per_column else None)


@pytest.mark.parametrize("preset, shape, dataflow, post_index", CASES)
def test_random_gemm(preset, shape, dataflow, post_index):
    cfg = PRESETS[preset]
    M, K, N = shape
    opts = POSTS[(post_index + dataflow.value) % len(POSTS)]
    rng = np.random.default_rng([M, K, N, dataflow.value, post_index])
    A, B = operands(rng, M, K, N)
    bias, scales = random_tables(rng, N, opts["bias"], opts["per_column"])
    gemm = gemm_at(cfg, M, K, N, base=0x200, dataflow=dataflow, **opts)
    C, stats = run(gemm, A, B, bias, scales)
    post = opts["post"]
    expected = reference(A, B, bias, post.relu, post.scale if scales is None else scales,
                         post.shift, post.out_type)
    assert C.dtype == {OutType.INT8: np.int8, OutType.INT16: np.int16,
                       OutType.INT32: np.int32}[post.out_type]
    assert C.shape == (M, N)
    assert C.tolist() == expected.tolist()
    assert stats.macs == M * K * N                     # no work on padding
    assert stats.store_rows == M * -(-N // cfg.cols)   # each output row stored once per block


@pytest.mark.parametrize("index, post", list(enumerate(POSTS)))
def test_post_options_on_wider_values(index, post):
    """Bias and scales large enough to reach every saturation limit."""
    cfg = PRESETS["default"]
    rng = np.random.default_rng(100 + index)
    M, K, N = 19, 40, 21
    A, B = operands(rng, M, K, N)
    bias = rng.integers(-2**31, 2**31, size=N) if post["bias"] else None
    scales = rng.integers(0, 1 << 16, size=N) if post["per_column"] else None
    gemm = gemm_at(cfg, M, K, N, **post)
    C, _ = run(gemm, A, B, bias, scales)
    p = post["post"]
    expected = reference(A, B, bias, p.relu, p.scale if scales is None else scales, p.shift,
                         p.out_type)
    assert C.tolist() == expected.tolist()
    if p.out_type != OutType.INT32:
        lo, hi = OUT_RANGE[p.out_type]
        assert (expected == hi).any() or (expected == lo).any() or p.relu


def test_accumulator_wraps_like_the_hardware():
    cfg = PRESETS["tiny"]
    M, K, N = 3, 40, 2
    A = np.full((M, K), -128)
    B = np.full((K, N), -128)
    bias = np.array([2**31 - 1, -2**31])
    gemm = gemm_at(cfg, M, K, N, bias=True)
    C, _ = run(gemm, A, B, bias)
    total = 40 * 128 * 128
    assert C.tolist() == [[(2**31 - 1 + total + 2**31) % 2**32 - 2**31,
                           (-2**31 + total + 2**31) % 2**32 - 2**31]] * 3
    assert C[0, 0] < 0


@pytest.mark.parametrize("dataflow", [WS, OS])
def test_forced_small_tiling_with_phases_and_fences(dataflow):
    """Many output blocks, column groups, phases (FENCE) and OS K chunks."""
    cfg = PRESETS["default"]
    M, K, N = 45, 29, 37
    tiling = choose_tiling(cfg, M, K, N, dataflow=dataflow, bias=True, per_column=True,
                           max_block_rows=8 if dataflow == OS else 10, max_group=2,
                           max_phase=3)
    if dataflow == OS:
        tiling = Tiling(OS, tiling.block_rows, tiling.group, tiling.phase, 10)
    rng = np.random.default_rng(7)
    A, B = operands(rng, M, K, N)
    bias, scales = random_tables(rng, N, True, True)
    post = PostOp(OutType.INT16, relu=True, shift=6)
    gemm = gemm_at(cfg, M, K, N, bias=True, per_column=True, post=post, dataflow=dataflow,
                   tiling=tiling)
    stats = gemm.stats()
    assert stats["fences"] == 1                  # 5 column blocks in phases of 3 and 2
    assert stats["store_bytes"] == M * N * 2     # every INT16 result written once
    ops = [i["opcode"] for i in gemm.program.instructions]
    assert ops[-1] == Opcode.END
    C, _ = run(gemm, A, B, bias, scales)
    assert C.tolist() == reference(A, B, bias, True, scales, 6, OutType.INT16).tolist()
    matmuls = [i for i in gemm.program.instructions if i["opcode"] == Opcode.MATMUL]
    if dataflow == OS:
        assert {m["k"] for m in matmuls} == {10, 9}          # 29 = 10 + 10 + 9
        assert any(m["accumulate"] for m in matmuls)
        assert max(m["m"] for m in matmuls) == cfg.rows
    else:
        assert max(m["m"] for m in matmuls) <= 10


def test_os_reduction_longer_than_half_the_scratchpad():
    cfg = PRESETS["tiny"]                # 32 rows in half a bank
    M, K, N = 3, 75, 3
    rng = np.random.default_rng(8)
    A, B = operands(rng, M, K, N)
    gemm = gemm_at(cfg, M, K, N, dataflow=OS, post=PostOp(OutType.INT32))
    matmuls = [i for i in gemm.program.instructions if i["opcode"] == Opcode.MATMUL]
    assert max(m["k"] for m in matmuls) <= cfg.spad_depth // 2
    assert sum(m["accumulate"] for m in matmuls) > 0
    C, _ = run(gemm, A, B)
    assert C.tolist() == (A @ B).tolist()


@pytest.mark.parametrize("dataflow", [WS, OS])
@pytest.mark.parametrize("order", [
    (Queue.LOAD, Queue.STORE, Queue.COMPUTE),      # loads and stores as early as allowed
    (Queue.COMPUTE, Queue.LOAD, Queue.STORE),      # compute runs ahead of the stores
    None,
])
def test_any_interleaving_the_tokens_allow_computes_the_same(dataflow, order):
    cfg = PRESETS["default"]
    M, K, N = 50, 21, 27
    tiling = choose_tiling(cfg, M, K, N, dataflow=dataflow, bias=True,
                           max_block_rows=8 if dataflow == OS else 12, max_group=2)
    gemm = gemm_at(cfg, M, K, N, bias=True, post=PostOp(OutType.INT8, shift=5),
                   dataflow=dataflow, tiling=tiling)
    rng = np.random.default_rng(9)
    A, B = operands(rng, M, K, N)
    bias = rng.integers(-5000, 5000, size=N)
    memory = memory_for(gemm)
    for addr, data in gemm.inputs(A, B, bias):
        memory[addr:addr + len(data)] = np.frombuffer(data, np.uint8)
    model = run_interleaved(cfg, gemm.program.instructions, memory, order, random.Random(1))
    addr, size = gemm.output_region()
    C = gemm.unpack_output(model.read(addr, size))
    assert C.tolist() == reference(A, B, bias, False, 1, 5, OutType.INT8).tolist()


@pytest.mark.parametrize("drop, order", [
    ("buffer free", (Queue.LOAD, Queue.STORE, Queue.COMPUTE)),
    ("accumulator free", (Queue.COMPUTE, Queue.LOAD, Queue.STORE)),
])
def test_interleaving_finds_a_missing_token(drop, order):
    """Without the buffer-free (or accumulator-free) pops, a run that the remaining tokens
    allow overwrites data still in use: the tokens the compiler emits are all needed."""
    cfg = PRESETS["default"]
    M, K, N = 50, 21, 27
    tiling = choose_tiling(cfg, M, K, N, max_block_rows=12, max_group=2)
    gemm = gemm_at(cfg, M, K, N, tiling=tiling)
    rng = np.random.default_rng(10)
    A, B = operands(rng, M, K, N)
    memory = memory_for(gemm)
    for addr, data in gemm.inputs(A, B):
        memory[addr:addr + len(data)] = np.frombuffer(data, np.uint8)
    instrs = gemm.program.instructions
    field, opcode = ("pop_next", Opcode.LOAD) if drop == "buffer free" else \
        ("pop_next", Opcode.MATMUL)
    dropped = 0
    for instr in instrs:
        if instr["opcode"] == opcode and instr[field]:
            instr[field] = False
            dropped += 1
    assert dropped > 0
    model = run_interleaved(cfg, instrs, memory, order, random.Random(2))
    addr, size = gemm.output_region()
    assert gemm.unpack_output(model.read(addr, size)).tolist() != (A @ B).tolist()


def test_two_layer_quantized_mlp():
    cfg = PRESETS["default"]
    rng = np.random.default_rng(11)
    batch, d_in, hidden, d_out = 24, 50, 37, 10
    x = rng.integers(-128, 128, size=(batch, d_in))
    w1 = rng.integers(-128, 128, size=(d_in, hidden))
    b1 = rng.integers(-3000, 3000, size=hidden)
    w2 = rng.integers(-128, 128, size=(hidden, d_out))
    b2 = rng.integers(-3000, 3000, size=d_out)
    s2 = rng.integers(1000, 5000, size=d_out)
    post1 = PostOp(OutType.INT8, relu=True, scale=5, shift=12)
    post2 = PostOp(OutType.INT16, shift=8)
    layer1 = gemm_at(cfg, batch, d_in, hidden, base=0x10000, bias=True, post=post1)
    layer2 = gemm_at(cfg, batch, hidden, d_out, base=0x40000, bias=True, per_column=True,
                     post=post2, dataflow=OS)
    h, _ = run(layer1, x, w1, b1)
    assert h.dtype == np.int8
    y, _ = run(layer2, h, w2, b2, s2)
    h_ref = reference(x, w1, b1, True, 5, 12, OutType.INT8)
    assert (h_ref == 0).any() and (h_ref > 0).any()     # ReLU acts, some values survive
    assert h.tolist() == h_ref.tolist()
    assert y.tolist() == reference(h_ref, w2, b2, False, s2, 8, OutType.INT16).tolist()


def test_conv2d_stride_2_padding_1():
    cfg = PRESETS["default"]
    rng = np.random.default_rng(12)
    x = rng.integers(-128, 128, size=(2, 9, 10, 3))
    w = rng.integers(-128, 128, size=(3, 3, 3, 11))
    bias = rng.integers(-20000, 20000, size=11)
    post = PostOp(OutType.INT8, relu=True, shift=8)
    conv = compile_conv2d(cfg, x.shape, w.shape, stride=2, padding=1, bias=True, post=post,
                          base=0x1000)
    assert conv.output_shape == (2, 5, 5, 11)
    memory = np.zeros(max(a + n for a, n in conv.regions().values()), dtype=np.uint8)
    model = IsaModel(cfg, memory)
    for addr, data in conv.inputs(x, w, bias):
        model.write(addr, data)
    model.write(conv.prog_addr, conv.program_bytes())
    model.run(conv.prog_addr, conv.prog_len)
    assert conv.gemm.program.check_tokens()["compute->store"] == 0
    got = conv.unpack_output(model.read(*conv.output_region()))
    acc = conv2d_reference(x, w, 2, 1) + bias
    expected = np.clip((np.maximum(acc, 0) + 128) >> 8, -128, 127)
    assert got.shape == (2, 5, 5, 11)
    assert got.tolist() == expected.tolist()


def test_im2col_against_direct_patches():
    x = np.arange(2 * 4 * 5 * 3).reshape(2, 4, 5, 3)
    cols = im2col(x, 2, 3, stride=(2, 1), padding=(1, 0))
    # OH = (4 + 2 - 2) // 2 + 1 = 3, OW = (5 - 3) // 1 + 1 = 3
    assert cols.shape == (2 * 3 * 3, 2 * 3 * 3)
    for n in range(2):
        for oh in range(3):
            for ow in range(3):
                for i in range(2):
                    for j in range(3):
                        for c in range(3):
                            h, w = oh * 2 + i - 1, ow + j
                            value = x[n, h, w, c] if 0 <= h < 4 else 0
                            assert cols[(n * 3 + oh) * 3 + ow, (i * 3 + j) * 3 + c] == value
    assert (cols[:3, :9] == 0).all()             # the padded top row of image 0
    assert (cols[6:9, 9:] == 0).all()            # and its padded bottom row


# Schedule and layouts -------------------------------------------------------------------------

def timed_run(instrs):
    """Cycles of a program when each queue runs in order at one buffer row per cycle (LOAD,
    STORE) or :func:`~sim.isa_model.matmul_cycles` per MATMUL, starting each instruction once
    its tokens are pushed. Returns the total, each queue's busy cycles and the cycle each
    queue ends."""
    clock = dict.fromkeys(Queue, 0)
    busy = dict.fromkeys(Queue, 0)
    pushes = {c: [] for c in CHANNELS.values()}
    pops = dict.fromkeys(CHANNELS.values(), 0)
    for instr in instrs:
        q = QUEUE_OF.get(instr["opcode"])
        if q is None:                              # FENCE, END: wait for every queue
            clock = dict.fromkeys(Queue, max(clock.values()))
            continue
        start = clock[q]
        for field in ("pop_prev", "pop_next"):
            if instr.get(field):
                channel = CHANNELS[q, field]
                start = max(start, pushes[channel][pops[channel]])
                pops[channel] += 1
        cost = matmul_cycles(instr) if q == Queue.COMPUTE else instr["rows"]
        clock[q] = start + cost
        busy[q] += cost
        for field in ("push_prev", "push_next"):
            if instr.get(field):
                pushes[CHANNELS[q, field]].append(clock[q])
    return max(clock.values()), busy, clock


@pytest.fixture(scope="module")
def large_gemm():
    return gemm_at(PRESETS["large"], 256, 256, 256)


def test_large_256_cubed_statistics(large_gemm):
    cfg = large_gemm.cfg
    M = K = N = 256
    stats = large_gemm.stats()
    ideal = M * K * N // (cfg.rows * cfg.cols)
    assert stats["ideal_cycles"] == ideal == 65536
    assert stats["matmul_cycles"] <= 1.02 * ideal
    matmuls = [i for i in large_gemm.program.instructions if i["opcode"] == Opcode.MATMUL]
    # the first step's A block is cut into chunks that the load engine writes in R cycles
    # (8 rows per cycle, so one chunk of a whole block here): no short MATMUL
    assert cfg.load_rows == 8 and large_gemm.tiling.block_rows <= 8 * cfg.rows
    m_min = min(m["m"] for m in matmuls)
    assert m_min >= 3 * cfg.rows
    # loads per MATMUL well below the MATMUL's cycles, even at a row a cycle
    assert stats["load_rows"] / stats["matmuls"] <= 0.5 * m_min
    assert stats["store_rows"] == M * N // cfg.cols
    assert stats["instructions"] < 2000
    for instr in large_gemm.program.instructions:
        if instr["opcode"] == Opcode.LOAD:
            assert instr["stride"] == instr["row_bytes"] == \
                buffer_row_bytes(cfg, instr["buf"])


def test_large_256_cubed_overlaps_loads_and_stores_with_compute(large_gemm):
    total, busy, _ = timed_run(large_gemm.program.instructions)
    assert busy[Queue.COMPUTE] == 65536
    assert busy[Queue.LOAD] <= 0.5 * busy[Queue.COMPUTE]
    assert total <= 1.01 * 65536
    # the same program with the tokens of a serial schedule (every instruction waits for the
    # previous one) would take the sum of all three
    assert sum(busy.values()) > 1.4 * 65536


def test_large_256_cubed_result(large_gemm):
    rng = np.random.default_rng(13)
    A, B = operands(rng, 256, 256, 256)
    C, run_stats = run(large_gemm, A, B)
    assert C.tolist() == (A @ B).tolist()
    assert run_stats.matmul_cycles == large_gemm.stats()["matmul_cycles"]


def test_large_256_cubed_output_stationary():
    cfg = PRESETS["large"]
    gemm = gemm_at(cfg, 256, 256, 256, dataflow=OS, bias=True)
    stats = gemm.stats()
    assert stats["matmul_cycles"] <= 1.02 * 65536
    assert stats["load_rows"] <= 0.75 * stats["matmul_cycles"]
    total, _, _ = timed_run(gemm.program.instructions)
    assert total <= 1.03 * 65536


@pytest.mark.parametrize("shape", [(64, 64, 64), (48, 40, 60)])
def test_last_output_block_stores_each_column_block_once_done(shape):
    """WS on ``large``: the last output block runs column block by column block, so only one
    column block's rows are stored after the last MATMUL (the other STOREs overlap it)."""
    cfg = PRESETS["large"]
    gemm = gemm_at(cfg, *shape, bias=True, post=PostOp(OutType.INT8, shift=6))
    instrs = gemm.program.instructions
    tiling = gemm.tiling
    assert tiling.group > 1 and shape[0] > tiling.block_rows     # more than one output block
    last_mm = max(i for i, x in enumerate(instrs) if x["opcode"] == Opcode.MATMUL)
    after = [x for x in instrs[last_mm:] if x["opcode"] == Opcode.STORE]
    assert len(after) == 1 and after[0]["rows"] <= tiling.block_rows
    assert instrs[-1]["opcode"] == Opcode.END
    total, _, clock = timed_run(instrs[:-1])
    assert total - clock[Queue.COMPUTE] == after[0]["rows"]
    rng = np.random.default_rng(len(instrs))
    A, B = operands(rng, *shape[:2], shape[2])
    bias = rng.integers(-5000, 5000, size=shape[2])
    C, _ = run(gemm, A, B, bias)
    assert C.tolist() == reference(A, B, bias, False, 1, 6, OutType.INT8).tolist()


@pytest.mark.parametrize("preset, dataflow, shape, bias", [
    ("default", WS, (77, 45, 29), True), ("default", OS, (77, 45, 29), True),
    ("large", WS, (300, 100, 200), False), ("tiny", OS, (9, 70, 5), True),
])
def test_loads_and_stores_stay_in_their_regions(preset, dataflow, shape, bias):
    cfg = PRESETS[preset]
    gemm = gemm_at(cfg, *shape, bias=bias, per_column=bias, dataflow=dataflow,
                   post=PostOp(OutType.INT16), c_row_stride=shape[2] * 2 + 6)
    regions = gemm.regions()
    names = {Buffer.SPAD_A: ["A"], Buffer.SPAD_B: ["B"], Buffer.ACC: ["bias", "scales"]}
    used = dict.fromkeys(regions, 0)
    half = cfg.spad_depth // 2
    for instr in gemm.program.instructions:
        op = instr["opcode"]
        if op == Opcode.LOAD:
            lo, hi = instr["addr"], instr["addr"] + instr["rows"] * instr["row_bytes"]
            assert instr["stride"] == instr["row_bytes"] == buffer_row_bytes(cfg, instr["buf"])
            inside = [n for n in names[instr["buf"]]
                      if n in regions and regions[n][0] <= lo and
                      hi <= regions[n][0] + regions[n][1]]
            assert len(inside) == 1, instr
            used[inside[0]] += hi - lo
            if instr["buf"] != Buffer.ACC:       # within one half of the bank
                assert instr["buf_addr"] // half == (instr["buf_addr"] + instr["rows"] - 1) \
                    // half
        elif op == Opcode.STORE:
            lo = instr["addr"]
            hi = lo + (instr["rows"] - 1) * instr["stride"] + instr["row_bytes"]
            c_addr, c_size = regions["C"]
            assert c_addr <= lo and hi <= c_addr + c_size
    assert used["A"] >= regions["A"][1] * 0.9 and used["B"] >= regions["B"][1] * 0.9


def test_c_row_stride_leaves_the_gaps_alone():
    cfg = PRESETS["default"]
    M, K, N = 11, 9, 13
    gemm = gemm_at(cfg, M, K, N, post=PostOp(OutType.INT16), c_row_stride=40)
    rng = np.random.default_rng(14)
    A, B = operands(rng, M, K, N)
    model = IsaModel(cfg, np.full(max(a + n for a, n in gemm.regions().values()), 0xEE,
                                  dtype=np.uint8))
    for addr, data in gemm.inputs(A, B):
        model.write(addr, data)
    model.write(gemm.prog_addr, gemm.program_bytes())
    model.run(gemm.prog_addr, gemm.prog_len)
    addr, size = gemm.output_region()
    assert size == 10 * 40 + 26
    raw = model.read(addr, size)
    assert all(raw[m * 40 + 26:(m + 1) * 40] == b"\xee" * 14 for m in range(M - 1))
    assert gemm.unpack_output(raw).tolist() == reference(A, B, out_type=OutType.INT16).tolist()


@pytest.mark.parametrize("slots", [2, 3])
def test_token_recipe_double_buffers(slots):
    """Loads of step s + slots wait for the MATMULs of step s, MATMULs of block o + 2 for the
    STOREs of block o; the LOADs of a step come before the MATMULs of the step before; in
    the first step the first B tile, each chunk of the A block (of a tile's rows, with one
    row loaded per cycle) and the second B tile are loaded and waited for on their own, the
    second chunk keeping the first tile's weights."""
    cfg = PRESETS["default"].replace(load_rows=1)
    tiling = choose_tiling(cfg, 60, 30, 40, max_block_rows=15, max_group=2)
    gemm = gemm_at(cfg, 60, 30, 40, tiling=dataclasses.replace(tiling, slots=slots))
    instrs = gemm.program.instructions
    loads = [i for i in instrs if i["opcode"] == Opcode.LOAD]
    matmuls = [i for i in instrs if i["opcode"] == Opcode.MATMUL]
    stores = [i for i in instrs if i["opcode"] == Opcode.STORE]
    steps = 4 * 3 * 4                                  # row blocks x groups x k-blocks
    assert sum(i["push_next"] for i in loads) == steps + 2
    assert sum(i["pop_next"] for i in loads) == steps - slots
    assert [i["pop_next"] for i in loads[:7]] == [0] * 6 + [slots == 2]
    assert sum(i["push_prev"] for i in matmuls) == steps - slots
    assert sum(i["pop_prev"] for i in matmuls) == steps + 2
    assert [i["pop_prev"] for i in matmuls[:3]] == [1, 1, 1]
    blocks = 4 * 3
    assert sum(i["pop_next"] for i in matmuls) == blocks - 2
    assert sum(i["push_prev"] for i in stores) == blocks - 2
    assert sum(i["pop_prev"] for i in stores) == len(stores) == sum(
        i["push_next"] for i in matmuls)
    ops = [i["opcode"] for i in instrs]
    first_matmul = ops.index(Opcode.MATMUL)
    assert ops[:first_matmul] == [Opcode.LOAD] * 6     # two steps of A and B loads ahead
    assert [(i["buf"], i["rows"], i["push_next"]) for i in loads[:4]] == [
        (Buffer.SPAD_B, 8, 0), (Buffer.SPAD_A, 8, 1), (Buffer.SPAD_A, 7, 1),
        (Buffer.SPAD_B, 8, 1)]
    assert [(i["m"], i["a_addr"], i["c_addr"], i["keep_weights"]) for i in matmuls[:3]] == [
        (8, 0, 0, 0), (7, 8, 8, 1), (15, 0, 15, 0)]


def test_plan_memory_places_aligned_disjoint_regions():
    cfg = PRESETS["default"]
    post = PostOp(OutType.INT8)
    plan = plan_memory(cfg, 100, 70, 30, base=0x1234, bias=True, per_column=True, post=post)
    gemm = compile_gemm(cfg, 100, 70, 30, **plan.addresses(), post=post)
    regions = gemm.regions()
    assert set(regions) == {"program", "A", "B", "bias", "scales", "C"}
    assert plan.prog_addr == 0x2000
    starts = [regions[n][0] for n in ("program", "A", "B", "bias", "scales", "C")]
    assert starts == sorted(starts) and all(s % ALIGN == 0 for s in starts)
    spans = sorted(regions.values())
    assert all(a + n <= b for (a, n), (b, _) in zip(spans, spans[1:], strict=False))
    assert regions["C"][0] + regions["C"][1] <= plan.end
    assert regions["A"][1] == 9 * 100 * 8 and regions["B"][1] == 9 * 4 * 8 * 8
    assert regions["bias"][1] == regions["scales"][1] == 4 * 8 * 4
    assert regions["program"][1] == 32 * gemm.prog_len
    again = gemm_at(cfg, 100, 70, 30, base=0x1234, bias=True, per_column=True, post=post)
    addresses = {**plan.addresses(), "prog_addr": None}
    after = compile_gemm(cfg, 100, 70, 30, **addresses, post=post).prog_addr
    assert after % ALIGN == 0 and after >= regions["C"][0] + regions["C"][1]
    assert again.regions() == regions and again.program_bytes() == gemm.program_bytes()


def test_packed_layouts():
    cfg = PRESETS["tiny"]                                       # 2 x 2
    A = np.arange(1, 16).reshape(3, 5)
    B = np.arange(-7, 8).reshape(5, 3)
    ws = gemm_at(cfg, 3, 5, 3)
    # WS A: [kb][m][2]; K padded to 6
    assert list(np.frombuffer(ws.pack_a(A), np.int8)) == \
        [1, 2, 6, 7, 11, 12, 3, 4, 8, 9, 13, 14, 5, 0, 10, 0, 15, 0]
    # WS B: [kb][nb][2][2]; N padded to 4
    b = np.zeros((6, 4), dtype=int)
    b[:5, :3] = B
    expected = [b[kb * 2 + k, nb * 2 + c] for kb in range(3) for nb in range(2)
                for k in range(2) for c in range(2)]
    assert list(np.frombuffer(ws.pack_b(B), np.int8)) == expected
    os_ = gemm_at(cfg, 3, 5, 3, dataflow=OS, bias=True)
    # OS A: [mb][k][2] (A transposed per m-block; M padded to 4)
    a = np.zeros((4, 5), dtype=int)
    a[:3] = A
    assert list(np.frombuffer(os_.pack_a(A), np.int8)) == \
        [a[mb * 2 + r, k] for mb in range(2) for k in range(5) for r in range(2)]
    assert list(np.frombuffer(os_.pack_b(B), np.int8)) == \
        [b[k, nb * 2 + c] for nb in range(2) for k in range(5) for c in range(2)]
    assert np.frombuffer(os_.pack_bias([-1, 2, 70000]), "<i4").tolist() == [-1, 2, 70000, 0]


# Errors ----------------------------------------------------------------------------------------

CFG = PRESETS["default"]
ADDRS = dict(a_addr=0x1000, b_addr=0x2000, c_addr=0x3000, prog_addr=0x8000)


@pytest.mark.parametrize("args, kwargs, message", [
    ((0, 4, 4), {}, r"M must be an integer of at least 1, not 0"),
    ((4, -1, 4), {}, r"K must be an integer of at least 1, not -1"),
    ((4, 4, 2.5), {}, r"N must be an integer of at least 1, not 2.5"),
    ((4, 4, 4), {"a_addr": -8}, r"a_addr must be an integer of at least 0, not -8"),
    ((4, 4, 4), {"b_addr": 0x1010},
     r"the A region 0x1000 \.\. 0x101f overlaps the B region 0x1010 \.\. 0x104f"),
    ((4, 4, 4), {"bias_addr": 0x3008},
     r"the C region 0x3000 \.\. 0x303f overlaps the bias region 0x3008"),
    ((4, 4, 4), {"prog_addr": 0x8004}, r"prog_addr must be a multiple of 32, not 0x8004"),
    ((4, 4, 4), {"prog_addr": 0x1000},
     r"the A region .* overlaps the program region 0x1000"),
    ((4, 4, 4), {"c_addr": 2**34 - 8},
     r"C region 0x3fffffff8 \.\. 0x400000037 must end within the 34-bit address space"),
    ((4, 4, 4), {"c_row_stride": 15},
     r"c_row_stride \(at least N \* 4 bytes\) must be an integer of at least 16, not 15"),
    ((4, 4, 4), {"dataflow": 3}, r"dataflow must be Dataflow.WS or Dataflow.OS, not 3"),
    ((4, 4, 4), {"post": "relu"}, r"post must be a PostOp, not 'relu'"),
    ((100, 4, 4), {"tiling": Tiling(WS, 600, 1, 1, 8)},
     r"tiling.block_rows must be an integer from 1 to 100, not 600"),
    ((600, 4, 4), {"tiling": Tiling(WS, 300, 1, 1, 8)},
     r"tiling.block_rows \* tiling.group must be at most 256 .* not 300 \* 1 = 300"),
    ((4, 4, 4), {"tiling": Tiling(OS, 4, 1, 1, 4)}, r"tiling.dataflow must be WS"),
])
def test_compile_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compile_gemm(CFG, *args, **{**ADDRS, **kwargs})


def test_post_op_and_input_errors():
    with pytest.raises(ValueError, match=r"out_type must be one of INT8, INT16, INT32, not 'INT4'"):
        PostOp("INT4")
    with pytest.raises(ValueError, match=r"scale must be an integer from 0 to 65535, not 70000"):
        PostOp(scale=70000)
    with pytest.raises(ValueError, match=r"shift must be an integer from 0 to 63, not 64"):
        PostOp(shift=64)
    assert PostOp("INT16").out_type == OutType.INT16
    gemm = compile_gemm(CFG, 3, 4, 5, **ADDRS, bias_addr=0x4000)
    A, B = np.zeros((3, 4), dtype=int), np.zeros((4, 5), dtype=int)
    with pytest.raises(ValueError, match=r"A must have shape \(3, 4\), not \(4, 3\)"):
        gemm.inputs(A.T, B, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match=r"B must hold values from -128 to 127, not 128"):
        gemm.inputs(A, B + 128, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match=r"A must hold integers, not float64"):
        gemm.inputs(A.astype(float), B, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match=r"bias must be given"):
        gemm.inputs(A, B)
    with pytest.raises(ValueError, match=r"scales must be None"):
        gemm.inputs(A, B, np.zeros(5, dtype=int), np.ones(5, dtype=int))
    with pytest.raises(ValueError, match=r"the output region is 60 bytes, not 59"):
        gemm.unpack_output(bytes(59))
    with pytest.raises(ValueError, match=r"weight_shape C_in must equal the input's C 3, "
                                         r"not 4"):
        compile_conv2d(CFG, (1, 5, 5, 3), (3, 3, 4, 8))
    with pytest.raises(ValueError, match=r"the 5 x 5 kernel must fit the padded 4 x 4 input"):
        compile_conv2d(CFG, (1, 4, 4, 3), (5, 5, 3, 8))
    with pytest.raises(ValueError, match=r"stride must be an integer of at least 1, not 0"):
        compile_conv2d(CFG, (1, 4, 4, 3), (3, 3, 3, 8), stride=0)


def test_configuration_too_small():
    cfg = CFG.replace(name="shallow", spad_depth=8, acc_depth=16)
    with pytest.raises(ValueError, match=r"half of spad_depth 8 must hold a weight tile of "
                                         r"rows 8 rows in WS"):
        choose_tiling(cfg, 4, 4, 4)
    gemm = gemm_at(cfg, 5, 20, 9, dataflow=OS, bias=True)   # OS still fits: K in chunks
    assert gemm.tiling.k_step == 8 // gemm.tiling.slots
    rng = np.random.default_rng(15)
    A, B = operands(rng, 5, 20, 9)
    bias = rng.integers(-100, 100, size=9)
    assert run(gemm, A, B, bias)[0].tolist() == (A @ B + bias).tolist()
    with pytest.raises(ValueError, match=r"no tiling of the 5 x 20 x 9 GEMM \(OS\) fits "
                                         r"configuration 'shallow' \(spad_depth 8, acc_depth 8\)"):
        choose_tiling(cfg.replace(acc_depth=8), 5, 20, 9, dataflow=OS)
    with pytest.raises(ValueError, match=r"acc_depth 2 is too small: no accumulator rows"):
        choose_tiling(cfg.replace(acc_depth=2), 1, 4, 4, dataflow=OS, bias=True,
                      per_column=True)
