"""Compute engine: runs MATMUL instructions, scratchpad -> systolic array -> accumulator."""

from amaranth import *
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .accumulator import Accumulator, AccWriteLayout
from .array import Dataflow, SystolicArray
from .config import AccelConfig
from .engine import RetireLayout, engine_members
from .isa import MatmulLayout
from .scratchpad import a_row_layout, b_row_layout
from .skid import fall_through

__all__ = ["ComputeEngine"]


class _AJob(data.StructLayout):
    """What the A feeder needs of a MATMUL: ``end`` + 1 rows from ``addr``; ``lanes_m1`` + 1
    lanes kept (K in WS, M in OS); ``switch``: the first row switches the array to the
    preloaded weights (WS without ``keep_weights``) or restarts the sums (OS); ``macs``
    useful multiply-accumulates per row."""

    def __init__(self, cfg):
        super().__init__({
            "addr": ceil_log2(cfg.spad_depth),
            "end": range(cfg.spad_depth),
            "lanes_m1": range(max(cfg.rows, 2)),
            "macs": range(cfg.rows * cfg.cols + 1),
            "switch": 1,
            "mode": Dataflow,
        })


class _BJob(data.StructLayout):
    """What the B feeder needs of a MATMUL: ``end`` + 1 rows from ``addr``."""

    def __init__(self, cfg):
        super().__init__({
            "addr": ceil_log2(cfg.spad_depth),
            "end": range(cfg.spad_depth),
            "mode": Dataflow,
        })


class _CJob(data.StructLayout):
    """What the result path needs of a MATMUL: where its rows go and the tokens it gives."""

    def __init__(self, cfg):
        super().__init__({
            "addr": ceil_log2(cfg.acc_depth),
            "mask": cfg.cols,
            "accumulate": 1,
            "push_prev": 1,
            "push_next": 1,
        })


