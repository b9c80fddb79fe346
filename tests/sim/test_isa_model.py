"""The functional ISA model on hand-built programs, against results worked out in numpy
directly from the instruction-set text."""

import numpy as np
import pytest

from hw.config import PRESETS
from hw.isa import INSTR_BYTES, Buffer, Dataflow, ErrorCode, Opcode, OutType, encode
from sim.assembler import Program
from sim.isa_model import IsaModel, ProgramError, RunStats

CFG = PRESETS["default"]        # 8 x 8, int8 operands, int32 accumulators
PROG = 0x8000                   # where the tests put programs
MEM = 0x10000


def model_with(cfg=CFG, fill=0):
    return IsaModel(cfg, np.full(MEM, fill, dtype=np.uint8))


def run(model, prog):
    model.write(PROG, prog.to_bytes())
    return model.run(PROG, len(prog))


def int8_bytes(values):
    return np.asarray(values, dtype=np.int8).tobytes()


def int32_bytes(values):
    return np.asarray(values, dtype="<i4").tobytes()


def read_i32(model, addr, count):
    return np.frombuffer(model.read(addr, 4 * count), dtype="<i4").astype(np.int64)


def wrap32(x):
    return (int(x) + 2**31) % 2**32 - 2**31


# LOAD -----------------------------------------------------------------------------------------

def test_load_unaligned_rows_zero_fill_and_untouched_rows():
    model = model_with()
    rng = np.random.default_rng(1)
    src = rng.integers(-128, 128, size=400)
    model.write(0x1003, int8_bytes(src))
    model.spad_a[:] = 99                     # rows the LOAD does not reach keep their values
    prog = Program(CFG)
    # 3 rows of 5 bytes from an odd address with stride 13, into bank-A rows 7, 8, 9
    prog.load(buf=Buffer.SPAD_A, buf_addr=7, addr=0x1003 + 2, rows=3, row_bytes=5, stride=13)
    prog.end()
    run(model, prog)
    for r in range(3):
        expected = list(src[2 + 13 * r:2 + 13 * r + 5]) + [0, 0, 0]
        assert model.spad_a[7 + r].tolist() == expected
    assert (model.spad_a[6] == 99).all() and (model.spad_a[10] == 99).all()


def test_load_bank_b_and_accumulator_elements():
    model = model_with()
    b_src = np.arange(-8, 8, dtype=np.int64)
    acc_src = np.array([-2**31, 2**31 - 1, -1, 0x01020304, 7, -7], dtype=np.int64)
    model.write(0x2000, int8_bytes(b_src))
    model.write(0x3001, int32_bytes(acc_src))
    prog = Program(CFG)
    prog.load(buf=Buffer.SPAD_B, buf_addr=1000, addr=0x2000, rows=2, row_bytes=8)
    prog.load(buf=Buffer.ACC, buf_addr=511, addr=0x3001, rows=1, row_bytes=24)
    prog.end()
    run(model, prog)
    assert model.spad_b[1000].tolist() == list(range(-8, 0))
    assert model.spad_b[1001].tolist() == list(range(0, 8))
    assert model.acc[511].tolist() == acc_src.tolist() + [0, 0]
    # little-endian: the bytes 04 03 02 01 are 0x01020304
    assert model.read(0x3001 + 12, 4) == bytes([4, 3, 2, 1])


def test_load_stride_zero_broadcasts_one_row():
    model = model_with()
    model.write(0x500, int32_bytes([5, -6, 7]))
    prog = Program(CFG)
    prog.load(buf=Buffer.ACC, buf_addr=100, addr=0x500, rows=6, row_bytes=12, stride=0)
    prog.end()
    run(model, prog)
    assert model.acc[100:106].tolist() == [[5, -6, 7, 0, 0, 0, 0, 0]] * 6
    assert model.acc[106].tolist() == [0] * 8


