"""Instruction fetch: reads the program through the read engine into an instruction buffer."""

from amaranth import *
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .engine import ErrorCode, ErrorLayout
from .isa import INSTR_BYTES, INSTR_WIDTH
from .read_arbiter import read_client
from .skid import fall_through

__all__ = ["Fetcher"]


class Fetcher(wiring.Component):
    """Fetches ``prog_len`` instruction words from ``prog_addr`` into a ``depth``-word buffer.

    Reads go out in chunks of up to ``chunk`` instructions, one read descriptor each (at most
    one every three cycles), and only while the buffer has room for every word in flight, so
    the read engine never waits on a full buffer (a LOAD sharing the engine is never blocked
    behind instruction data). Words leave on ``word`` in program order; one that arrives at
    an empty buffer is offered in the same cycle.

    ``prog_addr`` must be a multiple of ``INSTR_BYTES`` (the controller checks it). A read
    error pulses ``error`` (FETCH_ERROR, with the failing word's index and address). While
    ``stop`` is high the fetcher requests nothing, drops the buffer and any data still
    arriving, and ``idle`` rises once no read is in flight.

    Members
    -------
    start : In(1)
        Pulse: fetch ``prog_len`` words from ``prog_addr`` (sampled here); the first read
        goes out in the next cycle. Only while idle with an empty buffer (after ``stop``, as
        the controller starts a run).
    prog_addr : In(cfg.addr_width)
    prog_len : In(32)
    stop : In(1)
    rd : Out(read_client(cfg))
    word : Out(stream.Signature(INSTR_WIDTH))
    error : Out(stream.Signature(ErrorLayout, always_ready=True))
    idle : Out(1)
    level : Out(range(depth + 1))
        Words in the buffer.
    """

    def __init__(self, cfg, *, depth=32, chunk=8):
        if depth < chunk:
            raise ValueError(f"depth must be at least chunk {chunk}, not {depth}")
        self._cfg, self._depth, self._chunk = cfg, depth, chunk
        super().__init__({
            "start": In(1),
            "prog_addr": In(cfg.addr_width),
            "prog_len": In(32),
            "stop": In(1),
            "rd": Out(read_client(cfg)),
            "word": Out(stream.Signature(INSTR_WIDTH)),
            "error": Out(stream.Signature(ErrorLayout(cfg), always_ready=True)),
            "idle": Out(1),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        cfg, D, CH = self._cfg, self._depth, self._chunk
        S = cfg.stripe_bytes
        m = Module()
        m.submodules.buf = buf = ResetInserter(self.stop)(
            fifo.SyncFIFO(width=INSTR_WIDTH, depth=D))

        base = Signal(cfg.addr_width)
        next_addr = Signal(cfg.addr_width)
        remaining = Signal(32)          # words not yet requested
        inflight = Signal(range(D + 1))     # words requested and not yet in the buffer
        pending = Signal(range(D + 1))      # descriptors whose status has not come back
        m.d.comb += [self.idle.eq(pending == 0), self.level.eq(buf.level)]

        # Requests ------------------------------------------------------------------------------
        # The next chunk and whether it may go out, from registers: computed one and two
        # cycles ahead, and not used in the two cycles after a request, start or stop (their
        # values then lag). Room only grows meanwhile otherwise (a word arriving moves from
        # in flight to the buffer, one leaving frees a place; a status frees a descriptor).
        n = Signal(range(CH + 1))
        more, fits = Signal(), Signal()
        cool = Signal(2)
        m.d.sync += [n.eq(Mux(remaining < CH, remaining, CH)), more.eq(remaining != 0),
                     fits.eq((buf.level + inflight + n <= D) & (pending < D))]
        with m.If(self.start):
            # the first chunk at once: the buffer is empty and nothing is in flight
            m.d.sync += [n.eq(Mux(self.prog_len < CH, self.prog_len, CH)),
                         more.eq(self.prog_len != 0), fits.eq(1)]
        desc = self.rd.desc
        m.d.comb += [
            desc.valid.eq(~self.stop & (cool == 0) & more & fits),
            desc.payload.addr.eq(next_addr),
            desc.payload.rows.eq(1),
            desc.payload.row_bytes.eq(n * INSTR_BYTES),
            desc.payload.stride.eq(0),
        ]
        request = desc.valid & desc.ready
        m.d.sync += cool.eq(Mux(self.start, 0, Cat(request | self.stop, cool[0])))

        # Data: stripes to words ------------------------------------------------------------
        beat = self.rd.data.payload
        word_in = Signal()
        if S >= INSTR_BYTES:
            per = S // INSTR_BYTES
            slot = Signal(range(per))
            present = beat.mask.word_select(slot, INSTR_BYTES)[0]
            m.d.comb += buf.w_data.eq(beat.data.word_select(slot, INSTR_WIDTH))
            last_slot = slot == per - 1
            # Each slot of a stripe takes a cycle; the slots outside the transfer are skipped.
            go = self.rd.data.valid & (buf.w_rdy | ~present | self.stop)
            with m.If(go):
                m.d.sync += slot.eq(Mux(last_slot, 0, slot + 1))
            m.d.comb += [self.rd.data.ready.eq(go & last_slot),
                         word_in.eq(go & present & ~self.stop)]
        else:
            per = INSTR_BYTES // S
            part = Signal(range(per))
            held = Signal(INSTR_WIDTH - 8 * S)
            m.d.comb += buf.w_data.eq(Cat(held, beat.data))
            last_part = part == per - 1
            go = self.rd.data.valid & (buf.w_rdy | ~last_part | self.stop)
            with m.If(go):
                m.d.sync += part.eq(Mux(last_part, 0, part + 1))
                for k in range(per - 1):
                    with m.If(part == k):
                        m.d.sync += held.word_select(k, 8 * S).eq(beat.data)
            m.d.comb += [self.rd.data.ready.eq(go),
                         word_in.eq(go & last_part & ~self.stop)]
        # A word arriving at an empty buffer is offered at once, and kept only if not taken.
        head, has_word = fall_through(m, buf, word_in, self.word.valid & self.word.ready)
        m.d.comb += [self.word.valid.eq(has_word), self.word.payload.eq(head)]

        # Statuses ------------------------------------------------------------------------------
        st = self.rd.status.payload
        m.d.comb += self.rd.status.ready.eq(1)
        status_in = self.rd.status.valid
        bad = status_in & ((st.resp != 0) | st.aborted | st.invalid)
        m.d.comb += [
            self.error.valid.eq(bad & ~self.stop),
            self.error.payload.code.eq(ErrorCode.FETCH_ERROR),
            self.error.payload.index.eq((st.addr - base)[ceil_log2(INSTR_BYTES):]),
            self.error.payload.addr.eq(st.addr),
        ]

        m.d.sync += [pending.eq(pending + request - status_in),
                     inflight.eq(inflight + Mux(request, n, 0) - word_in)]
        with m.If(request):
            m.d.sync += [remaining.eq(remaining - n),
                         next_addr.eq(next_addr + n * INSTR_BYTES)]
        with m.If(self.stop):
            m.d.sync += [remaining.eq(0), inflight.eq(0)]
        with m.If(self.start):
            m.d.sync += [base.eq(self.prog_addr), next_addr.eq(self.prog_addr),
                         remaining.eq(self.prog_len), inflight.eq(0)]
        return m
