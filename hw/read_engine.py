"""Read engine: 2-D strided transfers from N interleaved AXI4 ports into a stream of stripes."""

from amaranth import *
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4Signature, Burst, Resp
from .skid import SkidBuffer
from .transfer import (
    TAG_BITS,
    Beat,
    BeatPlanner,
    BurstPlanner,
    BurstRequest,
    Descriptor,
    SegmentGather,
    Status,
    TaggedWord,
    _count,
    _log2,
)

__all__ = ["port_signature", "memory_ports", "ReadPort", "ReadEngine", "DescriptorFanout",
           "global_addr", "before"]


def port_signature(cfg):
    """The AXI4 signature of one memory port."""
    return AXI4Signature(addr_width=cfg.port_addr_width, data_width=cfg.port_width,
                         id_width=cfg.axi_id_width)


def memory_ports(cfg):
    """The members ``m_axi_hbm0`` ... of a block that owns all memory ports."""
    return {f"m_axi_hbm{p}": Out(port_signature(cfg)) for p in range(cfg.mem_ports)}


def before(tag, other):
    """Whether transfer ``tag`` comes before transfer ``other`` (numbers modulo
    ``2**TAG_BITS``, fewer than half of them in flight)."""
    return (tag - other)[TAG_BITS - 1] == 1


def global_addr(cfg, port, port_addr):
    """Global byte address of byte ``port_addr`` of port ``port`` (an Amaranth expression)."""
    lG, ln = _log2(cfg.interleave_bytes), _log2(cfg.mem_ports)
    return Cat(port_addr[:lG], Const(port, max(ln, 1))[:ln], port_addr[lG:])