def test_unsigned_operands():
    cfg = CFG.replace(name="unsigned", in_signed=False)
    model = model_with(cfg)
    model.write(0x100, bytes([255, 128, 1, 0, 200, 3, 4, 5]))
    model.write(0x200, bytes([255] + [0] * 7))
    prog = Program(cfg)
    prog.load(buf=Buffer.SPAD_A, buf_addr=0, addr=0x100, rows=1, row_bytes=8)
    prog.load(buf=Buffer.SPAD_B, buf_addr=0, addr=0x200, rows=1, row_bytes=8)
    prog.matmul(a_addr=0, b_addr=0, c_addr=0, m=1, k=1, n=1)
    prog.end()
    run(model, prog)
    assert model.spad_a[0].tolist() == [255, 128, 1, 0, 200, 3, 4, 5]
    assert model.acc[0, 0] == 255 * 255


# MATMUL ---------------------------------------------------------------------------------------

def stage(model, rng, a_rows, b_rows, a_addr=0x1000, b_addr=0x2000):
    """Put random full bank-A and bank-B rows in memory; returns them."""
    a = rng.integers(-128, 128, size=(a_rows, CFG.rows))
    b = rng.integers(-128, 128, size=(b_rows, CFG.cols))
    model.write(a_addr, int8_bytes(a))
    model.write(b_addr, int8_bytes(b))
    return a, b


def test_ws_matmul_lane_zeroing_and_column_mask():
    rng = np.random.default_rng(2)
    model = model_with()
    a, b = stage(model, rng, 10, 8)
    prog = Program(CFG)
    prog.load(buf=Buffer.SPAD_A, buf_addr=20, addr=0x1000, rows=10, row_bytes=8)
    prog.load(buf=Buffer.SPAD_B, buf_addr=300, addr=0x2000, rows=8, row_bytes=8)
    prog.load(buf=Buffer.ACC, buf_addr=40, addr=0x3000, rows=10, row_bytes=32, stride=0)
    # K = 5: lanes 5..7 of the A rows hold data but must count as zero; N = 3
    prog.matmul(a_addr=20, b_addr=300, c_addr=40, m=10, k=5, n=3)
    prog.store(acc_addr=40, rows=10, addr=0x4000, row_bytes=32, out_type=OutType.INT32)
    prog.end()
    model.write(0x3000, int32_bytes([-1] * 8))
    run(model, prog)
    got = read_i32(model, 0x4000, 80).reshape(10, 8)
    expected = np.full((10, 8), -1, dtype=np.int64)
    for i in range(10):
        for j in range(3):
            expected[i, j] = sum(int(a[i, k]) * int(b[k, j]) for k in range(5))
    assert got.tolist() == expected.tolist()


def test_os_matmul_transposed_a_and_lane_zeroing():
    rng = np.random.default_rng(3)
    model = model_with()
    a_t, b = stage(model, rng, 30, 30)      # bank-A row s holds column s of A
    prog = Program(CFG)
    prog.load(buf=Buffer.SPAD_A, buf_addr=0, addr=0x1000, rows=30, row_bytes=8)
    prog.load(buf=Buffer.SPAD_B, buf_addr=500, addr=0x2000, rows=30, row_bytes=8)
    # M = 3 (lanes 3..7 count as zero), K = 30 (more than the array's 8 rows), N = 7
    prog.matmul(dataflow=Dataflow.OS, a_addr=0, b_addr=500, c_addr=9, m=3, k=30, n=7)
    prog.end()
    run(model, prog)
    expected = [[sum(int(a_t[s, i]) * int(b[s, j]) for s in range(30)) for j in range(7)]
                + [0] for i in range(3)]
    assert model.acc[9:12].tolist() == expected
    assert (model.acc[12] == 0).all() and (model.acc[8] == 0).all()


