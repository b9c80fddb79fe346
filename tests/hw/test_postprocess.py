"""Tier 1: STORE post-processing and byte packing against the numpy reference."""

import itertools

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.config import AccelConfig
from hw.isa import SCALE_WIDTH, SHIFT_WIDTH, OutType, StoreLayout
from hw.postprocess import AccRowLayout, PackedRowLayout, Packer, PostOpLayout, PostProcessor
from sim.assembler import postprocess
from sim.streams import recv, send

MAX_SHIFT = (1 << SHIFT_WIDTH) - 1
MAX_SCALE = (1 << SCALE_WIDTH) - 1
DTYPE = {OutType.INT8: np.int8, OutType.INT16: np.int16, OutType.INT32: np.int32}


def random_acc(rng, shape, acc_width):
    """Random accumulators with the extremes and the values around zero mixed in."""
    lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    acc = rng.integers(lo, hi, shape, endpoint=True).astype(object)
    special = np.array([lo, lo + 1, hi, hi - 1, 0, 1, -1], dtype=object)
    pick = rng.random(shape) < 0.3
    acc[pick] = rng.choice(special, int(pick.sum()))
    return acc


def random_scale(rng, shape=None):
    special = np.array([0, 1, 2, MAX_SCALE - 1, MAX_SCALE])
    if shape is None:
        return int(rng.choice(special)) if rng.random() < 0.5 else int(rng.integers(MAX_SCALE))
    scale = rng.integers(0, MAX_SCALE, shape, endpoint=True)
    pick = rng.random(shape) < 0.4
    scale[pick] = rng.choice(special, int(pick.sum()))
    return scale


def make_store(rng, cfg, rows, **op):
    """One STORE: its op, its input beats and the reference result (rows x cols)."""
    acc = random_acc(rng, (rows, cfg.cols), cfg.acc_width)
    bias = random_acc(rng, (cfg.cols,), cfg.acc_width)
    col_scale = random_scale(rng, (cfg.cols,))
    layer_scale = random_scale(rng)
    op = {"scale": layer_scale, **op}
    want = postprocess(acc, bias if op["bias"] else None, op["relu"],
                       col_scale if op["per_column"] else op["scale"], op["shift"],
                       op["out_type"], op["per_column"], acc_width=cfg.acc_width)
    beats = [{"data": [int(v) for v in acc[r]], "bias": [int(v) for v in bias],
              "scale": [int(v) for v in col_scale], "last": int(r == rows - 1)}
             for r in range(rows)]
    return op, beats, want


def run(dut, stores, take, seed=0, idle=0.0, stall=0.0):
    """Stream ``stores`` ``(op, beats, ...)`` back to back into ``dut.i``, setting ``dut.op``
    (if ``dut`` has one) before each; return the ``take`` rows of ``dut.o`` and the cycles
    they were taken in."""
    rng = np.random.default_rng(seed)
    result = {}

    async def feed(ctx):
        for op, beats, *_ in stores:
            if op is not None:
                ctx.set(dut.op, op)
            await send(ctx, dut.i, beats, rng, idle)

    async def drain(ctx):
        result["rows"], result["when"] = await recv(ctx, dut.o, take, rng, stall)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.run_until(1e-6 * (20 * take + 100))
    assert "rows" in result, "not every row came out"
    return result["rows"], result["when"]


def check_rows(stores, rows):
    pos = 0
    for n, (op, beats, want) in enumerate(stores):
        got = rows[pos:pos + len(beats)]
        pos += len(beats)
        data = np.array([[int(v) for v in r.data] for r in got])
        assert np.array_equal(data, want), f"STORE {n} {op}:\n{data}\n!=\n{want}"
        assert [r.last for r in got] == [b["last"] for b in beats], f"STORE {n}: last"
        assert all(r.out_type == op["out_type"] for r in got), f"STORE {n}: out_type"


SHIFTS = [0, 1, 31, MAX_SHIFT]


