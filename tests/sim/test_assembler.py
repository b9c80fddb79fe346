"""The Python assembler, the disassembler, the token checker and the post-processing
reference (checked against hand-computed integers)."""

import random

import numpy as np
import pytest

from hw.config import PRESETS
from hw.isa import INSTR_BYTES, Buffer, Dataflow, Opcode, OutType, decode, encode
from sim.assembler import CHANNELS, Program, disassemble, postprocess

CFG = PRESETS["default"]


def small_program(cfg=CFG):
    prog = Program(cfg)
    prog.load(buf=Buffer.SPAD_B, buf_addr=0, addr=0x1000, rows=8, row_bytes=8)
    prog.load(buf=Buffer.SPAD_A, buf_addr=16, addr=0x2000, rows=4, row_bytes=8, stride=64,
              push_next=True)
    prog.matmul(a_addr=16, b_addr=0, c_addr=32, m=4, k=8, n=8, pop_prev=True,
                push_next=True)
    prog.store(acc_addr=32, rows=4, addr=0x3000, row_bytes=8, relu=True, bias_addr=500,
               scale=77, shift=8, pop_prev=True)
    prog.fence()
    prog.end()
    return prog


# Assembling ---------------------------------------------------------------------------------

def test_program_words():
    prog = small_program()
    assert len(prog) == 6
    ops = [decode(CFG, word)["opcode"] for word in prog.words]
    assert ops == [Opcode.LOAD, Opcode.LOAD, Opcode.MATMUL, Opcode.STORE, Opcode.FENCE,
                   Opcode.END]
    assert prog.words[4] == 4 and prog.words[5] == 5
    store = decode(CFG, prog.words[3])
    assert (store["bias"], store["bias_addr"], store["per_column"], store["scale"]) == \
        (True, 500, False, 77)
    assert (store["stride"], store["out_type"], store["pop_prev"]) == (8, OutType.INT8, True)
    assert decode(CFG, prog.words[0])["stride"] == 8      # stride defaults to row_bytes
    for instr, word in zip(prog.instructions, prog.words, strict=True):
        assert encode(CFG, instr) == word


def test_to_bytes_little_endian_in_order():
    prog = small_program()
    raw = prog.to_bytes()
    assert INSTR_BYTES == 32 and len(raw) == 32 * len(prog)
    for i, word in enumerate(prog.words):
        chunk = raw[32 * i:32 * (i + 1)]
        assert chunk == bytes((word >> (8 * b)) & 0xff for b in range(32))
    # The opcode is the low nibble of each instruction's first byte.
    assert [raw[32 * i] & 0xf for i in range(len(prog))] == [1, 1, 2, 3, 4, 5]
    # LOAD of A pushes a token (bit 7); the MATMUL pops one (bit 4) and pushes one (bit 7).
    assert raw[32] == 0x81 and raw[64] == 0x92 and raw[96] == 0x13


def test_per_column_store_and_keep_weights():
    prog = Program(CFG)
    prog.matmul(a_addr=0, c_addr=0, m=3, k=2, n=5, keep_weights=True, b_addr=9,
                accumulate=True)
    prog.store(acc_addr=0, rows=3, addr=0, row_bytes=20, out_type="INT32", scale_addr=7,
               scale=5)
    mm, st = prog.instructions
    assert mm["keep_weights"] and mm["b_addr"] == 0 and mm["accumulate"]
    assert st["per_column"] and st["scale_addr"] == 7 and st["scale"] == 0
    assert not st["bias"] and st["bias_addr"] == 0


def test_errors_name_field_and_value():
    prog = Program(CFG)
    with pytest.raises(ValueError, match=r"MATMUL: k must be from 1 to 8 .* not 9"):
        prog.matmul(a_addr=0, c_addr=0, m=1, k=9, n=1)
    with pytest.raises(ValueError, match=r"LOAD: buf must be one of .* not 'C'"):
        prog.load(buf="C", buf_addr=0, addr=0, rows=1, row_bytes=1)
    with pytest.raises(ValueError, match=r"STORE: shift must be from 0 to 63 .* not 70"):
        prog.store(acc_addr=0, rows=1, addr=0, row_bytes=1, shift=70)
    with pytest.raises(TypeError):
        prog.load(buf=Buffer.ACC, buf_addr=0, addr=0, rows=1, row_bytes=4, pop_prev=True)
    assert len(prog) == 0
    prog.end()
    with pytest.raises(ValueError, match=r"ended at instruction 0; no FENCE may follow END"):
        prog.fence()