class ReadPort(wiring.Component):
    """One AXI4 read port with many bursts in flight and in-order delivery.

    Burst ``t`` takes slot ``t % reads_in_flight`` of a reorder buffer and ID
    ``t % axi_ids``; the subordinate keeps each ID in order, so every ID's next slot is known
    and R beats of different IDs may arrive in any order or interleaved. Slots drain in issue
    order, one word per cycle.

    Members
    -------
    burst : In(stream.Signature(BurstRequest))
    axi : Out(AXI4Signature)
        Read channels only; the write channels are idle.
    word : Out(stream.Signature(port_width or TaggedWord))
        With ``segment_words`` above 1, each word carries its lane in its segment and whether
        it ends one.
    stop : In(1), stop_tag : In(TAG_BITS)
        Issue no burst of transfer ``stop_tag`` or later (bursts in flight still complete).
    outstanding : Out(range)
        Bursts issued whose last beat has not arrived.
    resp, err_addr, err_tag : Out
        First non-OKAY response and its transfer (a cycle after the beat), and the port
        address of its beat (a cycle later). No word of that burst leaves the port.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "burst": In(stream.Signature(BurstRequest(cfg))),
            "axi": Out(port_signature(cfg)),
            "word": Out(stream.Signature(
                TaggedWord(cfg) if cfg.segment_words > 1 else cfg.port_width)),
            "stop": In(1),
            "stop_tag": In(TAG_BITS),
            "outstanding": Out(range(cfg.reads_in_flight + 1)),
            "resp": Out(2),
            "err_addr": Out(cfg.port_addr_width),
            "err_tag": Out(TAG_BITS),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        S, K, B = cfg.reads_in_flight, cfg.axi_ids, cfg.burst_len
        m = Module()
        axi = self.axi

        m.submodules.rob = rob = memory.Memory(shape=cfg.port_width, depth=S * B, init=[])
        wr = rob.write_port()
        rd = rob.read_port(transparent_for=())

        slot_len = Array(Signal(8, name=f"slot_len{i}") for i in range(S))
        slot_addr = Array(Signal(cfg.port_addr_width, name=f"slot_addr{i}") for i in range(S))
        slot_tag = Array(Signal(TAG_BITS, name=f"slot_tag{i}") for i in range(S))
        issue = Signal(range(S))
        in_use = Signal(range(S + 1))         # slots allocated and not yet drained

        # AR: a register stage, so that stop never withdraws a valid address.
        load = Signal()
        halted = self.stop & ~before(self.burst.payload.tag, self.stop_tag)
        m.d.comb += [
            load.eq((~axi.arvalid | axi.arready) & ~halted & (in_use < S)),
            self.burst.ready.eq(load),
            axi.arsize.eq(_log2(cfg.port_bytes)),
            axi.arburst.eq(Burst.INCR),
        ]
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += axi.arvalid.eq(0)
        ar_tag = Signal(TAG_BITS)
        ar_last = Signal()
        with m.If(load & self.burst.valid):
            m.d.sync += [
                axi.arvalid.eq(1),
                axi.araddr.eq(self.burst.payload.addr),
                axi.arlen.eq(self.burst.payload.len),
                axi.arid.eq(issue % K),
                ar_tag.eq(self.burst.payload.tag),
                ar_last.eq(self.burst.payload.last),
                issue.eq(Mux(issue == S - 1, 0, issue + 1)),
            ]
        # The slot takes the burst a cycle later, from the AR registers: its first beat comes
        # a cycle after AR is accepted at the earliest.
        slot_we = Signal()
        slot_at = Signal(range(S))
        m.d.sync += [slot_we.eq(load & self.burst.valid), slot_at.eq(issue)]
        with m.If(slot_we):
            m.d.sync += [slot_len[slot_at].eq(axi.arlen), slot_addr[slot_at].eq(axi.araddr),
                         slot_tag[slot_at].eq(ar_tag)]

        # R: every beat goes to the slot its ID is known to be working on.
        rx_slot = Array(Signal(range(S), init=i, name=f"rx_slot{i}") for i in range(K))
        rx_beat = Array(Signal(range(B), name=f"rx_beat{i}") for i in range(K))
        rid = axi.rid[:max(1, _log2(K))] if K > 1 else C(0, 1)
        slot = rx_slot[rid]
        beat = rx_beat[rid]
        m.d.comb += [
            axi.rready.eq(1),
            wr.addr.eq(slot * B + beat),
            wr.data.eq(axi.rdata),
            wr.en.eq(axi.rvalid),
        ]
        completed = Signal()
        caught = Signal()
        caught_resp = Signal(2)
        caught_slot = Signal(range(S))
        caught_beat = Signal(range(B))
        with m.If(axi.rvalid):
            with m.If(axi.rlast):
                m.d.comb += completed.eq(1)
                m.d.sync += [beat.eq(0),
                             slot.eq(Mux(slot >= S - K, slot + K - S, slot + K))]
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
            with m.If((axi.rresp != Resp.OKAY) & ~caught):
                m.d.sync += [caught.eq(1), caught_resp.eq(axi.rresp), caught_slot.eq(slot),
                             caught_beat.eq(beat)]
        # The first error is reported a cycle after its beat, from registers (its slot is in
        # flight until then, so its address and tag stay); its address a cycle later.
        err_base = Signal(cfg.port_addr_width)
        with m.If(caught & (self.resp == Resp.OKAY)):
            m.d.sync += [self.resp.eq(caught_resp), self.err_tag.eq(slot_tag[caught_slot]),
                         err_base.eq(slot_addr[caught_slot])]
        m.d.sync += self.err_addr.eq(err_base + (caught_beat << _log2(cfg.port_bytes)))
        started = axi.arvalid & axi.arready
        m.d.sync += self.outstanding.eq(self.outstanding + started - completed)

        # Drain the oldest slot in order. The slots of ID i are i, i + K, ... and each ID
        # completes in order, so the head slot is done when its ID has a completed burst not
        # yet drained: a count per ID rather than a flag per slot chosen by the head.
        head = Signal(range(S))
        head_beat = Signal(8)
        take = Signal()
        freed = Signal()
        head_id = head[:_log2(K)] if K > 1 else C(0, 1)
        has = Signal(K)
        for i in range(K):
            count = Signal(range(S // K + 1), name=f"completed{i}")
            inc, dec = completed & (rid == i), freed & (head_id == i)
            m.d.sync += [count.eq(_count(count, inc, dec)),
                         has[i].eq(inc | Mux(dec, count > 1, count != 0))]
        # Whether the head beat is its slot's last, in a register: compared a cycle ahead
        # against the head slot's length then (or the next slot's, when the head moves on;
        # a slot is written cycles before it is done), for each way the head beat can go.
        at_last = Signal()
        after_head = Mux(head == S - 1, 0, head + 1)
        head_len = slot_len[head]
        m.d.sync += at_last.eq(Mux(freed, slot_len[after_head] == 0,
                                   Mux(take, head_beat + 1 == head_len, head_beat == head_len)))
        # An OKAY beat that arrives as the head slot's next one, with no earlier beat waiting,
        # goes out in the next cycle from a register of its own instead of through the
        # buffer; not while `at_last` (compared a cycle ahead) may predate the head slot's
        # burst, which a memory answering in the cycle after AR would allow. Error beats keep the
        # buffer's latency, which the merge's stop at the failing transfer counts on.
        free_out = ~self.word.valid | self.word.ready
        we_d, at_d = Signal(), Signal(range(S))
        m.d.sync += [we_d.eq(slot_we), at_d.eq(slot_at)]
        settled = ~(slot_we & (slot_at == head)) & ~(we_d & (at_d == head))
        bypass = Signal()
        bypassed = Signal()                 # the word on offer came from the bypass register
        direct = Signal(cfg.port_width)
        m.d.comb += [
            bypass.eq(axi.rvalid & (axi.rresp == Resp.OKAY) & (slot == head) &
                      (beat == head_beat) & ~has.bit_select(head_id, 1) & free_out & settled),
            # the burst of the first error is held back: the merge stops at its transfer
            # (from registers, a cycle after the error is reported) before any of its words
            take.eq(has.bit_select(head_id, 1) & free_out & ~(caught & (head == caught_slot)) |
                    bypass),
            rd.addr.eq(head * B + head_beat),
            rd.en.eq(take & ~bypass),
        ]
        with m.If(take):
            m.d.sync += bypassed.eq(bypass)
        with m.If(bypass):
            m.d.sync += direct.eq(axi.rdata)
        data_out = Mux(bypassed, direct, rd.data)
        if cfg.segment_words == 1:
            m.d.comb += self.word.payload.eq(data_out)
        else:
            k, lk = cfg.segment_words, _log2(cfg.segment_words)
            slot_last = Array(Signal(name=f"slot_last{i}") for i in range(S))
            with m.If(slot_we):
                m.d.sync += slot_last[slot_at].eq(ar_last)
            pos = Signal(lk)
            end = Signal()
            m.d.comb += [self.word.payload.data.eq(data_out), self.word.payload.pos.eq(pos),
                         self.word.payload.end.eq(end)]
            with m.If(take):
                row_end = at_last & slot_last[head]
                cur = (slot_addr[head][_log2(cfg.port_bytes):] + head_beat)[:lk]
                m.d.sync += [pos.eq(cur), end.eq(row_end | (cur == k - 1))]
        with m.If(take):
            m.d.sync += self.word.valid.eq(1)
            with m.If(at_last):
                m.d.comb += freed.eq(1)
                m.d.sync += [head_beat.eq(0), head.eq(after_head)]
            with m.Else():
                m.d.sync += head_beat.eq(head_beat + 1)
        with m.Elif(self.word.ready):
            m.d.sync += self.word.valid.eq(0)
        m.d.sync += in_use.eq(_count(in_use, load & self.burst.valid, freed))
        return m


class DescriptorFanout(wiring.Component):
    """Copies each descriptor into ``n`` queues (one per planner), taken when all have room.
    The queues read their memory asynchronously (distributed RAM on an FPGA), so a descriptor
    reaches the planners in the cycle after it is taken."""

    def __init__(self, cfg, n, depth=4):
        self._cfg, self._n, self._depth = cfg, n, depth
        super().__init__({
            "i": In(stream.Signature(Descriptor(cfg))),
            "o": Out(stream.Signature(Descriptor(cfg))).array(n),
        })

    def elaborate(self, platform):
        m = Module()
        fifos = [fifo.SyncFIFO(width=Descriptor(self._cfg).size, depth=self._depth)
                 for _ in range(self._n)]
        all_room = Signal()
        m.d.comb += all_room.eq(Cat(f.w_rdy for f in fifos).all())
        m.d.comb += self.i.ready.eq(all_room)
        for k, f in enumerate(fifos):
            m.submodules[f"fifo{k}"] = f
            m.d.comb += [
                f.w_data.eq(self.i.payload),
                f.w_en.eq(self.i.valid & all_room),
                self.o[k].payload.eq(f.r_data),
                self.o[k].valid.eq(f.r_rdy),
                f.r_en.eq(self.o[k].ready),
            ]
        return m


class ReadEngine(wiring.Component):
    """Reads 2-D strided transfers over ``mem_ports`` interleaved AXI4 ports.

    Each descriptor becomes, per port, a sequence of INCR bursts (at most ``burst_len`` beats,
    never across 4 KiB), with up to ``reads_in_flight`` bursts in flight per port and up to
    17 descriptors taken ahead of the data (16 queued and the one whose data arrives); the data
    leaves in address order as stripes (one word per port) with a byte mask, ``last`` at the
    end of each row and ``end`` at the end of the transfer, followed by one ``status``.

    On a SLVERR or DECERR, the engine issues no more bursts, waits for those in flight,
    reports the first error (with its global address) as the status of the failing transfer,
    reports the transfers queued behind it as ``aborted``, and is idle again.

    Members
    -------
    desc : In(stream.Signature(Descriptor))
    data : Out(stream.Signature(Beat))
    status : Out(stream.Signature(Status))
    m_axi_hbm<p> : Out(AXI4Signature), one per port
    """

    def __init__(self, cfg):
        self._cfg = cfg
        members = {
            "desc": In(stream.Signature(Descriptor(cfg))),
            "data": Out(stream.Signature(Beat(cfg))),
            "status": Out(stream.Signature(Status(cfg))),
            **memory_ports(cfg),
        }
        super().__init__(members)

    def elaborate(self, platform):
        cfg = self._cfg
        N = cfg.mem_ports
        m = Module()

        stop = Signal()
        abort = Signal()
        flushing = Signal()
        reset = lambda mod: ResetInserter(abort)(mod)  # noqa: E731

        # Invalid descriptors reach only the beat planner, which reports them in order. The
        # beat planner works on one transfer at a time, as its data arrives, so its queue
        # sets how many transfers are in flight: deep enough for short ones (a LOAD of one
        # tile) to cover the memory's latency.
        m.submodules.fanout = fanout = reset(DescriptorFanout(cfg, N + 1, depth=16))
        m.d.comb += [fanout.i.payload.eq(self.desc.payload),
                     fanout.i.valid.eq(self.desc.valid & ~stop & ~flushing),
                     self.desc.ready.eq(fanout.i.ready & ~stop & ~flushing)]

        m.submodules.beats = beats = reset(BeatPlanner(cfg))
        plan_desc = fanout.o[N]
        m.d.comb += [beats.desc.payload.eq(plan_desc.payload)]
        plan_invalid = (plan_desc.payload.rows == 0) | (plan_desc.payload.row_bytes == 0)

        k = cfg.segment_words
        ports, skids, segments = [], [], []
        for p in range(N):
            planner = reset(BurstPlanner(cfg, p))
            port = reset(ReadPort(cfg))
            m.submodules[f"planner{p}"] = planner
            m.submodules[f"port{p}"] = port
            q = fanout.o[p]
            q_invalid = (q.payload.rows == 0) | (q.payload.row_bytes == 0)
            m.d.comb += [
                planner.desc.payload.eq(q.payload),
                planner.desc.valid.eq(q.valid & ~q_invalid),
                q.ready.eq(planner.desc.ready | q_invalid),
            ]
            # the port's ready reaches the planner a cycle later
            skid = m.submodules[f"bursts{p}"] = reset(SkidBuffer(BurstRequest(cfg), latency=0))
            wiring.connect(m, planner.burst, skid.i)
            wiring.connect(m, skid.o, port.burst)
            wiring.connect(m, port.axi, wiring.flipped(getattr(self, f"m_axi_hbm{p}")))
            ports.append(port)
            skids.append(skid)
            # a fall-through slice, so that the merge's decision does not reach into the port
            words = m.submodules[f"words{p}"] = reset(SkidBuffer(
                TaggedWord(cfg) if k > 1 else cfg.port_width, latency=0))
            wiring.connect(m, port.word, words.i)
            if k > 1:
                gather = m.submodules[f"gather{p}"] = reset(SegmentGather(cfg))
                wiring.connect(m, words.o, gather.i)
                segments.append(gather.o)
            else:
                segments.append(words.o)

        # Statuses queue up, outside the reset that an error applies to the datapath, behind
        # a register slice (the merge decides on a status late in the cycle).
        m.submodules.statuses = statuses = fifo.SyncFIFOBuffered(
            width=Status(cfg).size, depth=4)
        m.submodules.status_slice = status_slice = SkidBuffer(Status(cfg))
        m.d.comb += [statuses.w_data.eq(status_slice.o.payload),
                     statuses.w_en.eq(status_slice.o.valid),
                     status_slice.o.ready.eq(statuses.w_rdy),
                     self.status.payload.eq(statuses.r_data),
                     self.status.valid.eq(statuses.r_rdy),
                     statuses.r_en.eq(self.status.ready)]
        status_in, status_we = status_slice.i.payload, status_slice.i.valid
        status_room = status_slice.i.ready

        # Merge: one stripe when every port taking part has its word. Transfers before the
        # failing one (if any) still complete.
        head = Signal(TAG_BITS)         # the transfer the merge is working on
        err_tag = Signal(TAG_BITS)
        # The merge has reached the failing transfer: from registers, a cycle after a port
        # reports the error; the port holds back the words of the failing burst.
        at_failure = Signal()
        # Segment i of a stripe (lanes i*k to i*k + k - 1) comes from port (port + i) % N.
        plan = beats.plan
        ln = _log2(N)
        groups = []
        for i in range(N // k):
            src = (plan.payload.port + i)[:ln] if ln else C(0, 1)
            groups.append((src, plan.payload.lanes[i * k:(i + 1) * k].any()))
        seg_valid = Array(s.valid for s in segments)
        seg_data = Array(s.payload for s in segments)
        if k == 1:
            words_ready = Cat(segments[p].valid | ~plan.payload.lanes[p] for p in range(N)).all()
        else:
            words_ready = Cat(seg_valid[src] | ~active for src, active in groups).all()
        out_ready = Signal()
        m.d.comb += out_ready.eq(~self.data.valid | self.data.ready)
        fire = Signal()
        m.d.comb += fire.eq(plan.valid & words_ready & out_ready & ~at_failure &
                            (~plan.payload.end | status_room))
        m.d.comb += plan.ready.eq(fire)
        for p in range(N):
            if k == 1:
                m.d.comb += segments[p].ready.eq(fire & plan.payload.lanes[p])
            else:
                m.d.comb += segments[p].ready.eq(
                    fire & Cat(active & (src == p) for src, active in groups).any())
        if k == 1:
            stripe = Cat(segments[p].payload for p in range(N))
        else:
            stripe = Cat(seg_data[src] for src, _ in groups)

        with m.If(fire):
            m.d.sync += [
                self.data.valid.eq(1),
                self.data.payload.data.eq(stripe),
                self.data.payload.mask.eq(plan.payload.mask),
                self.data.payload.last.eq(plan.payload.last),
                self.data.payload.end.eq(plan.payload.end),
            ]
        with m.Elif(self.data.ready):
            m.d.sync += self.data.valid.eq(0)

        # The beat planner hands invalid descriptors straight to the status queue.
        with m.If(plan_desc.valid & plan_invalid & beats.idle & ~at_failure):
            m.d.comb += [plan_desc.ready.eq(status_room),
                         status_we.eq(1),
                         status_in.invalid.eq(1),
                         status_in.addr.eq(plan_desc.payload.addr)]
        with m.Else():
            m.d.comb += [beats.desc.valid.eq(plan_desc.valid & ~plan_invalid),
                         plan_desc.ready.eq(beats.desc.ready & ~plan_invalid)]
            with m.If(fire & plan.payload.end):
                m.d.comb += status_we.eq(1)
        head_next = Mux(fire & plan.payload.end, head + 1, head)[:TAG_BITS]
        m.d.sync += [head.eq(Mux(abort, 0, head_next)),      # tags restart with the datapath
                     at_failure.eq(stop & ~abort & (head_next == err_tag))]

        # Errors: stop issuing, wait for every burst in flight, report, reset the datapath, and
        # answer every transfer that was queued behind the failing one as aborted.
        # transfers accepted and not yet reported: the count takes a report a cycle late
        pending, reported = Signal(16), Signal()
        m.d.sync += [reported.eq(status_we & status_room),
                     pending.eq(pending + (self.desc.valid & self.desc.ready) - reported)]
        left = pending - reported
        # The failing transfer is the earliest one any port saw an error in.
        resp = Signal(2)
        err_addr = Signal(cfg.addr_width)
        for p in reversed(range(N)):
            earliest = Cat((ports[q].resp == Resp.OKAY) |
                           ~before(ports[q].err_tag - head, ports[p].err_tag - head)
                           for q in range(N) if q != p).all()
            with m.If((ports[p].resp != Resp.OKAY) & earliest):
                m.d.comb += [resp.eq(ports[p].resp), err_tag.eq(ports[p].err_tag),
                             err_addr.eq(global_addr(cfg, p, ports[p].err_addr))]
        m.d.comb += stop.eq(resp != Resp.OKAY)
        # The ports halt from registers, a cycle after the failing transfer is known (or
        # moves to an earlier one).
        halt, halt_tag = Signal(), Signal(TAG_BITS)
        m.d.sync += [halt.eq(stop & ~abort), halt_tag.eq(err_tag)]
        for port in ports:
            m.d.comb += [port.stop.eq(halt), port.stop_tag.eq(halt_tag)]
        # Quiet: the ports halt at the failing transfer, nothing is in flight, and no burst of
        # an earlier transfer waits to be issued (those of the failing transfer and later ones
        # wait until the datapath resets). Registered: once the merge is at the failing
        # transfer, no earlier burst is left and no later one is issued, so quiet stays.
        quiet = Signal()
        m.d.sync += quiet.eq(
            stop & halt & (halt_tag == err_tag) &
            Cat((port.outstanding == 0) & ~port.axi.arvalid for port in ports).all() &
            ~Cat(s.o.valid & before(s.o.payload.tag, err_tag) for s in skids).any())
        with m.If(at_failure & quiet & status_room):
            m.d.comb += [abort.eq(1), status_we.eq(1),
                         status_in.resp.eq(resp), status_in.addr.eq(err_addr)]
            m.d.sync += flushing.eq(left > 1)
        with m.If(flushing):
            m.d.comb += [status_we.eq(status_room), status_in.aborted.eq(1)]
            with m.If(status_room & (left == 1)):
                m.d.sync += flushing.eq(0)
        return m