class ComputeEngine(wiring.Component):
    """Runs MATMULs (see :mod:`hw.isa`) on a :class:`~hw.array.SystolicArray`, in order and
    overlapped.

    An accepted MATMUL is split into three jobs, each queued for one part of the engine:

    * the **B feeder** reads the bank-B rows (K of them; none for a WS MATMUL with
      ``keep_weights``) and streams them to the array's ``b`` input. It runs ahead of the A
      feeder by as much as the array takes: a WS tile's weights go into the array's second
      weight buffer while the previous tile computes, one row per cycle from the first to the
      last as the array requires, and OS rows pair up with their A beats;
    * the **A feeder** reads the bank-A rows (M in WS, K in OS), forces the lanes past K
      (WS) or M (OS) to zero, and streams them to the array's ``a`` input. The first row of a
      tile carries ``first`` (except a WS tile with ``keep_weights``), the last one ``last``,
      and every row ``rows_m1``: the lanes kept, minus one (M - 1 in OS, as the array needs;
      K - 1 in WS, where the array ignores it);
    * the **result path** gives each result row its accumulator row (``c_addr`` + i), the
      column mask of the tile's N columns and the ``accumulate`` flag, and sends it to the
      accumulator's ``acc`` input. The array returns its results in tile order, so the jobs of
      this queue follow it.

    A feeder whose queue is empty starts on a job in the cycle its MATMUL is accepted. Each
    feeder reads one row ahead: a row read in one cycle is offered to the array from the
    next, and the read port holds it (``en`` low) until the array takes it, so the feeders
    deliver a row every cycle and lose nothing when the array stalls. Back to back, a WS tile
    therefore costs at most max(M, K, 2) cycles (see :class:`~hw.array.SystolicArray`), and OS
    tiles with K >= M follow each other without a gap while the previous tile's results
    drain.

    A MATMUL retires in the cycle its last result row is written into the accumulator memory
    (``acc_written``; a read from the next cycle on sees it): ``Accumulator.WRITE_LATENCY - 1``
    cycles after the accumulator took the row, or later if a LOAD held the accumulator's
    pipeline. Its scratchpad reads finished before its results left the array.

    Up to ``depth`` MATMULs are in flight (accepted and not yet retired). While ``abort`` is
    high, instructions are taken and dropped and nothing retires; those already accepted run
    to completion (the compute path waits on nothing that can fail). ``error`` never fires.

    Parameters
    ----------
    cfg : AccelConfig
    depth : int
        MATMULs in flight; each of the three job queues has this many entries. The default,
        16, is the depth of an ECP5 distributed RAM, and lets tiles of a row or two follow
        each other while earlier ones are still in the array.

    Members
    -------
    instr : In(stream.Signature(EngineInstr(MatmulLayout(cfg))))
    retire : Out(stream.Signature(RetireLayout(), always_ready=True))
    error : Out(stream.Signature(ErrorLayout(cfg), always_ready=True))
        Never valid.
    abort : In(1)
    busy : Out(1)
        A MATMUL is in flight.
    stall : Out(1)
        ``busy``, and the array took no A row this cycle.
    a_read : In(ReadPort.Signature(addr_width, a_row_layout(cfg)))
        To :attr:`hw.scratchpad.Scratchpad.a_read`.
    b_read : In(ReadPort.Signature(addr_width, b_row_layout(cfg)))
        To :attr:`hw.scratchpad.Scratchpad.b_read`.
    acc : Out(stream.Signature(AccWriteLayout(cfg)))
        To :attr:`hw.accumulator.Accumulator.i`.
    acc_written : In(1)
        From :attr:`hw.accumulator.Accumulator.written`: the oldest result row the
        accumulator took and has not written yet is written in this cycle.
    macs : Out(range(rows * cols + 1))
        Useful multiply-accumulates issued this cycle: K * N for a WS row, M * N for an OS
        step, 0 when the array takes no A row.

    ``addr_width`` is ``ceil_log2(spad_depth)``.

    Raises
    ------
    TypeError
        If ``cfg`` is not an :class:`~hw.config.AccelConfig`.
    ValueError
        If ``depth`` is less than 1.
    """

    def __init__(self, cfg, *, depth=16):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self._cfg = cfg
        self._depth = depth
        addr_width = ceil_log2(cfg.spad_depth)
        super().__init__({
            **engine_members(cfg, MatmulLayout(cfg)),
            "a_read": In(ReadPort.Signature(addr_width=addr_width, shape=a_row_layout(cfg))),
            "b_read": In(ReadPort.Signature(addr_width=addr_width, shape=b_row_layout(cfg))),
            "acc": Out(stream.Signature(AccWriteLayout(cfg))),
            "acc_written": In(1),
            "macs": Out(range(cfg.rows * cfg.cols + 1)),
        })

    @property
    def cfg(self):
        return self._cfg

    @property
    def depth(self):
        """MATMULs in flight at most."""
        return self._depth

    def elaborate(self, platform):
        cfg = self._cfg
        R, C = cfg.rows, cfg.cols
        m = Module()

        m.submodules.array = array = SystolicArray(cfg)
        a_job, b_job, c_job = _AJob(cfg), _BJob(cfg), _CJob(cfg)
        m.submodules.a_jobs = a_jobs = fifo.SyncFIFO(width=a_job.size, depth=self._depth)
        m.submodules.b_jobs = b_jobs = fifo.SyncFIFO(width=b_job.size, depth=self._depth)
        m.submodules.c_jobs = c_jobs = fifo.SyncFIFO(width=c_job.size, depth=self._depth)

        # Accept: split the MATMUL into its jobs. A job of the A or B queue leaves it before
        # the MATMUL's result job, so the result queue having room is enough.
        instr = self.instr.payload
        op = instr.body
        ws = op.dataflow == Dataflow.WS
        lanes = Signal(range(R + 1))            # K in WS, M in OS
        rows = Signal(range(cfg.spad_depth + 1))    # A rows: M in WS, K in OS
        m.d.comb += [lanes.eq(Mux(ws, op.k, op.m)), rows.eq(Mux(ws, op.m, op.k))]
        accept = Signal()
        m.d.comb += [
            self.instr.ready.eq(self.abort | c_jobs.w_rdy),
            accept.eq(self.instr.valid & ~self.abort & c_jobs.w_rdy),
            c_jobs.w_en.eq(accept),
        ]
        a_new = a_job(a_jobs.w_data)
        b_new = b_job(b_jobs.w_data)
        c_new = c_job(c_jobs.w_data)
        m.d.comb += [
            a_new.addr.eq(op.a_addr),
            a_new.end.eq(rows - 1),
            a_new.lanes_m1.eq(lanes - 1),
            # shifts and adds: a product this narrow is not worth a DSP block
            a_new.macs.eq(sum(Mux(op.n[i], lanes << i, 0) for i in range(len(op.n)))),
            a_new.switch.eq(~(ws & op.keep_weights)),
            a_new.mode.eq(op.dataflow),
            b_new.addr.eq(op.b_addr),
            b_new.end.eq(op.k - 1),
            b_new.mode.eq(op.dataflow),
            c_new.addr.eq(op.c_addr),
            c_new.mask.eq(Cat(op.n > j for j in range(C))),
            c_new.accumulate.eq(op.accumulate),
            c_new.push_prev.eq(instr.header.push_prev),
            c_new.push_next.eq(instr.header.push_next),
        ]

        # The job queues fall through: a job accepted while its queue is empty is worked on in
        # the same cycle, and queued only if it has rows left after that cycle's.
        def head_of(jobs, layout, want, issue, end):
            head, ready = fall_through(m, jobs, want, issue & end)
            return layout(head), ready

        # B feeder: one read ahead; the read port holds the row while the array stalls.
        b_row = Signal(range(cfg.spad_depth))
        b_end = Signal()
        b_issue = Signal()
        b_head, b_ready = head_of(b_jobs, b_job, accept & ~(ws & op.keep_weights),
                                  b_issue, b_end)
        m.d.comb += [
            b_end.eq(b_row == b_head.end),
            b_issue.eq(b_ready & (~array.b.valid | array.b.ready)),
            self.b_read.addr.eq(b_head.addr + b_row),
            self.b_read.en.eq(b_issue),
            array.b.payload.data.eq(self.b_read.data),
        ]
        with m.If(b_issue):
            m.d.sync += [
                b_row.eq(Mux(b_end, 0, b_row + 1)),
                array.b.valid.eq(1),
                array.b.payload.mode.eq(b_head.mode),
                array.b.payload.last.eq(b_end),
            ]
        with m.Elif(array.b.ready):
            m.d.sync += array.b.valid.eq(0)

        # A feeder: likewise, with the lanes past K (WS) or M (OS) forced to zero.
        a_row = Signal(range(cfg.spad_depth))
        a_end = Signal()
        a_issue = Signal()
        a_head, a_ready = head_of(a_jobs, a_job, accept, a_issue, a_end)
        a_macs = Signal.like(self.macs)
        a = array.a.payload
        m.d.comb += [
            a_end.eq(a_row == a_head.end),
            a_issue.eq(a_ready & (~array.a.valid | array.a.ready)),
            self.a_read.addr.eq(a_head.addr + a_row),
            self.a_read.en.eq(a_issue),
        ]
        for i in range(R):
            m.d.comb += a.data[i].eq(Mux(a.rows_m1 >= i, self.a_read.data[i], 0))
        with m.If(a_issue):
            m.d.sync += [
                a_row.eq(Mux(a_end, 0, a_row + 1)),
                array.a.valid.eq(1),
                a.mode.eq(a_head.mode),
                a.first.eq((a_row == 0) & a_head.switch),
                a.last.eq(a_end),
                a.rows_m1.eq(a_head.lanes_m1),
                a_macs.eq(a_head.macs),
            ]
        with m.Elif(array.a.ready):
            m.d.sync += array.a.valid.eq(0)
        a_fire = array.a.valid & array.a.ready
        m.d.comb += self.macs.eq(Mux(a_fire, a_macs, 0))

        # Result path: row i of the oldest tile goes to accumulator row c_addr + i.
        c_head = c_job(c_jobs.r_data)
        c_row = Signal(range(cfg.acc_depth))
        c_fire = array.c.valid & self.acc.ready
        tile_done = c_fire & array.c.payload.last
        m.d.comb += [
            self.acc.valid.eq(array.c.valid),
            self.acc.payload.data.eq(array.c.payload.data),
            self.acc.payload.addr.eq(c_head.addr + c_row),
            self.acc.payload.mask.eq(c_head.mask),
            self.acc.payload.accumulate.eq(c_head.accumulate),
            array.c.ready.eq(self.acc.ready),
            c_jobs.r_en.eq(tile_done),
        ]
        with m.If(c_fire):
            m.d.sync += c_row.eq(Mux(array.c.payload.last, 0, c_row + 1))

        # Retire: the accumulator writes the rows it took in order and says when. For each row
        # it has taken and not yet written, a queue holds whether the row ends a tile and the
        # tokens that tile gives; the MATMUL retires in the cycle its last row is written
        # (readable from the next). A cycle starts with at most one row per pipeline stage,
        # WRITE_LATENCY - 1, so the queue always has room.
        retire_row = data.StructLayout({"last": 1, "push": RetireLayout()})
        m.submodules.in_acc = in_acc = fifo.SyncFIFO(width=retire_row.size,
                                                     depth=Accumulator.WRITE_LATENCY)
        row_in, row_out = retire_row(in_acc.w_data), retire_row(in_acc.r_data)
        m.d.comb += [
            in_acc.w_en.eq(c_fire),
            row_in.last.eq(array.c.payload.last),
            row_in.push.push_prev.eq(c_head.push_prev),
            row_in.push.push_next.eq(c_head.push_next),
            in_acc.r_en.eq(self.acc_written),
            self.retire.payload.eq(row_out.push),
            self.retire.valid.eq(self.acc_written & row_out.last & ~self.abort),
        ]

        m.d.comb += [
            self.error.valid.eq(0),
            self.busy.eq(c_jobs.r_rdy | in_acc.r_rdy),
            self.stall.eq(self.busy & ~a_fire),
        ]
        return m