# Disassembly --------------------------------------------------------------------------------

def test_disassembly_text():
    expected = "\n".join([
        "0: LOAD   SPAD_B[0] rows=8 row_bytes=8 addr=0x1000 stride=8",
        "1: LOAD   SPAD_A[16] rows=4 row_bytes=8 addr=0x2000 stride=64  ; push_next",
        "2: MATMUL WS overwrite m=4 k=8 n=8 a=16 b=0 c=32  ; pop_prev push_next",
        "3: STORE  ACC[32] rows=4 row_bytes=8 addr=0x3000 stride=8 INT8 bias=ACC[500] relu "
        "scale=77 shift=8  ; pop_prev",
        "4: FENCE",
        "5: END",
    ])
    prog = small_program()
    assert disassemble(CFG, prog.words) == expected
    assert disassemble(CFG, prog.to_bytes()) == expected


def test_disassembly_of_other_forms():
    prog = Program(CFG)
    prog.matmul(dataflow=Dataflow.OS, a_addr=0, b_addr=4, c_addr=0, m=2, k=6, n=3,
                accumulate=True, pop_next=True, push_prev=True)
    prog.matmul(a_addr=0, c_addr=8, m=2, k=6, n=3, keep_weights=True)
    prog.store(acc_addr=0, rows=2, addr=0x40, row_bytes=12, out_type=OutType.INT32,
               scale_addr=9, shift=3)
    lines = disassemble(CFG, prog.words).splitlines()
    assert lines == [
        "0: MATMUL OS acc m=2 k=6 n=3 a=0 b=4 c=0  ; pop_next push_prev",
        "1: MATMUL WS overwrite m=2 k=6 n=3 a=0 b=kept c=8",
        "2: STORE  ACC[0] rows=2 row_bytes=12 addr=0x40 stride=12 INT32 scale=ACC[9] shift=3",
    ]


def test_disassembly_marks_illegal_words():
    words = [0, 1 << 255, Opcode.STORE.value] + [5] * 8
    lines = disassemble(CFG, words).splitlines()
    assert len(lines) == 11
    assert lines[0] == " 0: .word 0x" + "0" * 64 + "  ; illegal: opcode must be one of " \
        "LOAD (1), MATMUL (2), STORE (3), FENCE (4), END (5), not 0"
    assert "illegal: opcode" in lines[1]
    assert lines[2].endswith("illegal: STORE: rows must be from 1 to 512 (acc_depth), not 0")
    assert lines[10] == "10: END"
    with pytest.raises(ValueError, match=r"whole number of 32-byte words, not 33 bytes"):
        disassemble(CFG, bytes(33))


# Dependency tokens --------------------------------------------------------------------------

def pipelined_gemm(tiles):
    """A double-buffered tile loop following the token recipe of :mod:`hw.isa`."""
    prog = Program(CFG)
    for t in range(tiles):
        buf, early, late = 256 * (t % 2), t >= 2, t < tiles - 2
        prog.load(buf=Buffer.SPAD_B, buf_addr=buf, addr=0x1000, rows=8, row_bytes=8,
                  pop_next=early)
        prog.load(buf=Buffer.SPAD_A, buf_addr=buf, addr=0x2000, rows=8, row_bytes=8,
                  push_next=True)
        prog.matmul(a_addr=buf, b_addr=buf, c_addr=8 * (t % 2), m=8, k=8, n=8,
                    pop_prev=True, push_prev=late, pop_next=early, push_next=True)
        prog.store(acc_addr=8 * (t % 2), rows=8, addr=0x3000 + 64 * t, row_bytes=8,
                   pop_prev=True, push_prev=late)
    prog.end()
    return prog


@pytest.mark.parametrize("tiles", [1, 2, 5])
def test_tokens_balanced(tiles):
    assert pipelined_gemm(tiles).check_tokens() == dict.fromkeys(CHANNELS, 0)


def test_tokens_left_over():
    prog = Program(CFG)
    prog.load(buf=Buffer.SPAD_A, buf_addr=0, addr=0, rows=1, row_bytes=1, push_next=True)
    prog.end()
    assert prog.check_tokens() == {**dict.fromkeys(CHANNELS, 0), "load->compute": 1}