def test_accumulate_adds_and_wraps_modulo_2_32():
    model = model_with()
    model.write(0x1000, int8_bytes([[-128] * 8, [127] * 8]))    # two A rows
    model.write(0x2000, int8_bytes([[-128] * 8] * 8))            # B: all -128
    model.write(0x3000, int32_bytes([2**31 - 1, -2**31, 5, 0, 0, 0, 0, 0]))
    model.write(0x3020, int32_bytes([-2**31, 2**31 - 1, -5, 0, 0, 0, 0, 0]))
    prog = Program(CFG)
    prog.load(buf=Buffer.SPAD_A, buf_addr=0, addr=0x1000, rows=2, row_bytes=8)
    prog.load(buf=Buffer.SPAD_B, buf_addr=0, addr=0x2000, rows=8, row_bytes=8)
    prog.load(buf=Buffer.ACC, buf_addr=0, addr=0x3000, rows=2, row_bytes=32)
    prog.matmul(a_addr=0, b_addr=0, c_addr=0, m=2, k=8, n=3, accumulate=True)
    prog.end()
    run(model, prog)
    # row 0 adds 8 * (-128 * -128) = 131072; row 1 adds 8 * (127 * -128) = -130048
    assert model.acc[0, :3].tolist() == [wrap32(2**31 - 1 + 131072), wrap32(-2**31 + 131072),
                                         5 + 131072]
    assert model.acc[1, :3].tolist() == [wrap32(-2**31 - 130048), wrap32(2**31 - 1 - 130048),
                                         -5 - 130048]
    assert model.acc[0, 0] < 0 and model.acc[1, 0] > 0           # both wrapped


def test_overwrite_replaces_only_the_tile():
    model = model_with()
    model.acc[:] = 77
    model.write(0x1000, int8_bytes([[1] * 8] * 4))
    model.write(0x2000, int8_bytes([[2] * 8] * 8))
    prog = Program(CFG)
    prog.load(buf=Buffer.SPAD_A, buf_addr=0, addr=0x1000, rows=4, row_bytes=8)
    prog.load(buf=Buffer.SPAD_B, buf_addr=0, addr=0x2000, rows=8, row_bytes=8)
    prog.matmul(a_addr=0, b_addr=0, c_addr=1, m=2, k=4, n=5)
    prog.end()
    run(model, prog)
    assert model.acc[0].tolist() == [77] * 8
    assert model.acc[1].tolist() == [8] * 5 + [77] * 3
    assert model.acc[2].tolist() == [8] * 5 + [77] * 3
    assert model.acc[3].tolist() == [77] * 8


def test_keep_weights_uses_the_weights_of_the_last_ws_tile():
    rng = np.random.default_rng(4)
    model = model_with()
    a, b = stage(model, rng, 4, 16)
    prog = Program(CFG)
    prog.load(buf=Buffer.SPAD_A, buf_addr=0, addr=0x1000, rows=4, row_bytes=8)
    prog.load(buf=Buffer.SPAD_B, buf_addr=0, addr=0x2000, rows=8, row_bytes=8)
    prog.matmul(a_addr=0, b_addr=0, c_addr=0, m=4, k=8, n=8)
    # bank B rows 0..7 now hold the second half of b; an OS tile runs in between
    prog.load(buf=Buffer.SPAD_B, buf_addr=0, addr=0x2040, rows=8, row_bytes=8)
    prog.matmul(dataflow=Dataflow.OS, a_addr=0, b_addr=0, c_addr=20, m=2, k=3, n=2)
    prog.matmul(a_addr=1, c_addr=10, m=3, k=6, n=4, keep_weights=True)
    prog.matmul(a_addr=1, b_addr=0, c_addr=30, m=3, k=6, n=4)
    prog.end()
    stats = run(model, prog)
    # max(m, k) for each MATMUL, but only m for the one that keeps the weights (it loads none)
    assert stats.matmul_cycles == 8 + 3 + 3 + 6
    old = a[1:4, :6] @ b[:6, :4]
    new = a[1:4, :6] @ b[8:14, :4]
    assert model.acc[10:13, :4].tolist() == old.tolist()
    assert model.acc[30:33, :4].tolist() == new.tolist()
    assert old.tolist() != new.tolist()


