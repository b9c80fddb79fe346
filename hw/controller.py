"""The controller: program sequencing, instruction decode, the three queues and their tokens.

A START from the CSR block begins a run: the :class:`~hw.fetch.Fetcher` reads the program,
decode checks each word and appends LOAD, MATMUL and STORE to the load, compute and store
queues (``QUEUE_DEPTH`` instructions each). The head of a queue goes to its engine once the
tokens its ``pop_*`` bits ask for are there; an engine's retirement gives the tokens of its
``push_*`` bits. FENCE and END wait until every queue is empty and every engine idle; END
then ends the run with ``done``.

Decode dispatches in program order and stops at a queue that is full, so a program must
place every instruction after the instructions whose tokens it waits for (the natural order,
which :meth:`sim.assembler.Program.check_tokens` verifies); then no queue can fill up with
instructions waiting for tokens that a later instruction would give.

The first error of a run (an illegal instruction, a memory error of fetch, LOAD or STORE, a
bad program address or length, or SOFT_RESET) is latched with its code, the index of the
instruction and an address, and aborts the run: decode stops, the queues are emptied, the
engines drop what they are offered and finish the memory transactions already issued, and
when all are idle ``error`` pulses and ``busy`` falls. An abort never leaves a memory
transaction open.

Decode refuses an instruction with the code :func:`hw.isa.validate` gives it, checked in the
same order: encoding (``ILLEGAL_INSTRUCTION``), counts (``BAD_DIMENSION``), buffer ranges
(``BUFFER_RANGE``), then the LOAD's or STORE's memory region against the read or write
protection window (``READ_PROTECTION``, ``WRITE_PROTECTION``), with the instruction's index
and address. A refused instruction moves no byte: it never reaches its engine. Three
register stages between the instruction buffer and decode compute the region's last byte (the
region, the product ``(rows - 1) * stride``, the sum) and the checks, so decode acts on
registered verdicts; a register slice between each queue and its engine keeps the engine's
ready out of the token logic. At START, the whole program (``PROG_LEN`` instructions from
``PROG_ADDR``) must lie in the read window (``READ_PROTECTION`` otherwise, index 0, address
``PROG_ADDR``).

Running past ``PROG_LEN`` instructions without END stops the program with
``PROGRAM_OVERRUN``. When every engine is idle, every queue is either empty or waits at its
head for a token, and decode cannot dispatch the next instruction either (its queue is full,
or it is a FENCE or END that waits for the queues), no token can ever come: after
``DEADLOCK_CYCLES`` such cycles the program stops with ``TOKEN_DEADLOCK`` and the index of
the first waiting head.
"""

from amaranth import *
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from .engine import ErrorCode, ErrorLayout, engine_members
from .fetch import Fetcher
from .isa import (
    HEADER_WIDTH,
    INSTR_BYTES,
    Buffer,
    Dataflow,
    InstructionLayout,
    LoadLayout,
    MatmulLayout,
    Opcode,
    OutType,
    StoreLayout,
    acc_bytes,
    buffer_row_bytes,
    operand_bytes,
    out_bytes,
)
from .read_arbiter import read_client
from .skid import SkidBuffer, fall_through
from .transfer import _count

__all__ = ["QUEUE_DEPTH", "DEADLOCK_CYCLES", "StateLayout", "TOKEN_CHANNELS", "Controller"]

QUEUE_DEPTH = 8
DEADLOCK_CYCLES = 4

#: The token channels, named producer-consumer (``lc``: load to compute, ...).
TOKEN_CHANNELS = ("lc", "cl", "cs", "sc")

#: The controller's state as the STATE register shows it: what each part is doing now.
StateLayout = data.StructLayout({
    "load_busy": 1, "compute_busy": 1, "store_busy": 1, "fetch_busy": 1,
    "running": 1, "finishing": 1, "aborting": 1, "_unused": 1,
    "load_queue": 4, "compute_queue": 4, "store_queue": 4, "fetched": 6,
    "_unused2": 6,
})

_QUEUES = ("load", "compute", "store")
_BODY = {"load": "load", "compute": "matmul", "store": "store"}


def _engine_port(cfg, body):
    """The controller's side of an engine (the engine's members, flipped)."""
    return In(wiring.Signature(engine_members(cfg, body)))


def _within(value, lo, hi):
    return (value >= lo) & (value <= hi)


