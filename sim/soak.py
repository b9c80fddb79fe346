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
- ``"clean"``: the flips changed the dependency tokens (an opcode or token bit), or moved a
  buffer or memory access out from under the tokens that ordered it (two queues touch the
  same rows or bytes, one of them writing, with no token chain between them: see
  :func:`races`), or reads buffer rows it never wrote (whatever an earlier run left there:
  :func:`reads_unwritten`), so the outcome is not defined by the ISA; the hardware
  must end (done or an error) within its budget, write nothing outside the write window, and
  run the next program correctly.

In every case, nothing outside the write window may change. A case may also be cut short
by SOFT_RESET at a random moment: it must then end DONE (it finished first), ABORTED, or with
the error it was going to report, and the next program must run correctly.
"""

import dataclasses

import numpy as np

from hw.isa import (
    HEADER_WIDTH,
    INSTR_BYTES,
    INSTR_WIDTH,
    Buffer,
    Dataflow,
    Opcode,
    OutType,
    Queue,
    decode,
    queue_of,
    region,
)
from sim.compiler import PostOp
from sim.isa_model import IsaModel, ProgramError

__all__ = ["Case", "random_post", "random_case", "flip", "token_trace", "races",
           "reads_unwritten", "expect"]


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


def _words(cfg, code):
    """The decoded instructions of ``code`` in order, up to the first undecodable word."""
    for i in range(0, len(code), INSTR_BYTES):
        try:
            yield decode(cfg, int.from_bytes(code[i:i + INSTR_BYTES], "little"))
        except ValueError:
            return


def token_trace(cfg, code):
    """Per instruction up to the first undecodable one: its queue and token bits."""
    return [(queue_of(f["opcode"]), f["pop_prev"], f["pop_next"], f["push_prev"],
             f["push_next"]) for f in _words(cfg, code)]


# Token channels: (pushing queue, push bit) -> (popping queue, pop bit).
_CHANNELS = {(Queue.LOAD, "push_next"): (Queue.COMPUTE, "pop_prev"),
             (Queue.COMPUTE, "push_prev"): (Queue.LOAD, "pop_next"),
             (Queue.COMPUTE, "push_next"): (Queue.STORE, "pop_prev"),
             (Queue.STORE, "push_prev"): (Queue.COMPUTE, "pop_next")}


def _accesses(f):
    """``(resource, first, last, writes)`` of what an instruction touches."""
    op = f["opcode"]
    if op == Opcode.LOAD:
        first, last = region(f)
        buf = {Buffer.SPAD_A: "A", Buffer.SPAD_B: "B", Buffer.ACC: "ACC"}[f["buf"]]
        return [(buf, f["buf_addr"], f["buf_addr"] + f["rows"] - 1, True),
                ("MEM", first, last, False)]
    if op == Opcode.MATMUL:
        ws = f["dataflow"] == Dataflow.WS
        a_rows = f["m"] if ws else f["k"]
        out = [("A", f["a_addr"], f["a_addr"] + a_rows - 1, False),
               ("ACC", f["c_addr"], f["c_addr"] + f["m"] - 1, True)]
        if not f["keep_weights"]:
            out.append(("B", f["b_addr"], f["b_addr"] + f["k"] - 1, False))
        return out
    if op == Opcode.STORE:
        first, last = region(f)
        out = [("ACC", f["acc_addr"], f["acc_addr"] + f["rows"] - 1, False),
               ("MEM", first, last, True)]
        out += [("ACC", f[a], f[a], False) for a, flag in (("bias_addr", "bias"),
                                                          ("scale_addr", "per_column"))
                if f[flag]]
        return out
    return []


def _decoded(cfg, code):
    """The instructions of ``code`` up to END or the first undecodable word."""
    out = []
    for f in _words(cfg, code):
        out.append(f)
        if f["opcode"] == Opcode.END:
            break
    return out


def reads_unwritten(cfg, code):
    """Whether, in program order, an instruction reads a scratchpad or accumulator row that
    no earlier instruction of the program wrote (the buffers keep what earlier runs left, so
    the ISA does not define the result)."""
    written = {"A": set(), "B": set(), "ACC": set()}
    for f in _decoded(cfg, code):
        reads = [a for a in _accesses(f) if a[0] != "MEM" and not a[3]]
        if f["opcode"] == Opcode.MATMUL and f["accumulate"]:
            reads.append(("ACC", f["c_addr"], f["c_addr"] + f["m"] - 1, False))
        for res, first, last, _ in reads:
            if not set(range(first, last + 1)) <= written[res]:
                return True
        for res, first, last, writes in _accesses(f):
            if writes and res != "MEM":
                written[res] |= set(range(first, last + 1))
    return False


def races(cfg, code):
    """Whether two instructions of different queues touch the same buffer rows or memory
    bytes, one of them writing, with no token chain or FENCE ordering them (so the outcome
    depends on timing). Looks at the instructions up to END or the first undecodable one."""
    instrs = _decoded(cfg, code)
    n = len(instrs)
    after = [set() for _ in range(n)]     # after[i]: instructions i happens before
    last_in = {}
    pushes = {ch: [] for ch in _CHANNELS}
    pops = {ch: [] for ch in _CHANNELS}
    barrier = None
    for i, f in enumerate(instrs):
        q = queue_of(f["opcode"])
        if q is None:                       # FENCE and END order everything around them
            for j in range(i):
                after[j].add(i)
            barrier = i
            continue
        if barrier is not None:
            after[barrier].add(i)
        if q in last_in:
            after[last_in[q]].add(i)
        last_in[q] = i
        for (pq, bit), (cq, pbit) in _CHANNELS.items():
            if pq == q and f[bit]:
                pushes[(pq, bit)].append(i)
            if cq == q and f[pbit]:
                pops[(pq, bit)].append(i)
    for ch, takers in pops.items():
        for k, i in enumerate(takers):
            if k < len(pushes[ch]):
                after[pushes[ch][k]].add(i)
    # reachability, from the last instruction back (edges only go forward in time)
    reach = [set() for _ in range(n)]
    order = sorted(range(n), reverse=True)
    for i in order:
        for j in after[i]:
            reach[i] |= {j} | reach[j]
    acc = [(_accesses(f), queue_of(f["opcode"])) for f in instrs]
    for i in range(n):
        for j in range(i + 1, n):
            if acc[i][1] == acc[j][1] or j in reach[i] or i in reach[j]:
                continue
            for ri, fi, li, wi in acc[i][0]:
                for rj, fj, lj, wj in acc[j][0]:
                    if ri == rj and (wi or wj) and fi <= lj and fj <= li:
                        return True
    return False


def expect(cfg, memory, base, prog_addr, prog_len, original, windows):
    """What the hardware must do with the program at ``prog_addr`` in ``memory`` (bytes from
    global address ``base``), given the ``original`` program bytes it was flipped from.

    Returns ``(kind, detail)``: ``("exact", memory after)``, ``("error", (code, index))`` or
    ``("clean", reason)``; see the module docstring.
    """
    mem = np.frombuffer(bytearray(memory), dtype=np.uint8)
    code = bytes(mem[prog_addr - base:prog_addr - base + prog_len * INSTR_BYTES])
    trace = token_trace(cfg, code)
    racy = trace != token_trace(cfg, original)[:len(trace)]
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
    if races(cfg, code):
        return "clean", "accesses no longer ordered by the tokens"
    if reads_unwritten(cfg, code):
        return "clean", "reads buffer rows the program never wrote"
    return "exact", mem.tobytes()