@pytest.mark.parametrize("first, message", [
    (None, r"instruction 0: MATMUL keep_weights, but no weight-stationary tile"),
    (dict(k=4, n=8), r"instruction 1: MATMUL keep_weights with k 6 and n 4 .* holds 4 x 8"),
    (dict(k=8, n=3), r"instruction 1: MATMUL keep_weights with k 6 and n 4 .* holds 8 x 3"),
])
def test_keep_weights_beyond_the_kept_tile_is_an_error(first, message):
    model = model_with()
    prog = Program(CFG)
    if first is not None:
        prog.matmul(a_addr=0, b_addr=0, c_addr=0, m=1, **first)
    prog.matmul(a_addr=0, c_addr=0, m=1, k=6, n=4, keep_weights=True)
    prog.end()
    with pytest.raises(ValueError, match=message):
        run(model, prog)


# STORE ----------------------------------------------------------------------------------------

def round_shift(p, shift):
    """p / 2**shift rounded half away from zero, on magnitudes."""
    if shift == 0:
        return p
    q = (abs(p) + 2**(shift - 1)) // 2**shift
    return q if p >= 0 else -q


def test_store_post_processing_partial_rows_and_gaps():
    model = model_with(fill=0xAA)
    acc = [[100, -100, 300, -3, 2**31 - 1, 0, 9, 1],
           [-2**31, 50, -51, 1000, 7, -7, 0, 2]]
    bias = [-200, 200, 0, 5, 1, 0, 0, 0]
    model.acc[3:5] = acc
    model.acc[60] = bias
    prog = Program(CFG)
    # 6 columns of int8 per row, rows 16 bytes apart: bytes 6..15 of each row stay 0xAA
    prog.store(acc_addr=3, rows=2, addr=0x4000, row_bytes=6, stride=16, relu=True,
               bias_addr=60, scale=3, shift=2, out_type=OutType.INT8)
    prog.end()
    run(model, prog)
    raw = model.read(0x4000, 32)
    expected = []
    for r in range(2):
        row = []
        for j in range(6):
            x = wrap32(acc[r][j] + bias[j])
            x = max(x, 0)
            y = round_shift(x * 3, 2)
            row.append(min(max(y, -128), 127))
        expected.append(row)
    assert list(np.frombuffer(raw[0:6], np.int8)) == expected[0]
    assert list(np.frombuffer(raw[16:22], np.int8)) == expected[1]
    assert raw[6:16] == b"\xaa" * 10 and raw[22:32] == b"\xaa" * 10
    # spot values: (100 - 200) -> relu 0; (-100 + 200) * 3 / 4 = 75; 300 * 3 / 4 = 225 -> 127;
    # 2**31 - 1 + 1 wraps to -2**31 -> relu 0
    assert expected[0][:5] == [0, 75, 127, 2, 0]


def test_store_per_column_scales_use_low_16_bits():
    model = model_with()
    model.acc[0] = [1000, -1000, 33, -33, 5, 5, 5, 5]
    # entries above 16 bits: 0x10003 acts as 3, -1 (0xffffffff) as 65535
    model.acc[1] = [0x10003, 2, 65535, -1, 0x20000, 1, 1, 1]
    prog = Program(CFG)
    prog.store(acc_addr=0, rows=1, addr=0x4000, row_bytes=16, scale_addr=1, shift=4,
               out_type=OutType.INT16)
    prog.end()
    run(model, prog)
    got = np.frombuffer(model.read(0x4000, 16), "<i2").tolist()
    scales = [3, 2, 65535, 65535, 0, 1, 1, 1]
    values = [1000, -1000, 33, -33, 5, 5, 5, 5]
    expected = [min(max(round_shift(v * s, 4), -32768), 32767)
                for v, s in zip(values, scales, strict=True)]
    assert got == expected
    assert expected[:4] == [188, -125, 32767, -32768]


