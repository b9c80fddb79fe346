"""The randomized regression's generator and expectations, on the functional model."""

import numpy as np
import pytest

from hw.config import PRESETS
from hw.isa import HEADER_WIDTH, INSTR_BYTES, ErrorCode, Opcode, StoreLayout, decode
from sim.compiler import gemm_at
from sim.reference import gemm_reference
from sim.soak import expect, flip, races, random_case, reads_unwritten

CFG = PRESETS["tiny"]
BASE = 0x10000


def placed(case):
    """Memory bytes from BASE holding the case's operands and program, and the GEMM."""
    kwargs = dict(bias=case.bias, per_column=case.per_column, post=case.post,
                  dataflow=case.dataflow)
    gemm = gemm_at(CFG, case.M, case.K, case.N, base=BASE, **kwargs)
    span = max(addr + size for addr, size in gemm.regions().values()) - BASE
    mem = bytearray(-(-span // 4096) * 4096)
    for addr, data in gemm.inputs(*case.operands(CFG)):
        mem[addr - BASE:addr - BASE + len(data)] = data
    code = gemm.program_bytes()
    mem[gemm.prog_addr - BASE:gemm.prog_addr - BASE + len(code)] = code
    return mem, gemm


def windows(mem, gemm):
    c_addr, c_size = gemm.output_region()
    return (BASE, BASE + len(mem) - 1), (c_addr, c_addr + c_size - 1)


def with_flips(mem, gemm, flips):
    code = gemm.program_bytes()
    out = bytearray(mem)
    out[gemm.prog_addr - BASE:gemm.prog_addr - BASE + len(code)] = flip(code, flips)
    return out


def test_flip_inverts_exactly_the_given_bits():
    code = bytes(range(64))
    flipped = flip(code, [(0, 0), (1, 255), (1, 9)])
    diff = int.from_bytes(code, "little") ^ int.from_bytes(flipped, "little")
    assert diff == 1 | 1 << (256 + 255) | 1 << (256 + 9)


def test_cases_are_reproducible_from_their_seed():
    a, b = random_case(CFG, 42, 24, 1.0, 30), random_case(CFG, 42, 24, 1.0, 30)
    assert a == b and a.flips and all(0 <= i < 30 and 0 <= bit < 256 for i, bit in a.flips)
    assert random_case(CFG, 42, 24) .flips == []
    assert any(random_case(CFG, s, 24, 0.5, 30).flips == [] for s in range(10))
    assert any(random_case(CFG, s, 24, 0.5, 30).flips for s in range(10))


@pytest.mark.parametrize("seed", range(3))
def test_a_valid_program_must_be_exact(seed):
    case = random_case(CFG, seed, 12)
    mem, gemm = placed(case)
    kind, after = expect(CFG, mem, BASE, gemm.prog_addr, gemm.prog_len, gemm.program_bytes(),
                         windows(mem, gemm))
    assert kind == "exact"
    c_addr, c_size = gemm.output_region()
    got = gemm.unpack_output(after[c_addr - BASE:c_addr - BASE + c_size])
    A, B, bias, scales = case.operands(CFG)
    assert np.array_equal(got, gemm_reference(CFG, A, B, bias, scales, case.post))


def test_corruptions_map_to_the_hardware_outcome():
    case = random_case(CFG, 7, 12)
    mem, gemm = placed(case)
    code = gemm.program_bytes()
    ops = [decode(CFG, int.from_bytes(code[i:i + INSTR_BYTES], "little"))["opcode"]
           for i in range(0, len(code), INSTR_BYTES)]
    win = windows(mem, gemm)

    def outcome(flips):
        return expect(CFG, with_flips(mem, gemm, flips), BASE, gemm.prog_addr, gemm.prog_len,
                      code, win)

    # a reserved bit: refused as illegal at that instruction
    assert outcome([(2, 255)]) == ("error", (ErrorCode.ILLEGAL_INSTRUCTION, 2))
    # a token bit: the program may race or deadlock, so only a clean end is required
    store = ops.index(Opcode.STORE)
    assert outcome([(store, 4)])[0] == "clean"
    # the top address bit of a STORE: outside the write window
    addr = StoreLayout(CFG)["addr"]
    bit = HEADER_WIDTH + addr.offset + addr.width - 1
    assert outcome([(store, bit)]) == ("error", (ErrorCode.WRITE_PROTECTION, store))
    # the END turned into a FENCE: the program runs past its length
    end = len(ops) - 1
    assert outcome([(end, 0)]) == ("error", (ErrorCode.PROGRAM_OVERRUN, gemm.prog_len))


@pytest.mark.parametrize("preset", ["tiny", "default"])
def test_compiled_programs_are_race_free_and_read_only_what_they_wrote(preset):
    cfg = PRESETS[preset]
    for seed in range(12):
        case = random_case(cfg, seed, 24)
        gemm = gemm_at(cfg, case.M, case.K, case.N, base=BASE, bias=case.bias,
                       per_column=case.per_column, post=case.post, dataflow=case.dataflow)
        code = gemm.program_bytes()
        assert not races(cfg, code) and not reads_unwritten(cfg, code), case


def test_undefined_corruptions_are_only_required_to_end_cleanly():
    # a MATMUL that now reads scratchpad rows nothing loaded (k 1 -> 3), and a MATMUL that
    # now gives an extra results-ready token, so that a STORE may read rows still in work
    for seed, flips, check in ((5064, [(15, 66), (5, 37)], reads_unwritten),
                               (5145, [(96, 7)], races)):
        case = random_case(CFG, seed, 24)
        mem, gemm = placed(case)
        code = gemm.program_bytes()
        assert check(CFG, flip(code, flips)) and not check(CFG, code)
        kind, _ = expect(CFG, with_flips(mem, gemm, flips), BASE, gemm.prog_addr,
                         gemm.prog_len, code, windows(mem, gemm))
        assert kind == "clean"
