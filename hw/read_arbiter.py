"""Read arbiter: several requesters share one read engine, transfer by transfer."""

from amaranth import *
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .skid import SkidBuffer
from .transfer import Beat, Descriptor, Status

__all__ = ["read_client", "ReadArbiter"]


def read_client(cfg):
    """The members a requester of the read engine has: descriptors out, beats and statuses
    in (a flipped copy is what the arbiter offers it)."""
    return wiring.Signature({
        "desc": Out(stream.Signature(Descriptor(cfg))),
        "data": In(stream.Signature(Beat(cfg))),
        "status": In(stream.Signature(Status(cfg))),
    })


class ReadArbiter(wiring.Component):
    """Shares one :class:`~hw.read_engine.ReadEngine` between ``n`` requesters.

    Descriptors are granted whole, round-robin among the requesters that ``prefer`` marks if
    any of them has one, else among all; the requester of each is queued twice:
    once for its data and once for its status, because the read engine may deliver the next
    transfer's beats before the previous status is taken. The data queue advances on each
    ``end`` beat; a status that arrives for a transfer whose ``end`` beat never came (it
    failed, was aborted or was invalid) advances both. Each requester then sees exactly the
    beats and the status of its own transfers, in order: a status is offered only once every
    beat of its transfer has been taken, however early the engine has it ready. Beats reach
    the requesters through a fall-through :class:`~hw.skid.SkidBuffer` (in the same cycle),
    so a requester's ready never reaches the engine in the same cycle. At most ``depth``
    transfers are in flight. After a failed status shows up, no descriptor is granted until
    every queued status is taken, so no beat of a later transfer can reach a requester whose
    transfer failed (requesters take statuses as they come).

    Members
    -------
    client : In(read_client(cfg)).array(n)
        The requesters.
    prefer : In(n)
        Requesters whose descriptors go first (none: plain round-robin).
    engine : Out(read_client(cfg))
        To the read engine's ``desc``, ``data`` and ``status``.
    """

    def __init__(self, cfg, n, depth=16):
        if n < 2:
            self._MustUse__silence = True
            raise ValueError(f"a read arbiter needs at least 2 requesters, not {n}")
        self._cfg, self._n, self._depth = cfg, n, depth
        super().__init__({
            "client": In(read_client(cfg)).array(n),
            "prefer": In(n),
            "engine": Out(read_client(cfg)),
        })

    def elaborate(self, platform):
        n, depth = self._n, self._depth
        m = Module()
        idw = ceil_log2(n)
        m.submodules.data_q = data_q = fifo.SyncFIFOBuffered(width=idw, depth=depth)
        m.submodules.status_q = status_q = fifo.SyncFIFOBuffered(width=idw, depth=depth)

        # Grant: the first requester with a descriptor, searching from the one after the
        # last grant; among the preferred ones if any of them has one.
        last = Signal(range(n))
        grant = Signal(range(n))
        any_req = Signal()
        wants = Cat(self.client[c].desc.valid for c in range(n))
        preferred = wants & self.prefer
        candidates = Mux(preferred.any(), preferred, wants)
        for k in reversed(range(n)):
            for c in reversed(range(n)):
                # Requester c is the k-th candidate after ``last``.
                with m.If((last == (c - k - 1) % n) & candidates[c]):
                    m.d.comb += [grant.eq(c), any_req.eq(1)]
        eng = self.engine
        st = eng.status.payload
        failed = eng.status.valid & ((st.resp != 0) | st.aborted | st.invalid)
        hold = Signal()
        with m.If(failed):
            m.d.sync += hold.eq(1)
        with m.Elif(~status_q.r_rdy):
            m.d.sync += hold.eq(0)
        room = data_q.w_rdy & status_q.w_rdy & ~hold & ~failed
        with m.Switch(grant):
            for c in range(n):
                with m.Case(c):
                    m.d.comb += eng.desc.payload.eq(self.client[c].desc.payload)
        m.d.comb += eng.desc.valid.eq(any_req & room)
        take = eng.desc.valid & eng.desc.ready
        for c in range(n):
            m.d.comb += self.client[c].desc.ready.eq(take & (grant == c))
        m.d.comb += [data_q.w_en.eq(take), data_q.w_data.eq(grant),
                     status_q.w_en.eq(take), status_q.w_data.eq(grant)]
        with m.If(take):
            m.d.sync += last.eq(grant)

        # Beats go to the head of the data queue; statuses to the head of the status queue.
        # A status of a transfer with beats waits for its end beat. A failed transfer has no
        # end beat: its status waits until neither the engine nor the skid buffer holds any
        # of its beats. The beats pass through the skid buffer so that a requester's ready
        # does not reach the engine in the same cycle.
        m.submodules.beats = beats = SkidBuffer(Beat(self._cfg), latency=0)
        wiring.connect(m, wiring.flipped(eng.data), beats.i)
        ends = Signal(range(depth + 1))     # end beats delivered whose status is not taken
        beat_ok = data_q.r_rdy
        status_ok = status_q.r_rdy & Mux(failed, ~eng.data.valid & ~beats.o.valid, ends != 0)
        for c in range(n):
            cl = self.client[c]
            m.d.comb += [cl.data.payload.eq(beats.o.payload),
                         cl.data.valid.eq(beats.o.valid & beat_ok & (data_q.r_data == c)),
                         cl.status.payload.eq(eng.status.payload),
                         cl.status.valid.eq(eng.status.valid & status_ok &
                                            (status_q.r_data == c))]
        with m.Switch(data_q.r_data):
            for c in range(n):
                with m.Case(c):
                    m.d.comb += beats.o.ready.eq(beat_ok & self.client[c].data.ready)
        with m.Switch(status_q.r_data):
            for c in range(n):
                with m.Case(c):
                    m.d.comb += eng.status.ready.eq(status_ok & self.client[c].status.ready)
        end_beat = beats.o.valid & beats.o.ready & beats.o.payload.end
        status_taken = eng.status.valid & eng.status.ready
        orphan = status_taken & failed
        m.d.comb += [data_q.r_en.eq(end_beat | orphan), status_q.r_en.eq(status_taken)]
        m.d.sync += ends.eq(ends + end_beat - (status_taken & ~orphan))
        return m