@pytest.mark.parametrize("out_type", list(OutType), ids=lambda t: t.name)
@pytest.mark.parametrize("per_column", [False, True], ids=["layer", "column"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
def test_every_option(relu, bias, per_column, out_type):
    # The four shifts run as back-to-back STOREs, so rows of one STORE are still in the
    # pipeline when the next op is set.
    cols = 2 + (relu + 2 * bias + per_column) % 3
    cfg = AccelConfig(name="p", rows=2, cols=cols)
    seed = 8 * relu + 4 * bias + 2 * per_column + out_type.value * 16
    rng = np.random.default_rng(seed)
    stores = [make_store(rng, cfg, int(rng.integers(1, 7)), relu=relu, bias=bias,
                         per_column=per_column, shift=shift, out_type=out_type)
              for shift in SHIFTS]
    take = sum(len(beats) for _, beats, _ in stores)
    rows, _ = run(PostProcessor(cfg), stores, take, seed, idle=0.3, stall=0.3)
    check_rows(stores, rows)


@pytest.mark.parametrize("acc_width", [16, 32, 48])
def test_random_ops(acc_width):
    # Shifts around the product width (acc_width + 16), where rounding to zero sets in, and
    # accumulators wider than int32, where INT32 saturation acts.
    cfg = AccelConfig(name="p", rows=2, cols=3, acc_width=acc_width)
    rng = np.random.default_rng(acc_width)
    P = acc_width + SCALE_WIDTH
    shifts = sorted({0, 1, 2, 15, 16, 31, 32, P - 2, P - 1, P, P + 1, MAX_SHIFT} &
                    set(range(MAX_SHIFT + 1)))
    stores = []
    for shift in shifts:
        relu, bias, per_column = (bool(f) for f in rng.integers(0, 2, 3))
        stores.append(make_store(rng, cfg, int(rng.integers(1, 5)), relu=relu,
                                 bias=bias, per_column=per_column, shift=shift,
                                 out_type=OutType(int(rng.integers(3)))))
    take = sum(len(beats) for _, beats, _ in stores)
    rows, _ = run(PostProcessor(cfg), stores, take, acc_width, idle=0.2, stall=0.4)
    check_rows(stores, rows)


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_rounding_ties(shift):
    # Every value from -20 to 20 with scale 1: each tie p = (k + 1/2) * 2**shift, of either
    # sign, must round away from zero.
    cfg = AccelConfig(name="p", rows=2, cols=3)
    values = np.arange(-20, 22).reshape(-1, 3)
    want = postprocess(values, scale=1, shift=shift, out_type=OutType.INT32)
    away = np.sign(values) * ((np.abs(values) + (1 << (shift - 1))) >> shift)
    assert np.array_equal(want, away)
    op = {"relu": 0, "bias": 0, "per_column": 0, "shift": shift, "scale": 1,
          "out_type": OutType.INT32}
    beats = [{"data": [int(v) for v in row], "bias": [0] * 3, "scale": [0] * 3,
              "last": int(r == len(values) - 1)} for r, row in enumerate(values)]
    stores = [(op, beats, want)]
    rows, _ = run(PostProcessor(cfg), stores, len(beats))
    check_rows(stores, rows)


def test_throughput_and_latency():
    cfg = AccelConfig(name="p", rows=2, cols=2)
    rng = np.random.default_rng(3)
    dut = PostProcessor(cfg)
    stores = [make_store(rng, cfg, 8, relu=True, bias=True, per_column=True, shift=5,
                         out_type=OutType.INT16)]
    rows, when = run(dut, stores, 8)
    check_rows(stores, rows)
    # recv counts from cycle 0, the cycle the first row is offered
    assert when == list(range(dut.latency, dut.latency + 8)), when


@pytest.mark.parametrize("lanes", [1, 2, 3, 4])
def test_fewer_lanes_than_columns(lanes):
    # 5 columns through 1 to 4 lanes (3 and 4 leave the last pass partly empty), every
    # option mixed, with gaps and backpressure.
    cfg = AccelConfig(name="p", rows=2, cols=5, post_lanes=lanes)
    rng = np.random.default_rng(100 + lanes)
    stores = []
    for shift in SHIFTS + [2, 17]:
        relu, bias, per_column = (bool(f) for f in rng.integers(0, 2, 3))
        stores.append(make_store(rng, cfg, int(rng.integers(1, 5)), relu=relu, bias=bias,
                                 per_column=per_column, shift=shift,
                                 out_type=OutType(int(rng.integers(3)))))
    take = sum(len(beats) for _, beats, _ in stores)
    rows, _ = run(PostProcessor(cfg), stores, take, lanes, idle=0.3, stall=0.3)
    check_rows(stores, rows)


@pytest.mark.parametrize("lanes", [1, 2, 3])
def test_lane_throughput(lanes):
    # One row per ceil(cols / lanes) cycles, the first one latency cycles after it was
    # accepted in its last pass.
    cfg = AccelConfig(name="p", rows=2, cols=3, post_lanes=lanes)
    passes = -(-3 // lanes)
    rng = np.random.default_rng(7)
    dut = PostProcessor(cfg)
    stores = [make_store(rng, cfg, 6, relu=False, bias=True, per_column=True, shift=3,
                         out_type=OutType.INT32)]
    rows, when = run(dut, stores, 6)
    check_rows(stores, rows)
    first = passes - 1 + dut.latency
    assert when == list(range(first, first + passes * 6, passes)), when


def test_op_layout_matches_store_fields():
    # PostOpLayout is documented as the leading bits of a STORE body.
    store = dict(StoreLayout(AccelConfig()))
    for name, field in PostOpLayout():
        assert store[name].offset == field.offset and store[name].shape == field.shape, name


def packer_beats(rng, cols, n, out_type):
    lo, hi = np.iinfo(DTYPE[out_type]).min, np.iinfo(DTYPE[out_type]).max
    values = rng.integers(lo, hi, (n, cols), endpoint=True)
    values[rng.random((n, cols)) < 0.3] = lo
    values[rng.random((n, cols)) < 0.3] = hi
    beats = [{"data": [int(v) for v in values[r]], "out_type": out_type,
              "last": int(r == n - 1)} for r in range(n)]
    return values, beats


def check_packed(cols, rows, expected):
    for r, (got, (want, out_type)) in enumerate(zip(rows, expected, strict=True)):
        raw = want.astype(DTYPE[out_type]).tobytes()
        assert got.bytes == len(raw) == cols * DTYPE[out_type]().itemsize, f"row {r}"
        assert got.data == int.from_bytes(raw, "little"), f"row {r} ({out_type.name})"


@pytest.mark.parametrize("cols", [2, 3, 4])
def test_packer_layout(cols):
    cfg = AccelConfig(name="p", rows=2, cols=cols)
    rng = np.random.default_rng(cols)
    stores, expected = [], []
    for out_type in itertools.chain(OutType, rng.permutation(list(OutType))):
        out_type = OutType(out_type)
        values, beats = packer_beats(rng, cols, int(rng.integers(1, 5)), out_type)
        stores.append((None, beats))
        expected += [(v, out_type) for v in values]
    rows, _ = run(Packer(cfg), stores, len(expected), cols, idle=0.3, stall=0.3)
    check_packed(cols, rows, expected)
    assert [r.last for r in rows] == [b["last"] for _, beats in stores for b in beats]


class StorePath(wiring.Component):
    """The post-processor feeding the packer, as the store engine uses them."""

    def __init__(self, cfg):
        self.post = PostProcessor(cfg)
        self.pack = Packer(cfg)
        super().__init__({
            "op": In(PostOpLayout()),
            "i": In(stream.Signature(AccRowLayout(cfg))),
            "o": Out(stream.Signature(PackedRowLayout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.post, m.submodules.pack = self.post, self.pack
        m.d.comb += self.post.op.eq(self.op)
        wiring.connect(m, wiring.flipped(self.i), self.post.i)
        wiring.connect(m, self.post.o, self.pack.i)
        wiring.connect(m, self.pack.o, wiring.flipped(self.o))
        return m


def test_store_path_bytes():
    cfg = AccelConfig(name="p", rows=2, cols=3)
    rng = np.random.default_rng(11)
    stores = [make_store(rng, cfg, int(rng.integers(1, 5)), relu=False, bias=True,
                         per_column=True, shift=12, out_type=t)
              for t in (OutType.INT8, OutType.INT32, OutType.INT16, OutType.INT8)]
    take = sum(len(beats) for _, beats, _ in stores)
    rows, _ = run(StorePath(cfg), stores, take, 11, idle=0.3, stall=0.3)
    check_packed(cfg.cols, rows, [(w, op["out_type"]) for op, _, want in stores for w in want])
