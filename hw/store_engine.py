"""Store engine: accumulator rows, post-processed and packed, into 2-D strided memory regions."""

from amaranth import *
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .accumulator import acc_row_layout
from .axi import Resp
from .engine import ErrorCode, engine_members
from .isa import SCALE_WIDTH, StoreLayout
from .postprocess import PackedRowLayout, Packer, PostOpLayout, PostProcessor
from .realign import Realigner
from .skid import SkidBuffer
from .transfer import Beat, Descriptor, Status, _log2

__all__ = ["StoreEngine"]


class _Phase(enum.Enum, shape=2):
    """What the accumulator read port fetches next."""
    IDLE = 0
    BIAS = 1
    SCALE = 2
    ROWS = 3


class _Region(data.StructLayout):
    """The memory region of one STORE, with the widths of its fields in the instruction."""

    def __init__(self, cfg):
        body = StoreLayout(cfg)
        super().__init__({
            "addr": cfg.addr_width,
            "rows": body["rows"].width,
            "row_bytes": body["row_bytes"].width,
            "stride": cfg.addr_width,
        })


class _Ticket(data.StructLayout):
    """What a STORE needs when its write status comes back."""

    def __init__(self):
        super().__init__({"push_prev": 1, "push_next": 1, "index": 32})


class StoreEngine(wiring.Component):
    """Runs STORE instructions (see :mod:`hw.isa`) as an engine of :mod:`hw.engine`.

    Per STORE the engine reads the bias row (if ``bias``) and the scale row (if
    ``per_column``) once, then accumulator rows ``acc_addr .. acc_addr + rows - 1``, one per
    cycle. Each row goes through the :class:`~hw.postprocess.PostProcessor` (with the op in
    the leading bits of the STORE body) and the :class:`~hw.postprocess.Packer`; its first
    ``row_bytes`` bytes are cut into stripe-sized pieces from byte 0 and the
    :class:`~hw.realign.Realigner` moves them to ``addr + r * stride``. The write engine gets
    one descriptor ``{addr, rows, row_bytes, stride}`` per STORE and the destination stripes
    in address order.

    Throughput: one accumulator row per ``cfg.post_passes`` cycles (one, unless the
    post-processor has fewer lanes than columns) while the write side takes one stripe per
    cycle; a row costs at least as many cycles as it has destination stripes (one, for a row
    that lies within one stripe). A STORE adds a cycle for each of its bias and scale
    reads. The next STORE is taken, and its first row (or bias or scale row) read, in the
    cycle after the previous one's last row is read; up to ``depth`` STOREs are in flight
    (read, post-processed, written, or waiting for their write status), and their
    descriptors queue in front of the write engine, which starts each one once the previous
    one's bursts are issued. A register in front of the post-processor takes each row off
    the accumulator's read port, so the post-processor's arithmetic starts from registers,
    not from a block RAM's output. The read, post-processing and packing stages advance
    together; a fall-through :class:`~hw.skid.SkidBuffer` after the packer keeps
    ``wr_data.ready`` from reaching ``acc_read.en`` in the same cycle, and another after the
    realigner keeps it (and the write engine's ``cancel`` logic behind it) from reaching the
    realigner's state.

    A STORE retires when its write status is OKAY (every write response came back OKAY). A
    status with an error response, or ``aborted`` or ``invalid``, pulses ``error`` (code
    ``WRITE_ERROR``, the STORE's index, the status address) instead; after that the engine
    neither retires nor reports anything until ``abort`` has been raised.

    While ``abort`` is high the engine takes and drops the instructions offered, stops
    reading, empties the post-processor, the packer, the skid buffers and the realigner, and
    holds ``wr_cancel``: the write engine takes no more data, completes the bursts it has issued
    without writing more, and reports the transfer it runs and every one after it as
    aborted. The descriptors of STOREs that had not reached the write engine yet are passed
    to it too, so every STORE that was taken gets exactly one status; once all are in,
    ``busy`` falls. ``abort`` must stay high until then.

    ``busy`` is high from the cycle after a STORE is taken until its status is in. ``stall``
    is high in busy cycles in which no accumulator row is read and no stripe is taken by the
    write engine: the engine waits for the write side (backpressure or write responses), or
    for its own pipeline to fill.

    The STORE's ``rows`` and ``row_bytes`` must be at least 1 and ``row_bytes`` at most
    ``4 * cols`` (the instruction checks of :mod:`hw.isa`); bytes of a row past its
    ``cols * out_bytes`` are written as zero.

    Parameters
    ----------
    cfg : AccelConfig
    depth : int
        STOREs in flight.

    Members
    -------
    instr, retire, error, abort, busy, stall :
        As :func:`hw.engine.engine_members` with the body :class:`hw.isa.StoreLayout`.
    acc_read : In(ReadPort.Signature(ceil_log2(acc_depth), acc_row_layout(cfg)))
        The accumulator memory's ``store`` port: synchronous, one cycle of latency, data
        held while ``en`` is low.
    wr_desc : Out(stream.Signature(Descriptor))
        One transfer per STORE, to the write engine's ``desc``.
    wr_data : Out(stream.Signature(Beat))
        The destination stripes, to the write engine's ``data``.
    wr_status : In(stream.Signature(Status))
        The write engine's ``status``, one per transfer, in order.
    wr_cancel : Out(1)
        To the write engine's ``cancel``: high while ``abort`` is.
    """

    def __init__(self, cfg, depth=4):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self._cfg = cfg
        self._depth = depth
        super().__init__({
            **engine_members(cfg, StoreLayout(cfg)),
            "acc_read": In(ReadPort.Signature(addr_width=ceil_log2(cfg.acc_depth),
                                              shape=acc_row_layout(cfg))),
            "wr_desc": Out(stream.Signature(Descriptor(cfg))),
            "wr_data": Out(stream.Signature(Beat(cfg))),
            "wr_status": In(stream.Signature(Status(cfg))),
            "wr_cancel": Out(1),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        S, ls = cfg.stripe_bytes, _log2(cfg.stripe_bytes)
        spans = -(-4 * cfg.cols // S)            # stripes of the widest packed row
        abort = self.abort
        m = Module()

        flush = ResetInserter(abort)
        m.submodules.post = post = flush(PostProcessor(cfg))
        m.submodules.pack = pack = flush(Packer(cfg))
        m.submodules.skid = skid = flush(SkidBuffer(PackedRowLayout(cfg), latency=0))
        m.submodules.align = align = flush(Realigner(cfg))
        m.submodules.out = out = flush(SkidBuffer(align.o.payload.shape(), latency=0))
        # Regions and tickets are kept through an abort: every STORE taken gets its status.
        m.submodules.regions = regions = fifo.SyncFIFOBuffered(
            width=_Region(cfg).size, depth=self._depth)
        m.submodules.tickets = tickets = fifo.SyncFIFOBuffered(
            width=_Ticket().size, depth=self._depth)
        if spans > 1:
            # index of each STORE's last stripe within a row, for the splitter
            m.submodules.cuts = cuts = flush(fifo.SyncFIFOBuffered(
                width=ceil_log2(spans), depth=self._depth))

        # Taking a STORE ------------------------------------------------------------------------

        ins = self.instr.payload
        body = ins.body
        phase = Signal(_Phase)
        room = regions.w_rdy & tickets.w_rdy & (cuts.w_rdy if spans > 1 else 1)
        take = Signal()
        m.d.comb += [
            self.instr.ready.eq(abort | (phase == _Phase.IDLE) & room),
            take.eq(self.instr.valid & (phase == _Phase.IDLE) & room & ~abort),
        ]
        region = Signal(_Region(cfg))
        ticket = Signal(_Ticket())
        m.d.comb += [
            region.addr.eq(body.addr), region.rows.eq(body.rows),
            region.row_bytes.eq(body.row_bytes), region.stride.eq(body.stride),
            ticket.push_prev.eq(ins.header.push_prev), ticket.push_next.eq(ins.header.push_next),
            ticket.index.eq(ins.index),
            regions.w_data.eq(region), regions.w_en.eq(take),
            tickets.w_data.eq(ticket), tickets.w_en.eq(take),
        ]
        if spans > 1:
            m.d.comb += [cuts.w_data.eq((body.row_bytes - 1) >> ls), cuts.w_en.eq(take)]

        # Accumulator reads: bias, scale, then the rows ---------------------------------------

        op = Signal(PostOpLayout())             # the STORE being read
        raddr = Signal.like(self.acc_read.addr)
        bias_addr = Signal.like(self.acc_read.addr)
        scale_addr = Signal.like(self.acc_read.addr)
        left = Signal.like(body.rows)

        # The row read last cycle stays on the port's data (``en`` low) until it moves on: an
        # accumulator row into the register in front of the post-processor, a bias or scale
        # row into its own register. Either moves once that register is free or its row enters
        # the post-processor, so the post-processor starts from registers, not from the block
        # RAM's output, and a STORE's bias and scale never change under a row of the one before.
        got = Signal()
        got_phase = Signal(_Phase)
        got_last = Signal()
        got_op = Signal(PostOpLayout())
        bias = Signal(acc_row_layout(cfg))
        scale = Signal(data.ArrayLayout(SCALE_WIDTH, cfg.cols))
        row_valid = Signal()
        row_last = Signal()
        row_op = Signal(PostOpLayout())
        row_data = Signal(acc_row_layout(cfg))

        move = got & (~row_valid | post.i.ready)
        held = got & ~move
        # The first read of a STORE goes out in the cycle it is taken, from the instruction;
        # the later ones from the registers it leaves.
        idle = phase == _Phase.IDLE
        first = Mux(body.bias, _Phase.BIAS, Mux(body.per_column, _Phase.SCALE, _Phase.ROWS))
        new_op = Signal(PostOpLayout())
        m.d.comb += new_op.eq(body.as_value()[:PostOpLayout().size])
        cur_phase = Signal(_Phase)
        cur_op = Signal(PostOpLayout())
        cur_raddr = Signal.like(raddr)
        cur_left = Signal.like(left)
        m.d.comb += [
            cur_phase.eq(Mux(idle, first, phase)),
            cur_op.eq(Mux(idle, new_op, op)),
            cur_raddr.eq(Mux(idle, body.acc_addr, raddr)),
            cur_left.eq(Mux(idle, body.rows, left)),
        ]
        issue = Signal()
        m.d.comb += [
            issue.eq((~idle | take) & ~held & ~abort),
            self.acc_read.en.eq(issue),
        ]
        with m.Switch(cur_phase):
            with m.Case(_Phase.BIAS):
                m.d.comb += self.acc_read.addr.eq(Mux(idle, body.bias_addr, bias_addr))
            with m.Case(_Phase.SCALE):
                m.d.comb += self.acc_read.addr.eq(Mux(idle, body.scale_addr, scale_addr))
            with m.Default():
                m.d.comb += self.acc_read.addr.eq(cur_raddr)

        with m.If(~held):
            m.d.sync += [got.eq(issue), got_phase.eq(cur_phase),
                         got_last.eq((cur_phase == _Phase.ROWS) & (cur_left == 1))]
        with m.If(take):
            m.d.sync += [op.eq(new_op), bias_addr.eq(body.bias_addr),
                         scale_addr.eq(body.scale_addr)]
        # the current values (the instruction's when idle) are kept, and an issued read moves
        # them on below: a STORE taken while a read is held starts on its first one later
        with m.If(issue | take):
            m.d.sync += [phase.eq(cur_phase), raddr.eq(cur_raddr), left.eq(cur_left)]
        with m.If(issue):
            m.d.sync += got_op.eq(cur_op)
            with m.Switch(cur_phase):
                with m.Case(_Phase.BIAS):
                    m.d.sync += phase.eq(Mux(cur_op.per_column, _Phase.SCALE, _Phase.ROWS))
                with m.Case(_Phase.SCALE):
                    m.d.sync += phase.eq(_Phase.ROWS)
                with m.Case(_Phase.ROWS):
                    m.d.sync += [raddr.eq(cur_raddr + 1), left.eq(cur_left - 1),
                                 phase.eq(Mux(cur_left == 1, _Phase.IDLE, _Phase.ROWS))]
        with m.If(post.i.ready):
            m.d.sync += row_valid.eq(0)
        with m.If(move):
            with m.Switch(got_phase):
                with m.Case(_Phase.BIAS):
                    m.d.sync += bias.eq(self.acc_read.data)
                with m.Case(_Phase.SCALE):
                    m.d.sync += [scale[j].eq(self.acc_read.data[j][:SCALE_WIDTH])
                                 for j in range(cfg.cols)]
                with m.Case(_Phase.ROWS):
                    m.d.sync += [row_valid.eq(1), row_data.eq(self.acc_read.data),
                                 row_last.eq(got_last), row_op.eq(got_op)]

        m.d.comb += [
            post.op.eq(row_op),
            post.i.valid.eq(row_valid),
            post.i.payload.data.eq(row_data),
            post.i.payload.bias.eq(bias),
            post.i.payload.scale.eq(scale),
            post.i.payload.last.eq(row_last),
        ]
        wiring.connect(m, post.o, pack.i)
        # The write side's ready reaches the read stages a cycle later through the skid buffer,
        # not through the realigner, the packer and the post-processor in one cycle.
        wiring.connect(m, pack.o, skid.i)
        packed = skid.o

        # Packed rows into stripe-sized pieces from byte 0 of each row ------------------------

        row = packed.payload
        piece = align.i
        if spans == 1:
            m.d.comb += [
                piece.valid.eq(packed.valid),
                piece.payload.data.eq(row.data),
                piece.payload.last.eq(1),
                packed.ready.eq(piece.ready),
            ]
        else:
            part = Signal(range(spans))
            final = part == cuts.r_data
            m.d.comb += [
                piece.valid.eq(packed.valid & cuts.r_rdy),
                piece.payload.data.eq(
                    Cat(row.data, C(0, spans * 8 * S - len(row.data))).word_select(part, 8 * S)),
                piece.payload.last.eq(final),
            ]
            with m.If(piece.valid & piece.ready):
                m.d.sync += part.eq(Mux(final, 0, part + 1))
                with m.If(final):
                    m.d.comb += [packed.ready.eq(1), cuts.r_en.eq(row.last)]
            with m.If(abort):
                m.d.sync += part.eq(0)

        # Descriptors: the oldest region goes to the realigner and to the write engine, each
        # taking it when it is done with the previous STORE; the realigner is then at most one
        # STORE ahead of the write engine, which is still waiting for the previous STORE's
        # responses. While ``abort`` holds the realigner in reset it takes every region at
        # once, and the write engine aborts them.

        head = Signal(_Region(cfg))
        to_align = Signal()             # the realigner has the head region
        to_write = Signal()             # the write engine has the head region
        aligned = to_align | align.desc.valid & align.desc.ready
        written = to_write | self.wr_desc.valid & self.wr_desc.ready
        m.d.comb += [
            head.eq(regions.r_data),
            align.desc.valid.eq(regions.r_rdy & ~to_align),
            align.desc.payload.src.eq(0),
            align.desc.payload.src_stride.eq(0),
            align.desc.payload.dst.eq(head.addr),
            align.desc.payload.dst_stride.eq(head.stride),
            align.desc.payload.rows.eq(head.rows),
            align.desc.payload.row_bytes.eq(head.row_bytes),
            self.wr_desc.valid.eq(regions.r_rdy & ~to_write),
            self.wr_desc.payload.addr.eq(head.addr),
            self.wr_desc.payload.rows.eq(head.rows),
            self.wr_desc.payload.row_bytes.eq(head.row_bytes),
            self.wr_desc.payload.stride.eq(head.stride),
            regions.r_en.eq(aligned & written),
        ]
        m.d.sync += [to_align.eq(aligned & ~written), to_write.eq(written & ~aligned)]
        # The write engine's ready reaches the realigner a cycle later, through a second skid.
        wiring.connect(m, align.o, out.i)
        wiring.connect(m, out.o, wiring.flipped(self.wr_data))
        m.d.comb += self.wr_cancel.eq(abort)

        # Statuses: retire or report, in order ------------------------------------------------

        status = self.wr_status.payload
        done = Signal(_Ticket())
        failed = Signal()               # an error was reported; quiet until the abort
        report = self.wr_status.valid & tickets.r_rdy & ~abort & ~failed
        okay = (status.resp == Resp.OKAY) & ~status.aborted & ~status.invalid
        m.d.comb += [
            done.eq(tickets.r_data),
            self.wr_status.ready.eq(1),
            tickets.r_en.eq(self.wr_status.valid),
            self.retire.valid.eq(report & okay),
            self.retire.payload.push_prev.eq(done.push_prev),
            self.retire.payload.push_next.eq(done.push_next),
            self.error.valid.eq(report & ~okay),
            self.error.payload.code.eq(ErrorCode.WRITE_ERROR),
            self.error.payload.index.eq(done.index),
            self.error.payload.addr.eq(status.addr),
        ]
        with m.If(self.error.valid):
            m.d.sync += failed.eq(1)

        m.d.comb += [
            self.busy.eq(tickets.level != 0),
            self.stall.eq(self.busy & ~issue & ~(self.wr_data.valid & self.wr_data.ready)),
        ]

        with m.If(abort):
            m.d.sync += [phase.eq(_Phase.IDLE), got.eq(0), row_valid.eq(0), failed.eq(0)]
        return m
