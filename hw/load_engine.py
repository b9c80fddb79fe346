"""Load engine: LOAD instructions, from 2-D strided memory regions into buffer rows."""

import functools
import operator

from amaranth import *
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .accumulator import acc_row_layout
from .axi import Resp
from .engine import ErrorCode, engine_members
from .isa import Buffer, LoadLayout, acc_bytes, buffer_row_bytes, operand_bytes
from .realign import Realigner
from .scratchpad import a_row_layout, b_row_layout, rows_layout
from .skid import SkidBuffer
from .transfer import Beat, Descriptor, Status, _log2

__all__ = ["LoadEngine"]


def _row_bytes(cfg):
    return max(buffer_row_bytes(cfg, buf) for buf in Buffer)


class _Job(data.StructLayout):
    """What cutting and writing the rows of one LOAD needs. ``packed`` marks a coalesced
    LOAD whose rows are narrower than a stripe, so that one stripe holds several of them.
    ``last_slot`` (the stripe a row ends in) and ``rows_m1`` are worked out as the job is
    queued, so that the cut's end-of-row and end-of-LOAD checks are comparisons of
    registers."""

    def __init__(self, cfg):
        depth = max(cfg.spad_depth, cfg.acc_depth)
        R = _row_bytes(cfg)
        super().__init__({
            "buf": Buffer,
            "buf_addr": range(max(depth, 2)),
            "rows": range(depth + 1),
            "rows_m1": range(depth + 1),
            "row_bytes": range(R + 1),
            "last_slot": range(max(-(-R // cfg.stripe_bytes), 2)),
            "packed": 1,
        })


class _Ticket(data.StructLayout):
    """What retiring, or reporting the failure of, one LOAD needs."""

    def __init__(self):
        super().__init__({"push_prev": 1, "push_next": 1, "index": 32})


class LoadEngine(wiring.Component):
    """Runs LOAD instructions: reads each memory row and writes it, zero-padded, into a row of
    scratchpad bank A, bank B or the accumulator memory.

    Each LOAD becomes one read descriptor. Its memory rows are contiguous when ``stride ==
    row_bytes``; if moreover ``rows > 1`` and ``row_bytes`` is a power of two, the descriptor is
    a single row of ``rows * row_bytes`` bytes (one long burst instead of many short ones), and
    the buffer rows are cut out of its stripes: ``stripe_bytes / row_bytes`` rows per stripe,
    or ``row_bytes / stripe_bytes`` stripes per row. Otherwise the descriptor has one row per
    memory row. The read data goes through a :class:`~hw.realign.Realigner` that starts every
    descriptor row at byte 0 of a stripe, then a fall-through :class:`~hw.skid.SkidBuffer`;
    rows wider than a stripe are assembled from several.

    Up to ``depth`` LOADs have their descriptors issued ahead of the one being written (the
    read engine answers in order), and a buffer row is written in every cycle in which the
    realigner has the data for one, across LOAD boundaries too (the realigner starts the next
    descriptor in the cycle after the previous one's last stripe). Packed rows
    into the scratchpad go ``cfg.load_rows`` at a time: up to that many rows of a stripe are
    cut and written in one cycle (the scratchpad's sub-banks take any ``load_rows``
    consecutive rows at once), so a stripe of 16-byte rows in 128 bytes takes one cycle with
    ``load_rows`` 8 instead of eight. Accumulator rows go one per cycle. A LOAD
    retires once its last row is written and its read status is OKAY. A status with an error
    response, ``aborted`` or ``invalid`` pulses ``error`` (``READ_ERROR``, the LOAD's index,
    the status address) instead; the engine then takes no instruction until ``abort``, writes
    nothing more, and drops the data and statuses of every descriptor still in flight. While
    ``abort`` is high, offered instructions are taken and dropped.

    Parameters
    ----------
    cfg : AccelConfig
    depth : int
        LOADs in flight (descriptor issued, not yet retired).

    Members
    -------
    instr, retire, error, abort, busy, stall
        As :func:`hw.engine.engine_members`, with body ``LoadLayout(cfg)``; ``stall`` is high
        in busy cycles that write no buffer row.
    rd_desc : Out(stream.Signature(Descriptor))
        To a :class:`~hw.read_engine.ReadEngine`'s ``desc``.
    rd_data : In(stream.Signature(Beat))
        From the read engine's ``data``.
    rd_status : In(stream.Signature(Status))
        From the read engine's ``status``.
    a_write : In(WritePort.Signature(addr_width, rows_layout(cfg, a_row_layout(cfg)), 1))
    b_write : In(WritePort.Signature(addr_width, rows_layout(cfg, b_row_layout(cfg)), 1))
        To :class:`~hw.scratchpad.Scratchpad` ``a_write`` and ``b_write`` (``load_rows`` rows
        from ``addr``, one enable bit per row); ``addr_width`` is ``ceil_log2(spad_depth)``.
    acc_write : In(WritePort.Signature(addr_width, acc_row_layout(cfg), granularity=1))
        To :class:`~hw.accumulator.Accumulator` ``load``; ``addr_width`` is
        ``ceil_log2(acc_depth)``.
    acc_loading : Out(1)
        To the accumulator's ``loading``: a register, high in every cycle in which
        ``acc_write.en`` may be non-zero.

    Raises
    ------
    ValueError
        If a buffer is deeper than a descriptor's 16-bit ``rows`` field can count.
    """

    def __init__(self, cfg, depth=8):
        if max(cfg.spad_depth, cfg.acc_depth) >= 1 << Descriptor(cfg)["rows"].width:
            raise ValueError(f"the load engine moves at most 65535 rows per LOAD; spad_depth "
                             f"{cfg.spad_depth} and acc_depth {cfg.acc_depth} must not exceed it")
        self._cfg, self._depth = cfg, depth
        spad_aw, acc_aw = ceil_log2(cfg.spad_depth), ceil_log2(cfg.acc_depth)
        super().__init__({
            **engine_members(cfg, LoadLayout(cfg)),
            "rd_desc": Out(stream.Signature(Descriptor(cfg))),
            "rd_data": In(stream.Signature(Beat(cfg))),
            "rd_status": In(stream.Signature(Status(cfg))),
            "a_write": In(WritePort.Signature(
                addr_width=spad_aw, shape=rows_layout(cfg, a_row_layout(cfg)), granularity=1)),
            "b_write": In(WritePort.Signature(
                addr_width=spad_aw, shape=rows_layout(cfg, b_row_layout(cfg)), granularity=1)),
            "acc_write": In(WritePort.Signature(addr_width=acc_aw, shape=acc_row_layout(cfg),
                                                granularity=1)),
            "acc_loading": Out(1),
        })

    def elaborate(self, platform):
        cfg, D = self._cfg, self._depth
        S, ls = cfg.stripe_bytes, _log2(cfg.stripe_bytes)
        R = _row_bytes(cfg)                 # bytes of the widest buffer row
        slots = -(-R // S)                  # stripes a buffer row may span
        g = operand_bytes(cfg)              # every element size is a multiple of this
        depth = max(cfg.spad_depth, cfg.acc_depth)
        can_coalesce = depth * R < 1 << Descriptor(cfg)["row_bytes"].width
        m = Module()

        halted = Signal()       # a read failed: take nothing until abort
        draining = Signal()     # dropping what is in flight
        flush = Signal()
        m.d.comb += flush.eq(halted | draining | self.abort)

        # Issue: one instruction per cycle into a stage register, whose descriptor goes to the
        # read engine, the realigner's queue, the row queue and the retire queue at once.
        m.submodules.descs = descs = ResetInserter(flush)(
            fifo.SyncFIFOBuffered(width=Descriptor(cfg).size, depth=D))
        m.submodules.jobs = jobs = ResetInserter(flush)(
            fifo.SyncFIFOBuffered(width=_Job(cfg).size, depth=D))
        m.submodules.tickets = tickets = fifo.SyncFIFOBuffered(width=_Ticket().size, depth=D)

        outstanding = Signal(range(D + 1))     # descriptors issued, status not yet taken
        stage_valid = Signal()
        stage_desc = Signal(Descriptor(cfg))
        stage_job = Signal(_Job(cfg))
        stage_ticket = Signal(_Ticket())
        room = (outstanding < D) & descs.w_rdy & jobs.w_rdy & tickets.w_rdy
        issue = Signal()
        m.d.comb += [
            self.rd_desc.payload.eq(stage_desc),
            self.rd_desc.valid.eq(stage_valid & room & ~flush),
            issue.eq(self.rd_desc.valid & self.rd_desc.ready),
            descs.w_data.eq(stage_desc), descs.w_en.eq(issue),
            jobs.w_data.eq(stage_job), jobs.w_en.eq(issue),
            tickets.w_data.eq(stage_ticket), tickets.w_en.eq(issue),
        ]

        with m.If(self.abort):
            m.d.comb += self.instr.ready.eq(1)
        with m.Elif(~flush):
            m.d.comb += self.instr.ready.eq(~stage_valid | issue)
        accept = self.instr.valid & self.instr.ready & ~flush

        instr = self.instr.payload
        body = instr.body
        rb = body.row_bytes
        pow2 = (rb != 0) & ((rb & (rb - 1)) == 0)
        coalesce = Signal()
        m.d.comb += coalesce.eq(can_coalesce & pow2 & (body.stride == rb) & (body.rows > 1))
        # rows * row_bytes for a power-of-two row_bytes: one shifted copy of rows.
        total = functools.reduce(operator.or_,
                                 [Mux(rb[k], body.rows << k, 0) for k in range(len(rb))])
        with m.If(accept):
            m.d.sync += [
                stage_valid.eq(1),
                stage_desc.addr.eq(body.addr),
                stage_desc.rows.eq(Mux(coalesce, 1, body.rows)),
                stage_desc.row_bytes.eq(Mux(coalesce, total, rb)),
                stage_desc.stride.eq(body.stride),
                stage_job.buf.eq(body.buf),
                stage_job.buf_addr.eq(body.buf_addr),
                stage_job.rows.eq(body.rows),
                stage_job.rows_m1.eq(body.rows - 1),
                stage_job.row_bytes.eq(rb),
                stage_job.last_slot.eq(Mux(rb == 0, 0, (rb - 1) >> ls)),
                stage_job.packed.eq(coalesce & (rb < S)),
                stage_ticket.push_prev.eq(instr.header.push_prev),
                stage_ticket.push_next.eq(instr.header.push_next),
                stage_ticket.index.eq(instr.index),
            ]
        with m.Elif(issue | flush):
            m.d.sync += stage_valid.eq(0)

        # Realign: every descriptor row starts at byte 0 of a stripe.
        m.submodules.realign = realign = ResetInserter(flush)(Realigner(cfg))
        head = Signal(Descriptor(cfg))
        rd = realign.desc.payload
        m.d.comb += [
            head.eq(descs.r_data),
            rd.src.eq(head.addr), rd.dst.eq(0), rd.rows.eq(head.rows),
            rd.row_bytes.eq(head.row_bytes), rd.src_stride.eq(head.stride), rd.dst_stride.eq(0),
            realign.desc.valid.eq(descs.r_rdy),
            descs.r_en.eq(realign.desc.ready),
            realign.i.payload.eq(self.rd_data.payload),
            realign.i.valid.eq(self.rd_data.valid & ~flush),
            self.rd_data.ready.eq(realign.i.ready | flush),
        ]

        # Cut: buffer rows out of the aligned stripes, one row per cycle, or up to load_rows
        # rows of a packed stripe into the scratchpad. The stripes come through a fall-through
        # skid buffer, so the cut's row arithmetic behind its ready does not reach the
        # realigner's state in the same cycle.
        job = Signal(_Job(cfg))
        m.d.comb += job.eq(jobs.r_data)
        m.submodules.stripes = stripes = ResetInserter(flush)(SkidBuffer(Beat(cfg), latency=0))
        wiring.connect(m, realign.o, stripes.i)
        o = stripes.o
        cur = o.payload.data
        slot = Signal(range(max(slots, 2)))        # stripe of the current row
        off = Signal(ls)                           # byte offset of a packed row in its stripe
        row = Signal(range(depth + 1))             # rows of the job cut so far
        held = [Signal(8 * S, name=f"held{i}") for i in range(slots - 1)]

        def byte(value, i):
            return value[8 * i:8 * i + 8]

        # Up to W rows per cycle out of a packed stripe into the scratchpad: row k of the cut
        # (k >= 1) starts at offs[k] and exists while it is inside the stripe and the LOAD.
        W = cfg.load_rows
        RS = max(buffer_row_bytes(cfg, b) for b in (Buffer.SPAD_A, Buffer.SPAD_B))
        offs = [off] + [Signal(ls + 1, name=f"off{k}") for k in range(1, W + 1)]
        more = [Signal(name=f"more{k}") for k in range(1, W)]
        for k in range(1, W + 1):
            m.d.comb += offs[k].eq(off + job.row_bytes * k)
        ok = job.packed & (job.buf != Buffer.ACC)
        for k, valid in enumerate(more, 1):
            m.d.comb += valid.eq(ok & ~offs[k][ls] & (row + k < job.rows))
            ok = valid
        cut = Signal(range(W + 1))              # rows cut this cycle
        next_off = Signal(ls + 1)
        m.d.comb += [cut.eq(1), next_off.eq(offs[1])]
        for k, valid in enumerate(more, 1):
            with m.If(valid):
                m.d.comb += [cut.eq(k + 1), next_off.eq(offs[k + 1])]

        row_done = slot == job.last_slot
        last_row = row_done & (row + (cut - 1) == job.rows_m1)
        stripe_done = ~job.packed | last_row | next_off[ls]
        go = Signal()
        m.d.comb += [
            go.eq(o.valid & jobs.r_rdy & ~flush),
            o.ready.eq(go & stripe_done),
            jobs.r_en.eq(go & last_row),
        ]

        def select(at, nbytes):
            """Bytes ``0 .. nbytes - 1`` of the packed row at stripe offset ``at``: it starts
            at a multiple of row_bytes, so byte p of it (p < row_bytes, a power of two) is
            stripe byte at + p = at | p: the choice is among the bytes that share the low bits
            of p, indexed by the bits of ``at`` above them."""
            out = []
            for p in range(nbytes):
                b = p.bit_length()
                if b >= ls:
                    out.append(byte(cur, p))
                else:
                    out.append(Cat(byte(cur, (c << b) | p) for c in range(S >> b))
                               .word_select(at[b:ls], 8))
            return Cat(out)

        def pad(whole, nbytes):
            return Cat(Mux(job.row_bytes > k * g, whole[8 * g * k:8 * g * (k + 1)], 0)
                       for k in range(nbytes // g))

        first = select(off, min(R, S))
        parts = [first if slots == 1 else Mux(slot == 0, first, held[0])]
        for i in range(1, slots):
            width = 8 * min(S, R - i * S)
            parts.append(cur[:width] if i == slots - 1 else Mux(slot == i, cur, held[i]))
        # rows k >= 1 are packed, so they lie within a stripe
        padded = [pad(Cat(parts), R)] + [pad(select(offs[k], min(RS, S)), min(RS, S))
                                         for k in range(1, W)]

        wr_valid = Signal()
        wr_last = Signal()
        wr_buf = Signal(Buffer)
        wr_addr = Signal(range(max(depth, 2)))
        wr_rows = [Signal(8 * R, name="wr_row0")] + [
            Signal(8 * RS, name=f"wr_row{k}") for k in range(1, W)]
        wr_more = Signal(W)                     # which rows of the cut exist
        m.d.sync += [wr_valid.eq(go & row_done),
                     self.acc_loading.eq(go & row_done & (job.buf == Buffer.ACC))]
        with m.If(go):
            with m.If(row_done):
                m.d.sync += [wr_last.eq(last_row), wr_buf.eq(job.buf),
                             wr_addr.eq(job.buf_addr + row), wr_more.eq(Cat(1, *more)),
                             slot.eq(0), row.eq(row + cut)]
                m.d.sync += [reg.eq(value) for reg, value in zip(wr_rows, padded, strict=True)]
                with m.If(job.packed):
                    m.d.sync += off.eq(next_off)
                with m.If(last_row):
                    m.d.sync += [row.eq(0), off.eq(0)]
            with m.Else():
                m.d.sync += slot.eq(slot + 1)
                for i in range(slots - 1):
                    with m.If(slot == i):
                        m.d.sync += held[i].eq(cur)
        with m.If(flush):
            m.d.sync += [slot.eq(0), row.eq(0), off.eq(0)]

        # Write: whole rows, all lanes, into the LOAD's buffer (the scratchpad W at a time).
        write = Signal()
        m.d.comb += write.eq(wr_valid & ~flush)

        def lanes(row, n, size, width):
            return Cat(row[8 * size * i:8 * size * i + width] for i in range(n))

        for port, buf, n in ((self.a_write, Buffer.SPAD_A, cfg.rows),
                             (self.b_write, Buffer.SPAD_B, cfg.cols)):
            m.d.comb += [
                port.addr.eq(wr_addr),
                port.data.eq(Cat(lanes(r, n, g, cfg.in_width) for r in wr_rows)),
                port.en.eq(Mux(write & (wr_buf == buf), wr_more, 0)),
            ]
        port = self.acc_write
        m.d.comb += [
            port.addr.eq(wr_addr),
            port.data.eq(lanes(wr_rows[0], cfg.cols, acc_bytes(cfg), cfg.acc_width)),
            port.en.eq(Mux(write & (wr_buf == Buffer.ACC), (1 << len(port.en)) - 1, 0)),
        ]

        # Retire: statuses come in order, through a register slice (so that the retirement,
        # which the controller acts on in the same cycle, starts from registers); an OKAY
        # one is taken once its LOAD's rows are written (in the cycle of its last row's write
        # at the earliest: the row is in the buffer for any read that the retirement allows),
        # a failed one at once.
        m.submodules.statuses = statuses = SkidBuffer(Status(cfg))
        wiring.connect(m, wiring.flipped(self.rd_status), statuses.i)
        written = Signal(range(D + 1))         # LOADs written, status not yet taken
        status = statuses.o.payload
        failed = (status.resp != Resp.OKAY) | status.aborted | status.invalid
        ticket = Signal(_Ticket())
        done = Signal()
        m.d.comb += [
            ticket.eq(tickets.r_data),
            statuses.o.ready.eq(tickets.r_rdy & (flush | failed | (written != 0) |
                                                 (write & wr_last))),
            done.eq(statuses.o.valid & statuses.o.ready),
            tickets.r_en.eq(done),
            self.retire.valid.eq(done & ~flush & ~failed),
            self.retire.payload.push_prev.eq(ticket.push_prev),
            self.retire.payload.push_next.eq(ticket.push_next),
            self.error.valid.eq(done & ~flush & failed),
            self.error.payload.code.eq(ErrorCode.READ_ERROR),
            self.error.payload.index.eq(ticket.index),
            self.error.payload.addr.eq(status.addr),
        ]
        m.d.sync += [
            outstanding.eq(outstanding + issue - done),
            written.eq(written + (write & wr_last) - self.retire.valid),
        ]
        with m.If(flush):
            m.d.sync += written.eq(0)
        with m.If(self.error.valid):
            m.d.sync += halted.eq(1)
        with m.Elif(self.abort):
            m.d.sync += halted.eq(0)
        with m.If(self.abort | self.error.valid):
            m.d.sync += draining.eq(1)
        with m.Elif(outstanding == 0):
            m.d.sync += draining.eq(0)

        m.d.comb += [
            self.busy.eq(stage_valid | (outstanding != 0) | wr_valid),
            self.stall.eq(self.busy & ~write),
        ]
        return m
