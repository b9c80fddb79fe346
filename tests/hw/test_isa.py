"""The instruction encoding: widths, round trips, extremes, and validation messages."""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hw.config import PRESETS, AccelConfig
from hw.isa import (
    HEADER_WIDTH,
    INSTR_BYTES,
    INSTR_WIDTH,
    SCALE_WIDTH,
    SHIFT_WIDTH,
    Buffer,
    Dataflow,
    ErrorCode,
    HeaderLayout,
    InstructionError,
    InstructionLayout,
    Opcode,
    OutType,
    acc_bytes,
    buffer_depth,
    buffer_row_bytes,
    decode,
    encode,
    field_names,
    layout_table,
    operand_bytes,
    out_bytes,
    validate,
)

CFGS = [PRESETS[name] for name in ("tiny", "default", "large")]
IDS = [cfg.name for cfg in CFGS]
DEFAULT = PRESETS["default"]


def region(rng, cfg, rows, row_bytes, min_stride=0):
    """A random (addr, stride) whose region fits the address space."""
    space = 1 << cfg.addr_width
    if rows > 1:
        stride = rng.randint(min_stride, (space - row_bytes) // (rows - 1))
    else:
        stride = rng.randrange(space)
    addr = rng.randint(0, space - (rows - 1) * stride - row_bytes)
    return addr, stride


def random_instruction(rng, cfg, op):
    """A random valid instruction with opcode ``op``."""
    def flag():
        return rng.random() < 0.5

    if op == Opcode.LOAD:
        buf = rng.choice(list(Buffer))
        depth, row = buffer_depth(cfg, buf), buffer_row_bytes(cfg, buf)
        elem = acc_bytes(cfg) if buf == Buffer.ACC else operand_bytes(cfg)
        rows = rng.randint(1, depth)
        row_bytes = elem * rng.randint(1, row // elem)
        addr, stride = region(rng, cfg, rows, row_bytes)
        return {"opcode": op, "buf": buf, "buf_addr": rng.randint(0, depth - rows),
                "rows": rows, "row_bytes": row_bytes, "addr": addr, "stride": stride,
                "pop_next": flag(), "push_next": flag()}
    if op == Opcode.MATMUL:
        flow = rng.choice(list(Dataflow))
        n = rng.randint(1, cfg.cols)
        keep = False
        if flow == Dataflow.WS:
            k = rng.randint(1, cfg.rows)
            m = rng.randint(1, min(cfg.acc_depth, cfg.spad_depth))
            a_addr = rng.randint(0, cfg.spad_depth - m)
            keep = flag()
        else:
            m = rng.randint(1, min(cfg.rows, cfg.acc_depth))
            k = rng.randint(1, cfg.spad_depth)
            a_addr = rng.randint(0, cfg.spad_depth - k)
        b_addr = 0 if keep else rng.randint(0, cfg.spad_depth - k)
        return {"opcode": op, "dataflow": flow, "accumulate": flag(), "keep_weights": keep,
                "a_addr": a_addr, "b_addr": b_addr,
                "c_addr": rng.randint(0, cfg.acc_depth - m), "m": m, "k": k, "n": n,
                "pop_prev": flag(), "pop_next": flag(), "push_prev": flag(),
                "push_next": flag()}
    if op == Opcode.STORE:
        out_type = rng.choice(list(OutType))
        rows = rng.randint(1, cfg.acc_depth)
        row_bytes = out_bytes(out_type) * rng.randint(1, cfg.cols)
        addr, stride = region(rng, cfg, rows, row_bytes, min_stride=row_bytes)
        return {"opcode": op, "out_type": out_type, "relu": flag(), "bias": flag(),
                "per_column": flag(), "shift": rng.randrange(1 << SHIFT_WIDTH),
                "scale": rng.randrange(1 << SCALE_WIDTH),
                "acc_addr": rng.randint(0, cfg.acc_depth - rows),
                "bias_addr": rng.randrange(cfg.acc_depth),
                "scale_addr": rng.randrange(cfg.acc_depth), "rows": rows,
                "row_bytes": row_bytes, "addr": addr, "stride": stride,
                "pop_prev": flag(), "push_prev": flag()}
    return {"opcode": op}


# Widths and layout --------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", CFGS, ids=IDS)
def test_instruction_width(cfg):
    layout = InstructionLayout(cfg)
    assert INSTR_WIDTH == 256 and INSTR_BYTES == 32
    assert layout.size == INSTR_WIDTH
    assert HeaderLayout().size == HEADER_WIDTH == 8
    assert layout["header"].offset == 0 and layout["body"].offset == HEADER_WIDTH
    assert HEADER_WIDTH + layout["body"].shape.size <= INSTR_WIDTH


@pytest.mark.parametrize("cfg", CFGS, ids=IDS)
def test_fields_tile_without_gaps(cfg):
    """Within each opcode the fields are disjoint and packed from bit 0."""
    by_op = {}
    for op, name, offset, width in layout_table(cfg):
        by_op.setdefault(op, []).append((offset, width, name))
    for op, fields in by_op.items():
        assert [name for _, _, name in fields] == list(field_names(cfg, Opcode[op]))
        end = 0
        for offset, width, _ in sorted(fields):
            assert offset == end and width > 0
            end += width
        assert end <= INSTR_WIDTH


def test_documented_header_bits():
    assert encode(DEFAULT, {"opcode": Opcode.FENCE}) == 4
    assert encode(DEFAULT, {"opcode": "END"}) == 5
    assert [op.value for op in Opcode] == [1, 2, 3, 4, 5]
    base = random_instruction(random.Random(1), DEFAULT, Opcode.MATMUL)
    for bit, name in enumerate(("pop_prev", "pop_next", "push_prev", "push_next"), start=4):
        fields = {**base, "pop_prev": False, "pop_next": False, "push_prev": False,
                  "push_next": False, name: True}
        assert encode(DEFAULT, fields) & 0xf0 == 1 << bit
        assert encode(DEFAULT, fields) & 0xf == Opcode.MATMUL.value


def test_layout_too_wide():
    cfg = AccelConfig(addr_width=64, spad_depth=1 << 40, acc_depth=1 << 40)
    with pytest.raises(ValueError, match=r"needs \d+ bits for STORE, more than the 256-bit"):
        InstructionLayout(cfg)


# Round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", CFGS, ids=IDS)
@pytest.mark.parametrize("op", list(Opcode), ids=[op.name for op in Opcode])
def test_round_trip_random(cfg, op):
    rng = random.Random(f"{cfg.name}-{op.name}")
    for _ in range(100 if op in (Opcode.LOAD, Opcode.MATMUL, Opcode.STORE) else 1):
        instr = random_instruction(rng, cfg, op)
        word = encode(cfg, instr)
        assert 0 <= word < 1 << INSTR_WIDTH
        fields = decode(cfg, word)
        assert fields == validate(cfg, instr)
        assert fields == {"opcode": op, **{k: 0 for k in field_names(cfg, op)[1:]}, **instr}
        assert list(fields) == list(field_names(cfg, op))
        assert encode(cfg, fields) == word


def extremes(cfg):
    """Instructions with every field at its smallest and largest allowed value."""
    top = (1 << cfg.addr_width) - 1
    tokens = {"pop_prev": True, "pop_next": True, "push_prev": True, "push_next": True}
    out = []
    for buf in Buffer:
        depth, row = buffer_depth(cfg, buf), buffer_row_bytes(cfg, buf)
        elem = acc_bytes(cfg) if buf == Buffer.ACC else operand_bytes(cfg)
        load = {"opcode": Opcode.LOAD, "buf": buf, "pop_next": True, "push_next": True}
        out += [
            {**load, "buf_addr": 0, "rows": depth, "row_bytes": row, "addr": 0, "stride": 0},
            {**load, "buf_addr": depth - 1, "rows": 1, "row_bytes": elem,
             "addr": top + 1 - elem, "stride": top},
            {**load, "buf_addr": 0, "rows": depth, "row_bytes": row,
             "addr": top + 1 - depth * row, "stride": row},
        ]
    mm = {"opcode": Opcode.MATMUL, **tokens}
    ws_m = min(cfg.acc_depth, cfg.spad_depth)
    os_m = min(cfg.rows, cfg.acc_depth)
    out += [
        {**mm, "dataflow": Dataflow.WS, "m": ws_m, "k": cfg.rows, "n": cfg.cols},
        {**mm, "dataflow": Dataflow.WS, "m": 1, "k": 1, "n": 1, "accumulate": True,
         "a_addr": cfg.spad_depth - 1, "b_addr": cfg.spad_depth - 1,
         "c_addr": cfg.acc_depth - 1},
        {**mm, "dataflow": Dataflow.WS, "m": 1, "k": 1, "n": 1, "keep_weights": True,
         "b_addr": (1 << (cfg.spad_depth - 1).bit_length()) - 1},
        {**mm, "dataflow": Dataflow.OS, "m": os_m, "k": cfg.spad_depth, "n": cfg.cols,
         "c_addr": cfg.acc_depth - os_m, "accumulate": True},
        {**mm, "dataflow": Dataflow.OS, "m": 1, "k": 1, "n": 1,
         "a_addr": cfg.spad_depth - 1, "b_addr": cfg.spad_depth - 1},
    ]
    st = {"opcode": Opcode.STORE, "pop_prev": True, "push_prev": True}
    for out_type in OutType:
        ob = out_bytes(out_type)
        out += [
            {**st, "out_type": out_type, "acc_addr": 0, "rows": cfg.acc_depth,
             "row_bytes": cfg.cols * ob, "stride": cfg.cols * ob, "addr": 0,
             "relu": True, "bias": True, "per_column": True, "shift": (1 << SHIFT_WIDTH) - 1,
             "scale": (1 << SCALE_WIDTH) - 1, "bias_addr": cfg.acc_depth - 1,
             "scale_addr": cfg.acc_depth - 1},
            {**st, "out_type": out_type, "acc_addr": cfg.acc_depth - 1, "rows": 1,
             "row_bytes": ob, "stride": top, "addr": top + 1 - ob},
        ]
    return out


@pytest.mark.parametrize("cfg", CFGS, ids=IDS)
def test_round_trip_extremes(cfg):
    for instr in extremes(cfg):
        word = encode(cfg, instr)
        fields = decode(cfg, word)
        for name, value in instr.items():
            assert fields[name] == value, (instr, name)
        assert encode(cfg, fields) == word


def test_hardware_view_agrees():
    """The gateware reads the same bits through the same layout."""
    cfg = DEFAULT
    instr = random_instruction(random.Random(7), cfg, Opcode.STORE)
    word = encode(cfg, instr)
    m = Module()
    insn = Signal(InstructionLayout(cfg))
    scale = Signal(SCALE_WIDTH)
    stride = Signal(cfg.addr_width)
    m.d.comb += [scale.eq(insn.body.store.scale), stride.eq(insn.body.store.stride)]
    seen = {}

    async def bench(ctx):
        ctx.set(insn.as_value(), word)
        seen["opcode"] = ctx.get(insn.header.opcode)
        seen["scale"] = ctx.get(scale)
        seen["stride"] = ctx.get(stride)
        seen["out_type"] = ctx.get(insn.body.store.out_type)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"opcode": Opcode.STORE, "scale": instr["scale"],
                    "stride": instr["stride"], "out_type": instr["out_type"]}


# Validation ---------------------------------------------------------------------------------

def ok_load(**changes):
    return {"opcode": "LOAD", "buf": "SPAD_A", "buf_addr": 0, "rows": 8, "row_bytes": 8,
            "addr": 0x1000, "stride": 8, **changes}


def ok_matmul(**changes):
    return {"opcode": "MATMUL", "dataflow": "WS", "a_addr": 0, "b_addr": 0, "c_addr": 0,
            "m": 8, "k": 8, "n": 8, **changes}


def ok_store(**changes):
    return {"opcode": "STORE", "acc_addr": 0, "rows": 8, "row_bytes": 8, "addr": 0x2000,
            "stride": 8, "scale": 1, **changes}


@pytest.mark.parametrize("instr, words", [
    ({"buf": 0}, ["opcode is missing"]),
    ({"opcode": 0}, ["opcode", "LOAD (1)", "END (5)", "not 0"]),
    ({"opcode": 6}, ["opcode", "not 6"]),
    ({"opcode": "NOP"}, ["opcode", "'NOP'"]),
    (ok_load(pop_prev=True), ["LOAD", "pop_prev", "no prev queue"]),
    (ok_load(push_prev=1), ["push_prev", "no prev queue"]),
    (ok_store(push_next=True), ["STORE", "push_next", "no next queue"]),
    (ok_store(pop_next=True), ["pop_next", "no next queue"]),
    ({"opcode": "FENCE", "push_next": True}, ["FENCE", "push_next must be 0"]),
    ({"opcode": "END", "pop_prev": True}, ["END", "pop_prev must be 0"]),
    (ok_load(pop_next=2), ["pop_next must be 0 or 1", "not 2"]),
    (ok_load(foo=1), ["foo is not a field of LOAD", "buf_addr"]),
    (ok_load(buf=3), ["buf must be one of SPAD_A (0), SPAD_B (1), ACC (2)", "not 3"]),
    (ok_load(rows=0), ["LOAD: rows must be from 1 to 1024", "not 0"]),
    (ok_load(buf="ACC", rows=513, row_bytes=32), ["rows", "512", "depth of ACC", "not 513"]),
    (ok_load(buf_addr=1020), ["buf_addr + rows must be at most 1024", "not 1028"]),
    (ok_load(row_bytes=0), ["row_bytes must be a multiple of 1 from 1 to 8", "not 0"]),
    (ok_load(row_bytes=9), ["row_bytes", "to 8", "not 9"]),
    (ok_load(buf="ACC", row_bytes=6), ["row_bytes must be a multiple of 4", "to 32", "not 6"]),
    (ok_load(addr=-1), ["addr must be from 0 to 17179869183", "34-bit", "not -1"]),
    (ok_load(addr=1 << 34), ["addr", "not 17179869184"]),
    (ok_load(addr=(1 << 34) - 8, stride=8), ["memory region 0x3fffffff8 .. 0x400000037",
                                             "read window 0x0 .. 0x3ffffffff"]),
    (ok_load(rows=True), ["rows must be an integer", "not True"]),
    (ok_load(rows=2.0), ["rows must be an integer", "not 2.0"]),
    (ok_matmul(dataflow=2), ["MATMUL: dataflow must be one of WS (0), OS (1)", "not 2"]),
    (ok_matmul(m=0), ["m must be from 1", "not 0"]),
    (ok_matmul(k=0), ["k must be from 1 to 8", "not 0"]),
    (ok_matmul(n=0), ["n must be from 1 to 8", "not 0"]),
    (ok_matmul(n=9), ["n must be from 1 to 8", "columns", "not 9"]),
    (ok_matmul(k=9), ["k must be from 1 to 8", "rows, in WS", "not 9"]),
    (ok_matmul(dataflow="OS", m=9), ["m must be from 1 to 8", "in OS", "not 9"]),
    (ok_matmul(dataflow="OS", k=1025), ["k must be from 1 to 1024", "not 1025"]),
    (ok_matmul(a_addr=1020), ["a_addr + m must be at most 1024", "not 1028"]),
    (ok_matmul(b_addr=1020), ["b_addr + k must be at most 1024", "not 1028"]),
    (ok_matmul(c_addr=510), ["c_addr + m must be at most 512", "not 518"]),
    (ok_matmul(dataflow="OS", keep_weights=True), ["keep_weights must be 0", "OS"]),
    (ok_store(out_type=3), ["STORE: out_type must be one of INT8 (0), INT16 (1), INT32 (2)",
                            "not 3"]),
    (ok_store(rows=0), ["STORE: rows must be from 1 to 512", "not 0"]),
    (ok_store(acc_addr=508), ["acc_addr + rows must be at most 512", "not 516"]),
    (ok_store(row_bytes=9), ["row_bytes must be a multiple of 1 from 1 to 8", "not 9"]),
    (ok_store(out_type="INT16", row_bytes=3), ["multiple of 2 from 2 to 16", "not 3"]),
    (ok_store(out_type="INT32", row_bytes=36), ["multiple of 4 from 4 to 32", "not 36"]),
    (ok_store(stride=4), ["stride must be at least row_bytes 8", "not 4"]),
    (ok_store(bias=True, bias_addr=512), ["bias_addr must be from 0 to 511", "not 512"]),
    (ok_store(scale=1 << 16), ["scale must be from 0 to 65535", "not 65536"]),
    (ok_store(shift=64), ["shift must be from 0 to 63", "not 64"]),
])
def test_validate_errors(instr, words):
    with pytest.raises(ValueError) as info:
        validate(DEFAULT, instr)
    for word in words:
        assert word in str(info.value)
    with pytest.raises(ValueError):
        encode(DEFAULT, instr)


@pytest.mark.parametrize("instr, code", [
    ({"opcode": 6}, ErrorCode.ILLEGAL_INSTRUCTION),
    (ok_load(pop_prev=True), ErrorCode.ILLEGAL_INSTRUCTION),
    (ok_matmul(dataflow="OS", keep_weights=True, m=0), ErrorCode.ILLEGAL_INSTRUCTION),
    (ok_load(rows=0, buf_addr=1023), ErrorCode.BAD_DIMENSION),
    (ok_load(row_bytes=9, buf_addr=1020), ErrorCode.BAD_DIMENSION),
    (ok_load(buf_addr=1020), ErrorCode.BUFFER_RANGE),
    (ok_load(buf_addr=1020, addr=(1 << 34) - 8), ErrorCode.BUFFER_RANGE),
    (ok_load(addr=(1 << 34) - 8), ErrorCode.READ_PROTECTION),
    (ok_matmul(a_addr=1020, n=9), ErrorCode.BAD_DIMENSION),
    (ok_matmul(a_addr=1020), ErrorCode.BUFFER_RANGE),
    (ok_store(stride=4, acc_addr=508), ErrorCode.BAD_DIMENSION),
    (ok_store(bias=True, bias_addr=600), ErrorCode.ILLEGAL_INSTRUCTION),    # field too narrow
    (ok_store(per_column=True, scale_addr=511, acc_addr=508), ErrorCode.BUFFER_RANGE),
    (ok_store(addr=(1 << 34) - 8, stride=8), ErrorCode.WRITE_PROTECTION),
])
def test_validate_error_codes(instr, code):
    """Encoding first, then counts, then buffer ranges, then the memory region."""
    with pytest.raises(InstructionError) as info:
        validate(DEFAULT, instr)
    assert info.value.code == code


def test_protection_windows():
    load, store = ok_load(addr=0x1000, rows=4, stride=0x100), ok_store(addr=0x2000, rows=2)
    # LOAD reads 0x1000 .. 0x1307; STORE writes 0x2000 .. 0x200f
    assert validate(DEFAULT, load, read_window=(0x1000, 0x1307))
    assert validate(DEFAULT, store, write_window=(0x2000, 0x200F), read_window=(0, 0))
    for window in ((0x1001, 0x2000), (0, 0x1306)):
        with pytest.raises(InstructionError, match=r"read window") as info:
            validate(DEFAULT, load, read_window=window)
        assert info.value.code == ErrorCode.READ_PROTECTION
    with pytest.raises(InstructionError, match=r"0x2000 \.\. 0x200f .* write window "
                                               r"0x2001 \.\. 0x3000") as info:
        validate(DEFAULT, store, write_window=(0x2001, 0x3000))
    assert info.value.code == ErrorCode.WRITE_PROTECTION


def test_decode_errors_are_illegal_instructions():
    with pytest.raises(InstructionError) as info:
        decode(DEFAULT, encode(DEFAULT, {"opcode": "END"}) | 1 << 200)
    assert info.value.code == ErrorCode.ILLEGAL_INSTRUCTION


def test_validate_table_rows_below_depth():
    """With a depth that is not a power of two, a field can hold rows that do not exist."""
    cfg = DEFAULT.replace(acc_depth=500)
    with pytest.raises(ValueError, match=r"STORE: bias_addr must be below acc_depth 500, "
                                         r"not 500"):
        validate(cfg, ok_store(bias=True, bias_addr=500))
    with pytest.raises(ValueError, match=r"STORE: scale_addr must be below acc_depth 500, "
                                         r"not 511"):
        validate(cfg, ok_store(per_column=True, scale_addr=511))
    validate(cfg, ok_store(bias=False, bias_addr=511))


def test_validate_accepts_valid_examples():
    for instr in (ok_load(), ok_matmul(), ok_store(), ok_store(stride=0, rows=1),
                  ok_matmul(keep_weights=True, b_addr=1023),
                  ok_store(bias=False, bias_addr=511, per_column=False, scale_addr=511)):
        validate(DEFAULT, instr)


def test_decode_errors():
    word = encode(DEFAULT, ok_load())
    load_bits = sum(width for op, _, _, width in layout_table(DEFAULT) if op == "LOAD")
    with pytest.raises(ValueError, match=rf"LOAD: reserved bits {load_bits} to 255 must be zero"):
        decode(DEFAULT, word | 1 << load_bits)
    with pytest.raises(ValueError, match=r"FENCE: reserved bits 8 to 255"):
        decode(DEFAULT, 4 | 1 << 8)
    with pytest.raises(ValueError, match=r"opcode must be one of .* not 0"):
        decode(DEFAULT, 0)
    with pytest.raises(ValueError, match=r"opcode .* not 15"):
        decode(DEFAULT, 0xf)
    buf_bits = [offset for op, name, offset, _ in layout_table(DEFAULT)
                if (op, name) == ("LOAD", "buf")][0]
    with pytest.raises(ValueError, match=r"LOAD: buf must be one of .* not 3"):
        decode(DEFAULT, word | 3 << buf_bits)
    with pytest.raises(ValueError, match=r"from 0 to 2\*\*256 - 1"):
        decode(DEFAULT, 1 << 256)
    with pytest.raises(ValueError, match=r"must be an integer, not 'x'"):
        decode(DEFAULT, "x")


def test_decode_keeps_semantic_errors_for_validate():
    """decode() reads any well-formed word; validate() then names what is wrong with it."""
    fields = decode(DEFAULT, Opcode.MATMUL.value)
    assert fields["m"] == 0
    with pytest.raises(ValueError, match=r"MATMUL: n must be from 1 to 8 .* not 0"):
        validate(DEFAULT, fields)
