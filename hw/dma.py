"""Memory-to-memory copy engine: read engine, realigner and write engine on shared ports."""

from amaranth import *
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .axi import Resp
from .read_engine import ReadEngine, memory_ports
from .realign import CopyDescriptor, Realigner
from .transfer import Status
from .write_engine import WriteEngine

__all__ = ["CopyEngine", "READ_CHANNELS", "WRITE_CHANNELS"]

READ_CHANNELS = ("arid", "araddr", "arlen", "arsize", "arburst", "arlock", "arcache", "arprot",
                 "arqos", "arvalid", "arready", "rid", "rdata", "rresp", "rlast", "rvalid",
                 "rready")
WRITE_CHANNELS = ("awid", "awaddr", "awlen", "awsize", "awburst", "awlock", "awcache",
                  "awprot", "awqos", "awvalid", "awready", "wdata", "wstrb", "wlast", "wvalid",
                  "wready", "bid", "bresp", "bvalid", "bready")


def join_ports(m, port, reader, writer):
    """Drive manager ``port`` with the read channels of ``reader`` and the write channels of
    ``writer`` (both manager-side AXI4 interfaces of the same signature)."""
    for names, src in ((READ_CHANNELS, reader), (WRITE_CHANNELS, writer)):
        for name in names:
            if port.signature.members[name].flow == Out:
                m.d.comb += getattr(port, name).eq(getattr(src, name))
            else:
                m.d.comb += getattr(src, name).eq(getattr(port, name))


class CopyEngine(wiring.Component):
    """Copies 2-D strided regions over ``mem_ports`` interleaved AXI4 ports.

    Reads, realignment and writes run concurrently; one status per copy: OKAY, the first
    read or write error with its global address, ``invalid`` for an empty copy, or ``aborted``
    for a copy queued behind a failed one. After a failure the engine finishes what is in
    flight, reports every queued copy, and takes new copies again.

    Members
    -------
    desc : In(stream.Signature(CopyDescriptor))
    status : Out(stream.Signature(Status))
    m_axi_hbm<p> : Out(AXI4Signature), one per port
    """

    def __init__(self, cfg):
        self._cfg = cfg
        members = {
            "desc": In(stream.Signature(CopyDescriptor(cfg))),
            "status": Out(stream.Signature(Status(cfg))),
            **memory_ports(cfg),
        }
        super().__init__(members)

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()

        recovering = Signal()       # a read failed: cancel writes, drop data, until all reported
        m.submodules.reader = reader = ReadEngine(cfg)
        m.submodules.writer = writer = WriteEngine(cfg)
        m.submodules.realign = realign = ResetInserter(recovering)(Realigner(cfg))
        m.submodules.realign_q = realign_q = ResetInserter(recovering)(
            fifo.SyncFIFOBuffered(width=CopyDescriptor(cfg).size, depth=4))
        for p in range(cfg.mem_ports):
            join_ports(m, getattr(self, f"m_axi_hbm{p}"), getattr(reader, f"m_axi_hbm{p}"),
                       getattr(writer, f"m_axi_hbm{p}"))

        # Each copy goes to the reader, the writer's queue and the realigner's queue at once.
        m.submodules.write_q = write_q = fifo.SyncFIFOBuffered(
            width=CopyDescriptor(cfg).size, depth=4)
        d = self.desc.payload
        take = Signal()
        m.d.comb += [
            take.eq(self.desc.valid & ~recovering & reader.desc.ready & write_q.w_rdy &
                    realign_q.w_rdy),
            self.desc.ready.eq(take),
            reader.desc.valid.eq(take), realign_q.w_en.eq(take), write_q.w_en.eq(take),
            *CopyDescriptor.side(reader.desc.payload, d, "src"),
            realign_q.w_data.eq(d), write_q.w_data.eq(d),
        ]
        wd = Signal(CopyDescriptor(cfg))
        m.d.comb += [wd.eq(write_q.r_data), *CopyDescriptor.side(writer.desc.payload, wd, "dst"),
                     writer.desc.valid.eq(write_q.r_rdy), write_q.r_en.eq(writer.desc.ready)]
        m.d.comb += [realign.desc.payload.eq(realign_q.r_data),
                     realign.desc.valid.eq(realign_q.r_rdy), realign_q.r_en.eq(realign.desc.ready)]

        # Data: reader -> realigner -> writer; dropped while recovering.
        m.d.comb += [
            realign.i.payload.eq(reader.data.payload),
            realign.i.valid.eq(reader.data.valid & ~recovering),
            reader.data.ready.eq(realign.i.ready | recovering),
        ]
        wiring.connect(m, realign.o, writer.data)

        # Statuses: one from each side per copy, in order.
        pending = Signal(16)
        both = reader.status.valid & writer.status.valid
        out = Signal(Status(cfg))
        rs, ws = reader.status.payload, writer.status.payload
        read_failed = reader.status.valid & ((rs.resp != Resp.OKAY) | rs.aborted)
        m.d.comb += writer.cancel.eq(recovering | read_failed)
        with m.If(rs.resp != Resp.OKAY):
            m.d.comb += out.eq(rs)
        with m.Elif(rs.aborted | rs.invalid):
            m.d.comb += [out.eq(rs)]
        with m.Else():
            m.d.comb += out.eq(ws)
        with m.If(~self.status.valid | self.status.ready):
            m.d.sync += self.status.valid.eq(both)
            with m.If(both):
                m.d.sync += self.status.payload.eq(out)
            m.d.comb += [reader.status.ready.eq(both), writer.status.ready.eq(both)]
        done = both & reader.status.ready
        m.d.sync += pending.eq(pending + take - done)
        with m.If(done & read_failed):
            m.d.sync += recovering.eq(1)
        with m.If(recovering & (pending == 0)):
            m.d.sync += recovering.eq(0)
        return m