def _multiple(value, elem):
    return value[:(elem - 1).bit_length()] == 0


def _check_load(cfg, f):
    """``(encoding ok, counts ok, buffer range ok)`` of a LOAD body."""
    spad, acc = cfg.spad_depth, cfg.acc_depth
    dims, ranges = [], []
    for buf, depth, elem in ((Buffer.SPAD_A, spad, operand_bytes(cfg)),
                             (Buffer.SPAD_B, spad, operand_bytes(cfg)),
                             (Buffer.ACC, acc, acc_bytes(cfg))):
        row = buffer_row_bytes(cfg, buf)
        dims.append((f.buf == buf) & _within(f.rows, 1, depth) &
                    _within(f.row_bytes, elem, row) & _multiple(f.row_bytes, elem))
        ranges.append((f.buf == buf) & (f.buf_addr + f.rows <= depth))
    legal = (f.buf == Buffer.SPAD_A) | (f.buf == Buffer.SPAD_B) | (f.buf == Buffer.ACC)
    return legal, Cat(dims).any(), Cat(ranges).any()


def _check_matmul(cfg, f):
    ws = f.dataflow == Dataflow.WS
    spad, acc = cfg.spad_depth, cfg.acc_depth
    ws_dim = _within(f.k, 1, cfg.rows) & _within(f.m, 1, min(acc, spad))
    os_dim = _within(f.m, 1, min(cfg.rows, acc)) & _within(f.k, 1, spad)
    dim = _within(f.n, 1, cfg.cols) & Mux(ws, ws_dim, os_dim)
    a_range = Mux(ws, f.a_addr + f.m <= spad, f.a_addr + f.k <= spad)
    rng = (a_range & (f.keep_weights | (f.b_addr + f.k <= spad)) & (f.c_addr + f.m <= acc))
    return ws | ~f.keep_weights, dim, rng


def _check_store(cfg, f):
    acc = cfg.acc_depth
    sizes = []
    for t in OutType:
        ob = out_bytes(t)
        sizes.append((f.out_type == t) & _within(f.row_bytes, ob, cfg.cols * ob) &
                     _multiple(f.row_bytes, ob))
    legal = Cat(f.out_type == t for t in OutType).any()
    dim = (_within(f.rows, 1, acc) & Cat(sizes).any() &
           ((f.rows <= 1) | (f.stride >= f.row_bytes)))
    rng = ((f.acc_addr + f.rows <= acc) & (~f.bias | (f.bias_addr < acc)) &
           (~f.per_column | (f.scale_addr < acc)))
    return legal, dim, rng


class _Region(data.StructLayout):
    """The fields of a LOAD or STORE body that place its memory region."""

    def __init__(self, cfg):
        load, store = LoadLayout(cfg), StoreLayout(cfg)
        super().__init__({
            name: unsigned(max(load[name].width, store[name].width))
            for name in ("addr", "rows", "row_bytes", "stride")
        })


