"""Write engine: a stream of stripes into 2-D strided transfers over N interleaved AXI4 ports."""

from amaranth import *
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .axi import Burst, Resp
from .read_engine import global_addr, memory_ports, port_signature
from .skid import SkidBuffer, fall_through
from .transfer import (
    Beat,
    BeatPlanner,
    BurstPlanner,
    BurstRequest,
    Descriptor,
    Segment,
    SegmentScatter,
    Status,
    _count,
    _log2,
)

__all__ = ["WritePort", "WriteEngine"]


class WritePort(wiring.Component):
    """One AXI4 write port: issues the bursts of its planner, sends their words with exact
    WSTRB, and counts B responses per transfer.

    Every burst uses AXI ID 0, so the memory performs the writes of a port in the order they
    were issued and answers them in that order: a later write to the same bytes always lands
    last, even when the next transfer starts while this one still waits for its responses.
    Burst ``t`` remembers its address and the parity of its transfer's tag in slot
    ``t % reads_in_flight`` (the limit of bursts in flight), so that a response is counted
    against its transfer and an error names its address. W data of a burst goes out only
    after its address was accepted.

    Members
    -------
    burst : In(stream.Signature(BurstRequest))
    word : In(stream.Signature({data, strb}))
    axi : Out(AXI4Signature)
        Write channels only; the read channels are idle.
    avail : In
        Words waiting in front of ``word`` (or entering its queue in this cycle); a burst is
        issued, a cycle later, only once all its data is there, so an address never waits for
        data that may not come.
    stop : In(1)
        Issue no more bursts (bursts already issued still get their data).
    drop : In(1)
        Complete the bursts already issued with empty beats (WSTRB 0) instead of their words.
    sending : Out(1)
        An address or W data of an issued burst is still to go out.
    waiting : Out(2)
        Bit ``q``: a burst of a transfer with tag parity ``q``, issued before this cycle, waits
        for its response (the last OKAY response ends the wait in the cycle it comes).
    busy : Out(1)
        ``sending`` or any ``waiting``.
    resp, err_addr, err_tag : Out
        First non-OKAY response, the port address of its burst and its transfer's tag parity.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "burst": In(stream.Signature(BurstRequest(cfg))),
            "word": In(stream.Signature(data.StructLayout(
                {"data": cfg.port_width, "strb": cfg.port_bytes}))),
            "axi": Out(port_signature(cfg)),
            "avail": In(range(1 << 16)),
            "stop": In(1),
            "drop": In(1),
            "sending": Out(1),
            "waiting": Out(2),
            "busy": Out(1),
            "resp": Out(2),
            "err_addr": Out(cfg.port_addr_width),
            "err_tag": Out(1),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        S = cfg.reads_in_flight
        m = Module()
        axi = self.axi

        slot_addr = Array(Signal(cfg.port_addr_width, name=f"slot_addr{i}") for i in range(S))
        slot_tag = Signal(S)
        issue = Signal(range(S))
        outstanding = Signal(range(S + 1))
        pending = [Signal(range(S + 1), name=f"pending{q}") for q in range(2)]
        reserved = Signal(range(1 << 16))     # words of issued bursts not yet sent
        # Words waiting and not reserved as of the cycle before, less what it issued: never
        # more than now (words leave only for issued bursts), and a register, so that the
        # issue takes no carry chain but a compare with AWLEN.
        spare = Signal(range(1 << 16))
        enough = (spare[8:] != 0) | (spare[:8] > self.burst.payload.len)

        load = Signal()
        m.d.comb += [
            load.eq((~axi.awvalid | axi.awready) & ~self.stop & (outstanding < S) & enough),
            self.burst.ready.eq(load),
            axi.awsize.eq(_log2(cfg.port_bytes)),
            axi.awburst.eq(Burst.INCR),
            axi.awid.eq(0),
        ]
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += axi.awvalid.eq(0)
        started = load & self.burst.valid
        # every sum from registers, picked by the late issue and take
        taken = self.word.valid & self.word.ready
        grown = reserved + self.burst.payload.len
        m.d.sync += reserved.eq(Mux(started,
                                    Mux(taken, grown, grown + 1),
                                    Mux(taken, reserved - 1, reserved)))
        tag = self.burst.payload.tag[0]
        with m.If(started):
            m.d.sync += [
                axi.awvalid.eq(1),
                axi.awaddr.eq(self.burst.payload.addr),
                axi.awlen.eq(self.burst.payload.len),
                slot_tag.bit_select(issue, 1).eq(tag),
                issue.eq(Mux(issue == S - 1, 0, issue + 1)),
            ]
        free = self.avail - reserved
        m.d.sync += spare.eq(Mux(started, free - (self.burst.payload.len + 1), free))
        # The slot takes the address a cycle later, from AWADDR (its B is cycles away).
        slot_we = Signal()
        slot_at = Signal(range(S))
        m.d.sync += [slot_we.eq(started), slot_at.eq(issue)]
        with m.If(slot_we):
            m.d.sync += slot_addr[slot_at].eq(axi.awaddr)

        # W: lengths of accepted bursts, in order; a register stage holds each beat stable.
        # The length of a burst accepted while none waits is used in its own cycle (its first
        # beat then goes out in the next), and only queued if it has more beats.
        # With drop, the bursts already issued are completed with empty beats (WSTRB 0), so
        # nothing more is written and every burst still gets its response.
        m.submodules.lens = lens = fifo.SyncFIFO(width=8, depth=S)
        beat = Signal(8)
        w_load = Signal()
        ends = Signal()
        cur_len, has_len = fall_through(m, lens, axi.awvalid & axi.awready, ends)
        m.d.comb += [
            w_load.eq((~axi.wvalid | axi.wready) & has_len & (self.word.valid | self.drop)),
            ends.eq(w_load & (beat == cur_len)),
            self.word.ready.eq(w_load & ~self.drop),
            lens.w_data.eq(axi.awlen),
        ]
        with m.If(axi.wvalid & axi.wready):
            m.d.sync += axi.wvalid.eq(0)
        with m.If(w_load):
            m.d.sync += [
                axi.wvalid.eq(1),
                axi.wdata.eq(self.word.payload.data),
                axi.wstrb.eq(Mux(self.drop, 0, self.word.payload.strb)),
                axi.wlast.eq(beat == cur_len),
                beat.eq(Mux(beat == cur_len, 0, beat + 1)),
            ]

        # B: one ID, so responses come in issue order, slot after slot.
        slot = Signal(range(S))
        answered = slot_tag.bit_select(slot, 1)
        m.d.comb += axi.bready.eq(1)
        with m.If(axi.bvalid):
            m.d.sync += slot.eq(Mux(slot == S - 1, 0, slot + 1))
            with m.If((axi.bresp != Resp.OKAY) & (self.resp == Resp.OKAY)):
                m.d.sync += [self.resp.eq(axi.bresp), self.err_addr.eq(slot_addr[slot]),
                             self.err_tag.eq(answered)]
        m.d.sync += outstanding.eq(_count(outstanding, started, axi.bvalid))
        for q in range(2):
            dec = axi.bvalid & (answered == q)
            m.d.sync += pending[q].eq(_count(pending[q], started & (tag == q), dec))
            # the last OKAY response ends the wait in its own cycle (an error one once it is
            # latched); a burst issued counts from the next (the engine asks only about
            # transfers that have issued all theirs)
            m.d.comb += self.waiting[q].eq(
                (pending[q] != 0) & ~((pending[q] == 1) & dec & (axi.bresp == Resp.OKAY)))
        m.d.comb += [
            self.sending.eq(axi.awvalid | lens.r_rdy | axi.wvalid),
            self.busy.eq(self.sending | (outstanding != 0)),
        ]
        return m


class WriteEngine(wiring.Component):
    """Writes 2-D strided transfers over ``mem_ports`` interleaved AXI4 ports.

    The data stream carries the stripes of the destination in address order (as the read
    engine produces them for the same addresses); the engine writes exactly the bytes of the
    transfer (WSTRB from the descriptor), and reports the transfer's status once every burst
    has its B response: OKAY, or the first SLVERR/DECERR with its global address. After an
    error it issues nothing more, completes the bursts in flight with empty beats (so no
    further byte is written), reports, and takes (and drops) the rest of the failing
    transfer's data up to its ``end`` stripe.

    Transfers overlap by one: the next starts as soon as the current one has issued all its
    bursts (a port issues a burst once all its words are in), while the current one's words
    still go out and its responses are still out (its status follows when they are all in;
    statuses stay in order). The ports keep every write in
    issue order, so a transfer that rewrites bytes of the one before still lands last. When
    the earlier transfer fails, the later one stops as above and reports ``aborted``; the
    bursts it issued before the failure was known have written their bytes.

    Members
    -------
    desc : In(stream.Signature(Descriptor))
    data : In(stream.Signature(Beat))
    status : Out(stream.Signature(Status))
    cancel : In(1)
        The data of the current transfer will not come (its source failed): issue no more
        bursts, complete those issued (with their words, which are in), report the transfer as
        ``aborted``; while held, transfers are aborted at once.
    m_axi_hbm<p> : Out(AXI4Signature), one per port
    """

    def __init__(self, cfg, fifo_depth=None):
        self._cfg = cfg
        self._fifo_depth = fifo_depth or 2 * cfg.burst_len
        members = {
            "desc": In(stream.Signature(Descriptor(cfg))),
            "data": In(stream.Signature(Beat(cfg))),
            "status": Out(stream.Signature(Status(cfg))),
            "cancel": In(1),
            **memory_ports(cfg),
        }
        super().__init__(members)

    def elaborate(self, platform):
        cfg = self._cfg
        N, W = cfg.mem_ports, cfg.port_bytes
        m = Module()

        abort = Signal()
        stop = Signal()
        failed = Signal()
        reset = lambda mod: ResetInserter(abort)(mod)  # noqa: E731

        m.submodules.beats = beats = reset(BeatPlanner(cfg))
        plan = beats.plan
        split = Signal()
        k = cfg.segment_words
        planners, skids, ports, rooms = [], [], [], []
        for p in range(N):
            planner = m.submodules[f"planner{p}"] = reset(BurstPlanner(cfg, p))
            port = m.submodules[f"port{p}"] = reset(WritePort(cfg))
            skid = m.submodules[f"bursts{p}"] = reset(SkidBuffer(BurstRequest(cfg)))
            skids.append(skid)
            wiring.connect(m, planner.burst, skid.i)
            wiring.connect(m, skid.o, port.burst)
            wiring.connect(m, port.axi, wiring.flipped(getattr(self, f"m_axi_hbm{p}")))
            m.d.comb += [port.stop.eq(stop), port.drop.eq(failed)]
            if k == 1:
                # words reach the FIFO through a register slice: the split decides late
                sl = m.submodules[f"slice{p}"] = reset(SkidBuffer(9 * W))
                q = m.submodules[f"words{p}"] = reset(fifo.SyncFIFOBuffered(
                    width=9 * W, depth=self._fifo_depth))
                m.d.comb += [
                    q.w_data.eq(sl.o.payload),
                    q.w_en.eq(sl.o.valid),
                    sl.o.ready.eq(q.w_rdy),
                    # a word entering the queue counts already: the port decides a cycle on
                    port.avail.eq(q.r_level + (q.w_en & q.w_rdy)),
                    port.word.payload.eq(q.r_data),
                    port.word.valid.eq(q.r_rdy),
                    q.r_en.eq(port.word.ready),
                ]
                rooms.append(sl.i.ready)
            else:
                # room for two bursts of data and a granule of this port's words
                rows = (-(-self._fifo_depth // k) + cfg.granule_words // k + 1)
                q = m.submodules[f"scatter{p}"] = reset(SegmentScatter(cfg, rows))
                wiring.connect(m, q.o, port.word)
                m.d.comb += port.avail.eq(q.level)
                rooms.append(q.i.ready)
            planners.append(planner)
            ports.append(port)

        # Split each stripe into the ports that take part: port p takes lane p (k == 1), or
        # segment i (lanes i*k to i*k + k - 1) goes to port (plan.port + i) % N.
        ln = _log2(N)
        groups = []
        for i in range(N // k):
            dst = (plan.payload.port + i)[:ln] if ln else C(0, 1)
            groups.append((dst, plan.payload.lanes[i * k:(i + 1) * k].any()))
        if k == 1:
            room = Cat(rooms[p] | ~plan.payload.lanes[p] for p in range(N)).all()
        else:
            has_room = Array(rooms)
            room = Cat(has_room[dst] | ~active for dst, active in groups).all()
        m.d.comb += split.eq(plan.valid & self.data.valid & room & ~stop)
        m.d.comb += [plan.ready.eq(split)]
        seen_end = Signal()         # the current transfer's last stripe has been taken
        with m.If(split & plan.payload.end):
            m.d.sync += seen_end.eq(1)
        with m.If(self.desc.valid & self.desc.ready):
            m.d.sync += seen_end.eq(0)
        if k == 1:
            for p in range(N):
                sl = m.submodules[f"slice{p}"]
                m.d.comb += [
                    sl.i.payload.eq(Cat(self.data.payload.data.word_select(p, 8 * W),
                                        plan.payload.mask[p * W:(p + 1) * W])),
                    sl.i.valid.eq(split & plan.payload.lanes[p]),
                ]
        else:
            segs = []
            for i in range(len(groups)):
                seg = Signal(Segment(cfg), name=f"segment{i}")
                lanes = plan.payload.lanes[i * k:(i + 1) * k]
                for j in reversed(range(k)):        # the lowest and highest taking part
                    with m.If(lanes[j]):
                        m.d.comb += seg.first.eq(j)
                for j in range(k):
                    with m.If(lanes[j]):
                        m.d.comb += seg.last.eq(j)
                m.d.comb += [
                    seg.data.eq(self.data.payload.data.word_select(i, 8 * k * W)),
                    seg.strb.eq(plan.payload.mask.word_select(i, k * W)),
                ]
                segs.append(seg)
            for p in range(N):
                q = m.submodules[f"scatter{p}"]
                for (dst, active), seg in zip(groups, segs, strict=True):
                    with m.If(dst == p):
                        m.d.comb += [q.i.payload.eq(seg), q.i.valid.eq(split & active)]

        # Transfers overlap by one: the next starts once the current one has issued every
        # burst and sent its data, while its responses are still out; its status follows
        # when the last of them is in.
        m.submodules.statuses = statuses = fifo.SyncFIFO(
            width=Status(cfg).size, depth=4)
        status_in = Signal(Status(cfg))
        m.d.comb += [statuses.w_data.eq(status_in),
                     self.status.payload.eq(statuses.r_data),
                     self.status.valid.eq(statuses.r_rdy),
                     statuses.r_en.eq(self.status.ready)]

        d = self.desc.payload
        invalid = (d.rows == 0) | (d.row_bytes == 0)
        # every burst issued: its words then wait in the port, and go out behind the next
        issued = (Cat(pl.idle for pl in planners).all() & beats.idle &
                  Cat(~s.o.valid for s in skids).all())
        quiet = Cat(~pt.busy for pt in ports).all()
        m.d.comb += [failed.eq(Cat(pt.resp != Resp.OKAY for pt in ports).any()),
                     stop.eq(failed | self.cancel)]

        def outcome(tag):
            """The response and global error address of the transfer with tag parity ``tag``."""
            resp = Signal(2)
            err_addr = Signal(cfg.addr_width)
            for p in reversed(range(N)):
                with m.If((ports[p].resp != Resp.OKAY) & (ports[p].err_tag == tag)):
                    m.d.comb += [resp.eq(ports[p].resp),
                                 err_addr.eq(global_addr(cfg, p, ports[p].err_addr))]
            return resp, err_addr

        tag = Signal()              # tag parity of the transfer that runs or starts next
        behind = Signal()           # the previous transfer (tag parity ~tag) awaits responses
        behind_resp, behind_addr = outcome(~tag)
        report = behind & ~Cat(pt.waiting.bit_select(~tag, 1) for pt in ports).any()
        with m.If(report & statuses.w_rdy):
            m.d.comb += [statuses.w_en.eq(1), status_in.resp.eq(behind_resp),
                         status_in.addr.eq(behind_addr)]
            m.d.sync += behind.eq(0)
        resp, err_addr = outcome(tag)
        with m.If(abort):
            m.d.sync += tag.eq(0)

        for pl in planners + [beats]:
            m.d.comb += pl.desc.payload.eq(d)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(failed):
                    m.next = "DRAIN"
                with m.Elif(invalid | self.cancel):
                    # refused at once, after the status of the transfer before it
                    m.d.comb += self.desc.ready.eq(statuses.w_rdy & ~behind)
                    with m.If(self.desc.valid & statuses.w_rdy & ~behind):
                        m.d.comb += [statuses.w_en.eq(1), status_in.invalid.eq(invalid),
                                     status_in.aborted.eq(~invalid),
                                     status_in.addr.eq(d.addr)]
                with m.Else():
                    m.d.comb += self.desc.ready.eq(1)
                    with m.If(self.desc.valid):
                        for pl in planners + [beats]:
                            m.d.comb += pl.desc.valid.eq(1)
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.data.ready.eq(split)
                # Every port drains what it issued (W data, then B) before the datapath resets.
                with m.If(stop):
                    with m.If(quiet):
                        m.next = "ABORT"
                with m.Elif(issued & ~behind):
                    m.d.sync += [tag.eq(~tag), behind.eq(1)]
                    m.next = "IDLE"
            with m.State("ABORT"):
                # the transfer before reports first
                with m.If(~behind & statuses.w_rdy):
                    m.d.comb += [abort.eq(1), statuses.w_en.eq(1),
                                 status_in.resp.eq(resp), status_in.addr.eq(err_addr),
                                 status_in.aborted.eq(resp == Resp.OKAY)]
                    with m.If(seen_end | self.cancel):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DISCARD"
            with m.State("DISCARD"):
                # the rest of the failed transfer's data still arrives: take it, write nothing
                m.d.comb += self.data.ready.eq(1)
                with m.If(self.cancel | self.data.valid & self.data.payload.end):
                    m.next = "IDLE"
            with m.State("DRAIN"):
                # the previous transfer failed with none running: report it, then reset
                with m.If(quiet & ~behind):
                    m.d.comb += abort.eq(1)
                    m.next = "IDLE"
        return m
