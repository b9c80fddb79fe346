"""Randomized regression: seeded random GEMM programs, some of them corrupted by bit flips,
and the outcome each must have on the accelerator.

A :class:`Case` is drawn from one seed: a GEMM (random M, K, N, dataflow, bias, per-column
scales, post-processing) and, with probability ``corrupt``, one to three bit flips in its
instruction words. :func:`expect` runs the program (flipped or not) on the functional
:class:`~sim.isa_model.IsaModel` under the protection windows the run uses and says what the
hardware must do:

- ``"exact"``: finish, and leave the memory exactly as the model does (a valid program, or a
  corrupted one that is still a legal, token-correct program);
- ``"error"``: stop with the model's error code at the model's instruction index (a refused
  instruction or a program without END);
- ``"clean"``: the flips changed the dependency tokens (an opcode or token bit), so the
  program may race or deadlock by the ISA's own rules; the hardware must end (done or an
  error) within its budget, write nothing outside the write window, and run the next
  program correctly.

In every case, nothing outside the write window may change. A case may also be cut short
by SOFT_RESET at a random moment: it must then end DONE (it finished first), ABORTED, or with
the error it was going to report, and the next program must run correctly.
"""

import dataclasses

import numpy as np

from hw.isa import HEADER_WIDTH, INSTR_BYTES, INSTR_WIDTH, Dataflow, OutType, decode, queue_of
from sim.compiler import PostOp
from sim.isa_model import IsaModel, ProgramError

__all__ = ["Case", "random_post", "random_case", "flip", "token_trace", "expect"]


def random_post(rng):
    """Random post-processing: output type, ReLU, scale and shift."""
    out_type = OutType(int(rng.integers(0, 3)))
    return PostOp(out_type=out_type, relu=bool(rng.integers(0, 2)),
                  scale=int(rng.integers(0, 1 << 16)), shift=int(rng.integers(0, 24)))


@dataclasses.dataclass
class Case:
    """One program of the regression, all drawn from ``seed``."""
    seed: int
    M: int
    K: int
    N: int
    dataflow: Dataflow
    bias: bool
    per_column: bool
    post: PostOp
    flips: list         # (instruction index, bit); empty for a valid program
    abort_at: float = None  # SOFT_RESET at this fraction of the estimated run, or never

    def operands(self, cfg):
        """A, B, bias (or None) and scales (or None), from the case's seed."""
        rng = np.random.default_rng([self.seed, 1])
        A = rng.integers(cfg.in_min, cfg.in_max, (self.M, self.K), endpoint=True)
        B = rng.integers(cfg.in_min, cfg.in_max, (self.K, self.N), endpoint=True)
        bias = rng.integers(-(1 << 20), 1 << 20, self.N) if self.bias else None
        scales = rng.integers(0, 1 << 16, self.N) if self.per_column else None
        return A, B, bias, scales


def random_case(cfg, seed, max_dim, corrupt=0.5, prog_len=None, abort=0.0):
    """The case of ``seed``; ``prog_len`` (instructions) bounds where flips go and is needed
    only when the case is corrupted (the caller compiles first, then asks again). With
    probability ``abort`` the run is to be cut short by SOFT_RESET."""
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 3, 7, 13, 31, max_dim]
    M, K, N = (int(rng.choice(sizes)) if rng.random() < 0.5 else
               int(rng.integers(1, max_dim + 1)) for _ in range(3))
    dataflow = Dataflow(int(rng.integers(0, 2)))
    case = Case(seed, M, K, N, dataflow, bool(rng.integers(0, 2)), bool(rng.integers(0, 2)),
                random_post(rng), [])
    if rng.random() < abort:
        case.abort_at = float(rng.random())
    if prog_len is not None and rng.random() < corrupt:
        # mostly bits that decode reads (header and body), sometimes reserved ones
        used = HEADER_WIDTH + 200
        for _ in range(int(rng.integers(1, 4))):
            bit = int(rng.integers(0, used)) if rng.random() < 0.8 else \
                int(rng.integers(0, INSTR_WIDTH))
            case.flips.append((int(rng.integers(0, prog_len)), bit))
    return case


def flip(code, flips):
    """The program bytes ``code`` with each ``(instruction, bit)`` of ``flips`` inverted."""
    raw = bytearray(code)
    for index, bit in flips:
        raw[index * INSTR_BYTES + bit // 8] ^= 1 << (bit % 8)
    return bytes(raw)


def token_trace(cfg, code):
    """Per instruction up to the first undecodable one: its queue and token bits."""
    out = []
    for i in range(0, len(code), INSTR_BYTES):
        try:
            f = decode(cfg, int.from_bytes(code[i:i + INSTR_BYTES], "little"))
        except ValueError:
            break
        out.append((queue_of(f["opcode"]), f["pop_prev"], f["pop_next"], f["push_prev"],
                    f["push_next"]))
    return out


def expect(cfg, memory, base, prog_addr, prog_len, original, windows):
    """What the hardware must do with the program at ``prog_addr`` in ``memory`` (bytes from
    global address ``base``), given the ``original`` program bytes it was flipped from.

    Returns ``(kind, detail)``: ``("exact", memory after)``, ``("error", (code, index))`` or
    ``("clean", reason)``; see the module docstring.
    """
    mem = np.frombuffer(bytearray(memory), dtype=np.uint8)
    code = bytes(mem[prog_addr - base:prog_addr - base + prog_len * INSTR_BYTES])
    racy = token_trace(cfg, code) != token_trace(cfg, original)[:len(token_trace(cfg, code))]
    model = IsaModel(cfg, mem, base=base)
    try:
        model.run(prog_addr, prog_len, read_window=windows[0], write_window=windows[1])
    except ProgramError as e:
        if racy:
            return "clean", f"tokens changed; the model stops with {e.code.name}"
        return "error", (e.code, e.index)
    except ValueError as e:
        # a case the ISA leaves open (keep_weights without weights, memory not modelled)
        return "clean", f"undefined by the ISA: {e}"
    if racy:
        return "clean", "tokens changed"
    return "exact", mem.tobytes()