def test_tokens_deadlock():
    prog = Program(CFG)
    prog.matmul(a_addr=0, c_addr=0, m=1, k=1, n=1, pop_prev=True)
    prog.store(acc_addr=0, rows=1, addr=0, row_bytes=1, pop_prev=True)
    with pytest.raises(ValueError, match=r"deadlock before the end of the program: MATMUL at "
                                         r"0 waits on load->compute; STORE at 1 waits on "
                                         r"compute->store"):
        prog.check_tokens()


def test_tokens_fence_is_a_barrier():
    """A token pushed after a FENCE cannot release an instruction before it."""
    prog = Program(CFG)
    prog.store(acc_addr=0, rows=1, addr=0, row_bytes=1, pop_prev=True)
    prog.fence()
    prog.matmul(a_addr=0, c_addr=0, m=1, k=1, n=1, push_next=True)
    with pytest.raises(ValueError, match=r"deadlock before FENCE at 1: STORE at 0 waits on "
                                         r"compute->store"):
        prog.check_tokens()


# Post-processing ----------------------------------------------------------------------------

def row(*values):
    return np.array([values], dtype=np.int64)


def test_round_half_away_from_zero():
    # x / 2: 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 1, -1 (round-half-to-even would give
    # 0, 0, 2, -2, 2, -2, 1, -1).
    got = postprocess(row(1, -1, 3, -3, 5, -5, 2, -2), shift=1)
    assert got.tolist() == [[1, -1, 2, -2, 3, -3, 1, -1]]
    # x / 4: 1.5, -1.5, 1.25, -1.25, 1.75, -1.75, 0.5, -0.5, 0.25, -0.25
    got = postprocess(row(6, -6, 5, -5, 7, -7, 2, -2, 1, -1), shift=2)
    assert got.tolist() == [[2, -2, 1, -1, 2, -2, 1, -1, 0, 0]]
    # x * 3 / 8: 100 -> 37.5, -100 -> -37.5, 99 -> 37.125, -99 -> -37.125, 101 -> 37.875
    got = postprocess(row(100, -100, 99, -99, 101), scale=3, shift=3)
    assert got.tolist() == [[38, -38, 37, -37, 38]]


def test_saturation_limits():
    got = postprocess(row(127, 128, -128, -129, 100000, -100000))
    assert got.dtype == np.int8
    assert got.tolist() == [[127, 127, -128, -128, 127, -128]]
    got = postprocess(row(32767, 32768, -32768, -32769, 127, -129), out_type=OutType.INT16)
    assert got.dtype == np.int16
    assert got.tolist() == [[32767, 32767, -32768, -32768, 127, -129]]
    # 255.5 rounds to 256, then saturates; 254.5 rounds away from zero to 255 -> 127
    got = postprocess(row(511, -511, 509), shift=1)
    assert got.tolist() == [[127, -128, 127]]
    # int16 saturation after scaling: 1000 * 65535 >> 10 = 63999.0 -> 32767
    got = postprocess(row(1000, -1000), scale=65535, shift=10, out_type="INT16")
    assert got.tolist() == [[32767, -32768]]


def test_relu_and_bias():
    got = postprocess(row(-5, 0, 5, -3), relu=True)
    assert got.tolist() == [[0, 0, 5, 0]]
    # bias before ReLU: -3 + 5 = 2 survives, 4 - 10 = -6 is cut
    got = postprocess(row(-3, 4, 0, 7), bias=[5, -10, -1, 0], relu=True)
    assert got.tolist() == [[2, 0, 0, 7]]
    # the bias sum wraps modulo 2**32, like accumulation
    got = postprocess(row(2**31 - 1, -2**31), bias=[1, -1], out_type="INT32")
    assert got.dtype == np.int32
    assert got.tolist() == [[-2**31, 2**31 - 1]]
    got = postprocess(row(2**31 - 1), bias=[1], relu=True, out_type="INT32")
    assert got.tolist() == [[0]]


def test_per_column_scale():
    acc = np.array([[10, 10, 10, 10], [-10, -10, -10, -10]])
    # 10 * [1, 3, 8, 65535] / 16 = 0.625, 1.875, 5.0, 40959.375
    got = postprocess(acc, scale=[1, 3, 8, 65535], shift=4, out_type=OutType.INT16,
                      per_column=True)
    assert got.tolist() == [[1, 2, 5, 32767], [-1, -2, -5, -32768]]
    got = postprocess(acc, scale=[0, 1, 2, 3], per_column=True, out_type="INT8")
    assert got.tolist() == [[0, 10, 20, 30], [0, -10, -20, -30]]