def test_store_int32_raw_and_int16_saturation():
    model = model_with()
    values = [2**31 - 1, -2**31, 40000, -40000, 12345, -1, 0, 1]
    model.acc[7] = values
    prog = Program(CFG)
    prog.store(acc_addr=7, rows=1, addr=0x4000, row_bytes=32, out_type=OutType.INT32)
    prog.store(acc_addr=7, rows=1, addr=0x4100, row_bytes=8, out_type=OutType.INT16)
    prog.end()
    run(model, prog)
    assert read_i32(model, 0x4000, 8).tolist() == values
    assert np.frombuffer(model.read(0x4100, 8), "<i2").tolist() == [32767, -32768, 32767,
                                                                    -32768]
    assert model.read(0x4108, 4) == bytes(4)


# Whole programs and errors -------------------------------------------------------------------

def test_small_gemm_end_to_end_and_stats():
    rng = np.random.default_rng(5)
    model = model_with()
    a = rng.integers(-128, 128, size=(12, 8))
    b = rng.integers(-128, 128, size=(8, 8))
    model.write(0x1000, int8_bytes(a))
    model.write(0x2000, int8_bytes(b))
    prog = Program(CFG)
    prog.load(buf=Buffer.SPAD_B, buf_addr=0, addr=0x2000, rows=8, row_bytes=8)
    prog.load(buf=Buffer.SPAD_A, buf_addr=0, addr=0x1000, rows=12, row_bytes=8,
              push_next=True)
    prog.matmul(a_addr=0, b_addr=0, c_addr=0, m=12, k=8, n=8, pop_prev=True, push_next=True)
    prog.store(acc_addr=0, rows=12, addr=0x3000, row_bytes=32, out_type=OutType.INT32,
               pop_prev=True)
    prog.fence()
    prog.end()
    stats = run(model, prog)
    assert read_i32(model, 0x3000, 96).reshape(12, 8).tolist() == (a @ b).tolist()
    assert stats == RunStats(instructions=6, loads=2, matmuls=1, stores=1, fences=1,
                             load_rows=20, load_bytes=160, store_rows=12, store_bytes=384,
                             matmul_cycles=12, macs=12 * 8 * 8)


def test_end_stops_execution():
    model = model_with()
    prog = Program(CFG)
    prog.end()
    model.write(PROG, prog.to_bytes() + bytes(INSTR_BYTES))    # an illegal word after END
    stats = model.run(PROG, 2)
    assert stats.instructions == 1


def illegal_program(word, position=1):
    words = [encode(CFG, {"opcode": Opcode.FENCE})] * 3
    words[position] = word
    words.append(encode(CFG, {"opcode": Opcode.END}))
    return b"".join(w.to_bytes(INSTR_BYTES, "little") for w in words)


@pytest.mark.parametrize("word, position, code, message", [
    (0, 1, ErrorCode.ILLEGAL_INSTRUCTION, r"instruction 1 at 0x8020 refused with "
                                          r"ILLEGAL_INSTRUCTION: opcode must be one of LOAD"),
    (7, 2, ErrorCode.ILLEGAL_INSTRUCTION, r"instruction 2 at 0x8040 .* not 7"),
    (Opcode.FENCE.value | 1 << 200, 0, ErrorCode.ILLEGAL_INSTRUCTION,
     r"instruction 0 at 0x8000 .* FENCE: reserved bits 8 to 255 must be zero"),
    (Opcode.LOAD.value, 1, ErrorCode.BAD_DIMENSION,
     r"instruction 1 at 0x8020 refused with BAD_DIMENSION: LOAD: rows must be from 1"),
    (Opcode.FENCE.value | 1 << 4, 2, ErrorCode.ILLEGAL_INSTRUCTION,
     r"instruction 2 .* FENCE: pop_prev must be 0"),
])
def test_refused_instructions_name_their_index_and_code(word, position, code, message):
    model = model_with()
    model.write(PROG, illegal_program(word, position))
    with pytest.raises(ProgramError, match=message) as info:
        model.run(PROG, 4)
    assert (info.value.code, info.value.index) == (code, position)
    assert info.value.addr == PROG + INSTR_BYTES * position
    assert model.stats.instructions == position      # the instructions before it ran