class Controller(wiring.Component):
    """Runs programs: fetch, decode, queues, tokens and errors (see the module docstring).

    Members
    -------
    start : In(1)
        Pulse from the CSR block: begin a run (ignored while busy).
    soft_reset : In(1)
        Pulse: abort the running program (error code ABORTED); no effect while idle.
    prog_addr : In(cfg.addr_width), prog_len : In(32)
        The program; with ``read_base`` and ``read_limit``, checked at ``start`` against
        values registered a cycle before, so they must hold for a cycle before ``start`` (the
        CSR block writes at most every other cycle, and pulses ``start`` after the write).
    read_base, read_limit, write_base, write_limit : In(cfg.addr_width)
        The protection windows (inclusive byte ranges), from the CSR block.
    rd : Out(read_client(cfg))
        Instruction reads, to the read arbiter.
    load, compute, store : In(Signature(engine_members(cfg, body)))
        The engines, seen from the controller (``instr`` out, ``retire`` in, ...).
    busy : Out(1)
    done : Out(1)
        Pulse: the run reached END.
    error : Out(1)
        Pulse: the run was aborted, with the latched ``error_code``, ``error_index``,
        ``error_addr``.
    error_code : Out(8), error_index : Out(32), error_addr : Out(64)
    state : Out(StateLayout)
        What the engines, the fetcher, the sequencer and the queues are doing.
    tokens : Out(ArrayLayout(8, 4))
        Tokens given and not yet taken on each channel of :data:`TOKEN_CHANNELS`,
        saturating at 255.
    dispatched : Out(32)
        Instructions decoded and dispatched in this run.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "start": In(1),
            "soft_reset": In(1),
            "prog_addr": In(cfg.addr_width),
            "prog_len": In(32),
            "read_base": In(cfg.addr_width),
            "read_limit": In(cfg.addr_width),
            "write_base": In(cfg.addr_width),
            "write_limit": In(cfg.addr_width),
            "rd": Out(read_client(cfg)),
            "load": _engine_port(cfg, LoadLayout(cfg)),
            "compute": _engine_port(cfg, MatmulLayout(cfg)),
            "store": _engine_port(cfg, StoreLayout(cfg)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "error_code": Out(8),
            "error_index": Out(32),
            "error_addr": Out(64),
            "state": Out(StateLayout),
            "tokens": Out(data.ArrayLayout(8, len(TOKEN_CHANNELS))),
            "dispatched": Out(32),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        engines = {"load": self.load, "compute": self.compute, "store": self.store}

        running = Signal()          # fetching and dispatching
        caught = Signal()           # an error is on its way to the error registers
        aborting = Signal()         # an error was latched; waiting for everything to go idle
        finishing = Signal()        # END was executed; waiting for the fetcher to go idle
        m.d.comb += self.busy.eq(running | caught | aborting | finishing)

        m.submodules.fetch = fetch = Fetcher(cfg)
        wiring.connect(m, fetch.rd, wiring.flipped(self.rd))
        m.d.comb += [fetch.prog_addr.eq(self.prog_addr), fetch.prog_len.eq(self.prog_len),
                     fetch.stop.eq(~running)]
        starting = self.start & ~self.busy
        # The program's checks, registered: START comes from the CSR block, whose registers
        # hold for at least a cycle before its start pulse. A program that fails them is
        # never fetched.
        prog_last = self.prog_addr + self.prog_len * INSTR_BYTES - 1
        bad_program, unreadable = Signal(), Signal()
        m.d.sync += [
            bad_program.eq((self.prog_len == 0) |
                           (self.prog_addr[:(INSTR_BYTES - 1).bit_length()] != 0)),
            unreadable.eq((self.prog_addr < self.read_base) | (prog_last > self.read_limit)),
        ]
        launch = starting & ~bad_program & ~unreadable
        m.d.comb += fetch.start.eq(launch)

        # Queues ------------------------------------------------------------------------------
        flush = aborting
        queues = {}
        for name in _QUEUES:
            layout = engines[name].instr.payload.shape()
            q = ResetInserter(flush)(fifo.SyncFIFO(width=layout.size, depth=QUEUE_DEPTH))
            m.submodules[f"{name}_q"] = q
            m.submodules[f"{name}_slice"] = SkidBuffer(layout)
            queues[name] = (q, layout)

        # Pre-decode: four stages that advance together whenever decode takes its word or
        # has none. The first registers the instruction and its LOAD or STORE region (one
        # multiplier for both opcodes), the second the product (rows - 1) * stride, the
        # third the region's last byte and the checks of the encoding, dimensions and buffer
        # ranges, the fourth (decode's word) the verdict, with the protection windows.
        word = Signal(InstructionLayout(cfg))
        word_valid = Signal()
        take = Signal()
        advance = ~word_valid | take
        m.d.comb += fetch.word.ready.eq(advance)
        fetched = Signal(InstructionLayout(cfg))
        m.d.comb += fetched.eq(fetch.word.payload)
        region = Signal(_Region(cfg))
        with m.If(fetched.header.opcode == Opcode.LOAD):
            m.d.comb += [region[f].eq(fetched.body.load[f]) for f, _ in _Region(cfg)]
        with m.Else():
            m.d.comb += [region[f].eq(fetched.body.store[f]) for f, _ in _Region(cfg)]
        stages = [(Signal(InstructionLayout(cfg), name=f"pre{i}"), Signal(name=f"pre{i}_valid"))
                  for i in range(3)]
        regions = [Signal(_Region(cfg), name=f"pre{i}_region") for i in range(2)]
        rows_m1 = Signal.like(region.rows)
        product = Signal(len(region.rows) + len(region.stride))
        last = Signal(cfg.addr_width + 1 + len(region.rows))
        with m.If(advance):
            m.d.sync += [
                stages[0][0].eq(fetched), stages[0][1].eq(fetch.word.valid),
                regions[0].eq(region), rows_m1.eq(region.rows - 1),
                stages[1][0].eq(stages[0][0]), stages[1][1].eq(stages[0][1]),
                regions[1].eq(regions[0]), product.eq(rows_m1 * regions[0].stride),
                stages[2][0].eq(stages[1][0]), stages[2][1].eq(stages[1][1]),
                last.eq(regions[1].addr + product + regions[1].row_bytes - 1),
                word.eq(stages[2][0]), word_valid.eq(stages[2][1]),
            ]
        with m.If(~running):
            m.d.sync += [word_valid.eq(0)] + [valid.eq(0) for _, valid in stages]

        # Checks, registered for decode: the encoding, dimensions and buffer ranges of the
        # second stage's instruction, kept beside it in the third, where the protection
        # windows are checked against its last byte -----------------------------------------
        checked = stages[1][0]
        body = checked.body
        used = {Opcode.LOAD: HEADER_WIDTH + body.load.shape().size,
                Opcode.MATMUL: HEADER_WIDTH + body.matmul.shape().size,
                Opcode.STORE: HEADER_WIDTH + body.store.shape().size,
                Opcode.FENCE: HEADER_WIDTH, Opcode.END: HEADER_WIDTH}
        raw = checked.as_value()
        h = checked.header
        legal_in, dim_in, range_in = Signal(), Signal(), Signal()
        with m.Switch(h.opcode):
            with m.Case(Opcode.LOAD):
                ok, dim, rng = _check_load(cfg, body.load)
                m.d.comb += [legal_in.eq((raw[used[Opcode.LOAD]:] == 0) & ~h.pop_prev &
                                         ~h.push_prev & ok),
                             dim_in.eq(dim), range_in.eq(rng)]
            with m.Case(Opcode.MATMUL):
                ok, dim, rng = _check_matmul(cfg, body.matmul)
                m.d.comb += [legal_in.eq((raw[used[Opcode.MATMUL]:] == 0) & ok),
                             dim_in.eq(dim), range_in.eq(rng)]
            with m.Case(Opcode.STORE):
                ok, dim, rng = _check_store(cfg, body.store)
                m.d.comb += [legal_in.eq((raw[used[Opcode.STORE]:] == 0) & ~h.pop_next &
                                         ~h.push_next & ok),
                             dim_in.eq(dim), range_in.eq(rng)]
            with m.Case(Opcode.FENCE, Opcode.END):
                m.d.comb += [legal_in.eq((raw[HEADER_WIDTH:] == 0) & (h.as_value()[4:] == 0)),
                             dim_in.eq(1), range_in.eq(1)]
        legal, dim_ok, range_ok = Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [legal.eq(legal_in), dim_ok.eq(dim_in), range_ok.eq(range_in)]

        third = stages[2][0]
        prot_ok = Signal()
        prot_code = Signal(ErrorCode)

        def window(f, base, limit):
            return (f.addr >= base) & (last <= limit)

        with m.Switch(third.header.opcode):
            with m.Case(Opcode.LOAD):
                m.d.comb += [prot_ok.eq(window(third.body.load, self.read_base, self.read_limit)),
                             prot_code.eq(ErrorCode.READ_PROTECTION)]
            with m.Case(Opcode.STORE):
                m.d.comb += [prot_ok.eq(window(third.body.store, self.write_base,
                                               self.write_limit)),
                             prot_code.eq(ErrorCode.WRITE_PROTECTION)]
            with m.Default():
                m.d.comb += prot_ok.eq(1)
        verdict = Signal(ErrorCode)
        with m.If(~legal):
            m.d.comb += verdict.eq(ErrorCode.ILLEGAL_INSTRUCTION)
        with m.Elif(~dim_ok):
            m.d.comb += verdict.eq(ErrorCode.BAD_DIMENSION)
        with m.Elif(~range_ok):
            m.d.comb += verdict.eq(ErrorCode.BUFFER_RANGE)
        with m.Elif(~prot_ok):
            m.d.comb += verdict.eq(prot_code)
        refuse = Signal(ErrorCode)
        accept = Signal()           # refuse == NONE, registered: no compare before take
        with m.If(advance):
            m.d.sync += [refuse.eq(verdict), accept.eq(verdict == ErrorCode.NONE)]

        # Decode ------------------------------------------------------------------------------
        index = Signal(32)
        op = word.header.opcode

        # A queue's level (and r_rdy) counts an entry from the cycle after its write.
        # Between each queue and its engine, a register slice: the engine's ready does not
        # reach the queue and the token counters in the same cycle.
        slices = {name: m.submodules[f"{name}_slice"] for name in _QUEUES}
        working = {name: engines[name].busy | slices[name].o.valid for name in _QUEUES}
        idle = (Cat(~w for w in working.values()).all() &
                Cat(q.level == 0 for q, _ in queues.values()).all())
        # FENCE and END wait for idle through a register: idle in the cycle before, with
        # nothing dispatched then, is idle now (only a dispatch makes new work), and no
        # engine's busy reaches decode's take and the fetch buffer in the same cycle.
        was_idle, took = Signal(), Signal()
        m.d.sync += [was_idle.eq(idle), took.eq(take)]
        dispatch = {"load": Opcode.LOAD, "compute": Opcode.MATMUL, "store": Opcode.STORE}
        entries, writing = {}, {}
        for name in dispatch:
            q, layout = queues[name]
            entry = entries[name] = Signal(layout, name=f"{name}_entry")
            writing[name] = Signal(name=f"{name}_writing")
            m.d.comb += [entry.header.eq(word.header), entry.index.eq(index),
                         entry.body.eq(word.body[_BODY[name]]), q.w_data.eq(entry)]
        with m.If(running & word_valid & accept):
            with m.Switch(op):
                for name, opcode in dispatch.items():
                    q, _ = queues[name]
                    with m.Case(opcode):
                        m.d.comb += [writing[name].eq(q.w_rdy), take.eq(q.w_rdy)]
                with m.Case(Opcode.FENCE, Opcode.END):
                    m.d.comb += take.eq(was_idle & ~took)
        with m.If(take):
            m.d.sync += index.eq(index + 1)
        end = take & (op == Opcode.END)

        # Tokens ------------------------------------------------------------------------------
        # Channels named producer_consumer; each counts tokens given and not yet taken.
        chans = {k: Signal(16, name=f"tokens_{k}") for k in TOKEN_CHANNELS}
        pops = {"load": {"pop_next": "cl"},
                "compute": {"pop_prev": "lc", "pop_next": "sc"},
                "store": {"pop_prev": "cs"}}
        pushes = {"load": {"push_next": "lc"},
                  "compute": {"push_prev": "cl", "push_next": "cs"},
                  "store": {"push_prev": "sc"}}
        inc = {k: Signal(name=f"give_{k}") for k in chans}
        dec = {k: Signal(name=f"take_{k}") for k in chans}
        waits, quiet_q = {}, {}
        for name in _QUEUES:
            q, layout = queues[name]
            e = engines[name]
            # The head: the queue's, or the instruction decode dispatches to an empty queue,
            # which goes on in the same cycle if it may (and is only written if not).
            sl = slices[name]
            went = sl.i.valid & sl.i.ready
            head = Signal(layout, name=f"{name}_head")
            head_value, has_head = fall_through(m, q, writing[name], went)
            m.d.comb += head.eq(head_value)
            # a token given in this cycle counts already
            ok = Cat(~head.header[bit] | (chans[ch] != 0) | inc[ch]
                     for bit, ch in pops[name].items()).all()
            wiring.connect(m, sl.o, wiring.flipped(e.instr))
            m.d.comb += [sl.i.payload.eq(head),
                         sl.i.valid.eq(has_head & ok & running),
                         e.abort.eq(aborting)]
            for bit, ch in pops[name].items():
                m.d.comb += dec[ch].eq(went & head.header[bit])
            for bit, ch in pushes[name].items():
                m.d.comb += inc[ch].eq(e.retire.valid & e.retire.payload[bit])
            waits[name] = (q.r_rdy & ~ok, head.index)
            quiet_q[name] = (q.level == 0) | (q.r_rdy & ~ok)
        for i, (k, count) in enumerate(chans.items()):
            m.d.sync += count.eq(_count(count, inc[k], dec[k]))
            m.d.comb += self.tokens[i].eq(Mux(count > 255, 255, count))

        # Deadlock: nothing runs, every queue is empty or waits for a token, and decode is
        # stuck on an instruction it cannot dispatch.
        stuck = Signal()
        m.d.comb += stuck.eq(running & Cat(~w for w in working.values()).all() &
                             Cat(quiet_q.values()).all() &
                             Cat(w for w, _ in waits.values()).any() & word_valid & ~take &
                             accept)
        stuck_cycles = Signal(range(DEADLOCK_CYCLES + 1))
        m.d.sync += stuck_cycles.eq(Mux(stuck, stuck_cycles + 1, 0))
        deadlock = Signal()     # registered: nothing ends a deadlock but the abort it causes
        m.d.sync += deadlock.eq(stuck & (stuck_cycles == DEADLOCK_CYCLES - 1))
        waiting_index = Signal(32)      # a cycle late: stuck holds it for DEADLOCK_CYCLES
        for w, idx in reversed(waits.values()):
            with m.If(w):
                m.d.sync += waiting_index.eq(idx)

        # Errors ------------------------------------------------------------------------------
        err = Signal(ErrorLayout(cfg))
        err_valid = Signal()
        with m.If(self.soft_reset & running):
            m.d.comb += [err_valid.eq(1), err.code.eq(ErrorCode.ABORTED), err.index.eq(index)]
        for src in (fetch.error, *(e.error for e in engines.values())):
            with m.If(src.valid):
                m.d.comb += [err_valid.eq(1), err.eq(src.payload)]
        with m.If(deadlock):
            m.d.comb += [err_valid.eq(1), err.code.eq(ErrorCode.TOKEN_DEADLOCK),
                         err.index.eq(waiting_index),
                         err.addr.eq(self.prog_addr + waiting_index * INSTR_BYTES)]
        with m.If(running & word_valid & ~accept):
            m.d.comb += [err_valid.eq(1), err.code.eq(refuse), err.index.eq(index),
                         err.addr.eq(self.prog_addr + index * INSTR_BYTES)]
        with m.If(running & (index == self.prog_len) & ~end):
            m.d.comb += [err_valid.eq(1), err.code.eq(ErrorCode.PROGRAM_OVERRUN),
                         err.index.eq(index),
                         err.addr.eq(self.prog_addr + index * INSTR_BYTES)]
        with m.If(starting):
            with m.If(bad_program):
                m.d.comb += [err_valid.eq(1), err.code.eq(ErrorCode.BAD_PROGRAM),
                             err.addr.eq(self.prog_addr)]
            with m.Elif(unreadable):
                m.d.comb += [err_valid.eq(1), err.code.eq(ErrorCode.READ_PROTECTION),
                             err.addr.eq(self.prog_addr)]

        # Sequencing --------------------------------------------------------------------------
        quiet = idle & fetch.idle
        st = self.state
        m.d.comb += [
            st.load_busy.eq(self.load.busy), st.compute_busy.eq(self.compute.busy),
            st.store_busy.eq(self.store.busy), st.fetch_busy.eq(~fetch.idle),
            st.running.eq(running), st.finishing.eq(finishing), st.aborting.eq(aborting),
            st.load_queue.eq(queues["load"][0].level),
            st.compute_queue.eq(queues["compute"][0].level),
            st.store_queue.eq(queues["store"][0].level),
            st.fetched.eq(fetch.level), self.dispatched.eq(index),
        ]
        m.d.comb += [self.done.eq(0), self.error.eq(0)]
        with m.If(starting):
            m.d.sync += [running.eq(launch), index.eq(0)]
            m.d.sync += [count.eq(0) for count in chans.values()]
        # The first error goes through a register (the error registers), and aborts the run
        # in the next cycle; dispatch is gated until then by its cause (a refused word is not
        # taken) or harmless (the abort empties the queues and the engines drop what they
        # are offered).
        with m.If(err_valid & ~caught & ~aborting):
            m.d.sync += [caught.eq(1), self.error_code.eq(err.code),
                         self.error_index.eq(err.index), self.error_addr.eq(err.addr)]
        with m.If(caught):
            m.d.sync += [caught.eq(0), running.eq(0), finishing.eq(0), aborting.eq(1)]
        with m.Elif(end):
            m.d.sync += [running.eq(0), finishing.eq(1)]
        with m.If(finishing & quiet & ~caught):
            m.d.sync += finishing.eq(0)
            m.d.comb += self.done.eq(1)
        with m.If(aborting & quiet):
            m.d.sync += aborting.eq(0)
            m.d.comb += self.error.eq(1)
        return m