def test_raw_int32():
    rng = np.random.default_rng(3)
    acc = rng.integers(-2**31, 2**31, size=(5, 8), dtype=np.int64)
    acc[0, :2] = [-2**31, 2**31 - 1]
    got = postprocess(acc, out_type=OutType.INT32)
    assert got.dtype == np.int32
    assert got.tolist() == acc.tolist()


def test_wide_products_and_shifts():
    # (2**31 - 1) * 65535 needs 47 bits; >> 63 leaves 0 either side
    got = postprocess(row(2**31 - 1, -2**31), scale=65535, shift=63, out_type="INT32")
    assert got.tolist() == [[0, 0]]
    # (2**31 - 1) * 65535 / 2**16 = 2**31 - 2**15 - 65535 / 65536 = 2147450879.0000153;
    # -2**31 * 65535 / 2**16 = -(2**31 - 2**15) exactly
    got = postprocess(row(2**31 - 1, -2**31), scale=65535, shift=16, out_type="INT32")
    assert got.tolist() == [[2147450879, -2147450880]]
    # 3 * 65535 / 2**17 = 1.49998 -> 1 (just below the tie); 2 * 65535 / 2**17 = 0.99998 -> 1
    got = postprocess(row(3, 2, -3, -2), scale=65535, shift=17)
    assert got.tolist() == [[1, 1, -1, -1]]


def reference_scalar(x, bias, relu, scale, shift, lo, hi):
    """The documented steps in plain integers, rounding by divmod of the magnitude."""
    if bias is not None:
        x = (x + bias + 2**31) % 2**32 - 2**31
    if relu and x < 0:
        x = 0
    p = x * scale
    q, r = divmod(abs(p), 2**shift)
    if 2 * r >= 2**shift and shift > 0:
        q += 1
    y = q if p >= 0 else -q
    return min(max(y, lo), hi)


@pytest.mark.parametrize("out_type, lo, hi", [
    (OutType.INT8, -128, 127), (OutType.INT16, -32768, 32767),
    (OutType.INT32, -2**31, 2**31 - 1),
])
def test_random_against_scalar_steps(out_type, lo, hi):
    rng = random.Random(out_type.value)
    for _ in range(20):
        m, n = rng.randint(1, 4), rng.randint(1, 6)
        acc = [[rng.randint(-2**31, 2**31 - 1) for _ in range(n)] for _ in range(m)]
        bias = rng.choice([None, [rng.randint(-2**31, 2**31 - 1) for _ in range(n)]])
        relu, per_column = rng.random() < 0.5, rng.random() < 0.5
        scales = [rng.randrange(1 << 16) for _ in range(n)]
        shift = rng.randrange(64)
        got = postprocess(acc, bias, relu, scales if per_column else scales[0], shift,
                          out_type, per_column)
        expected = [[reference_scalar(acc[i][j], None if bias is None else bias[j], relu,
                                      scales[j] if per_column else scales[0], shift, lo, hi)
                     for j in range(n)] for i in range(m)]
        assert got.tolist() == expected


@pytest.mark.parametrize("kwargs, message", [
    ({"scale": 1 << 16}, r"scale must hold integers from 0 to 65535, not 65536"),
    ({"scale": -1}, r"scale must hold .* not -1"),
    ({"scale": [1, 2]}, r"scale must be one integer without per_column"),
    ({"scale": 2, "per_column": True}, r"scale must have shape \(3,\) with per_column"),
    ({"shift": 64}, r"shift must be an integer from 0 to 63, not 64"),
    ({"bias": [1, 2]}, r"bias must have shape \(3,\)"),
    ({"bias": [0, 0, 2**31]}, r"bias must hold signed 32-bit values .* not 2147483648"),
    ({"out_type": "INT4"}, r"out_type must be one of INT8, INT16, INT32, not 'INT4'"),
    ({"out_type": 2}, r"out_type must be one of .* not 2"),
])
def test_postprocess_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        postprocess(row(1, 2, 3), **kwargs)


def test_postprocess_rejects_out_of_range_accumulators():
    with pytest.raises(ValueError, match=r"acc must hold signed 32-bit values .* not -2147483649"):
        postprocess(row(0, -2**31 - 1))
    with pytest.raises(ValueError, match=r"acc must be a matrix"):
        postprocess(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"acc must hold integers, not float64"):
        postprocess(np.array([[1.5]]))