def test_protection_windows_and_bad_programs():
    model = model_with()
    prog = Program(CFG)
    prog.load(buf=Buffer.SPAD_A, buf_addr=0, addr=0x1000, rows=2, row_bytes=8, stride=16)
    prog.store(acc_addr=0, rows=1, addr=0x2000, row_bytes=8)
    prog.end()
    model.write(PROG, prog.to_bytes())
    top = PROG + INSTR_BYTES * 3 - 1
    model.run(PROG, 3, read_window=(0x1000, top), write_window=(0x2000, 0x2007))
    for read, write, code, index in [
            ((0x1001, top), (0, MEM), ErrorCode.READ_PROTECTION, 0),
            ((0x1000, top), (0x2001, MEM), ErrorCode.WRITE_PROTECTION, 1),
            ((0x1000, top - 1), (0, MEM), ErrorCode.READ_PROTECTION, 0)]:
        with pytest.raises(ProgramError) as info:
            model.run(PROG, 3, read_window=read, write_window=write)
        assert (info.value.code, info.value.index) == (code, index)
    with pytest.raises(ProgramError, match="multiple of 32") as info:
        model.run(PROG + 8, 3)
    assert info.value.code == ErrorCode.BAD_PROGRAM
    with pytest.raises(ProgramError, match="no END in its 2") as info:
        model.run(PROG, 2)
    assert (info.value.code, info.value.index) == (ErrorCode.PROGRAM_OVERRUN, 2)


def test_missing_end_and_out_of_memory_accesses():
    model = model_with()
    prog = Program(CFG)
    prog.fence()
    prog.fence()
    model.write(PROG, prog.to_bytes())
    with pytest.raises(ValueError, match=r"has no END in its 2 instructions"):
        model.run(PROG, 2)
    with pytest.raises(ValueError, match=r"positive length .* not 0 instructions"):
        model.run(PROG, 0)
    model.write(MEM - INSTR_BYTES, prog.to_bytes()[:INSTR_BYTES])      # a FENCE at the top
    with pytest.raises(ValueError, match=r"instruction 1: instruction fetch 0x10000 \.\. "
                                         r"0x1001f is outside the modelled memory"):
        model.run(MEM - INSTR_BYTES, 2)
    prog = Program(CFG)
    prog.fence()
    prog.load(buf=Buffer.SPAD_A, buf_addr=0, addr=MEM - 4, rows=1, row_bytes=8)
    prog.end()
    with pytest.raises(ValueError, match=r"instruction 1: LOAD source 0xfffc \.\. 0x10003 is "
                                         r"outside the modelled memory 0x0 \.\. 0xffff"):
        run(model, prog)
    prog = Program(CFG)
    prog.store(acc_addr=0, rows=2, addr=MEM - 16, row_bytes=8, stride=12)
    prog.end()
    with pytest.raises(ValueError, match=r"instruction 0: STORE destination"):
        run(model, prog)


def test_memory_base_offset_and_bytearray():
    memory = bytearray(0x1000)
    model = IsaModel(CFG, memory, base=0x4000_0000)
    model.write(0x4000_0100, int32_bytes([11, 22]))
    prog = Program(CFG)
    prog.load(buf=Buffer.ACC, buf_addr=0, addr=0x4000_0100, rows=1, row_bytes=8)
    prog.store(acc_addr=0, rows=1, addr=0x4000_0200, row_bytes=8, out_type=OutType.INT32)
    prog.end()
    memory[0x800:0x800 + 32 * len(prog)] = prog.to_bytes()
    model.run(0x4000_0800, len(prog))
    assert np.frombuffer(bytes(memory[0x200:0x208]), "<i4").tolist() == [11, 22]
    with pytest.raises(ValueError, match=r"memory must be a 1-D numpy uint8 array or a "
                                         r"bytearray, not an array of int32"):
        IsaModel(CFG, np.zeros(4, dtype=np.int32))


def test_execute_validates_fields():
    model = model_with()
    with pytest.raises(ValueError, match=r"illegal instruction 5: MATMUL: k must be from 1 to 8"):
        model.execute({"opcode": Opcode.MATMUL, "m": 1, "k": 9, "n": 1}, 5)
