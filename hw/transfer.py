"""2-D strided transfers over interleaved memory ports: descriptors, beats and the planners
shared by the read and write engines.

The global address space is interleaved over ``mem_ports`` ports at a granule of
``G = interleave_bytes``: global byte ``a`` lives on port ``(a // G) % mem_ports`` at port
address ``(a // (G * mem_ports)) * G + a % G``. The words of one port within a row of a
transfer are therefore contiguous in its own address space, so each port sees long
sequential bursts, and one long transfer keeps every port busy.

An engine beat (a *stripe*) is ``mem_ports`` port words aligned in the global address space.
With a granule of one port word, lane ``p`` of every stripe belongs to port ``p``. With a
larger granule a stripe draws on fewer ports, each contributing a *segment* of up to
``segment_words`` consecutive words; the engines gather (read) or scatter (write) these
segments through a small buffer per port.
"""

from amaranth import *
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Descriptor", "Beat", "Status", "BurstRequest", "BurstPlanner", "BeatPlanner",
           "BeatPlan", "TAG_BITS", "Segment", "TaggedWord", "SegmentGather",
           "SegmentScatter"]

PAGE_BYTES = 4096           # AXI4: a burst never crosses a 4 KiB boundary


class Descriptor(data.StructLayout):
    """A 2-D transfer: ``rows`` rows of ``row_bytes`` bytes, row r at ``addr + r * stride``.
    Any byte alignment; ``rows`` and ``row_bytes`` at least 1."""

    def __init__(self, cfg):
        super().__init__({
            "addr": cfg.addr_width,
            "rows": 16,
            "row_bytes": 24,
            "stride": cfg.addr_width,
        })


class Beat(data.StructLayout):
    """One stripe of data, aligned to ``stripe_bytes`` in the global address space.

    ``mask`` marks the bytes that belong to the transfer (the partial first and last stripes
    of a row have some clear); ``last`` ends a row, ``end`` ends the transfer."""

    def __init__(self, cfg):
        super().__init__({
            "data": 8 * cfg.stripe_bytes,
            "mask": cfg.stripe_bytes,
            "last": 1,
            "end": 1,
        })


class Status(data.StructLayout):
    """Completion of one transfer: ``resp`` is the AXI response (OKAY, or the first SLVERR or
    DECERR seen) and ``addr`` the global byte address of the failing beat. ``invalid`` marks a
    descriptor with zero rows or zero bytes per row, refused before any memory access;
    ``aborted`` a transfer that was queued behind a failed one and not performed."""

    def __init__(self, cfg):
        super().__init__({"resp": 2, "addr": cfg.addr_width, "invalid": 1, "aborted": 1})


TAG_BITS = 8                # transfers in flight are numbered modulo 2**TAG_BITS


class BurstRequest(data.StructLayout):
    """One INCR burst on one port: port byte address (word aligned), AxLEN, the number of its
    transfer (counted from reset, modulo ``2**TAG_BITS``), and whether it is the port's last
    burst of a row."""

    def __init__(self, cfg):
        super().__init__({"addr": cfg.port_addr_width, "len": 8, "tag": TAG_BITS, "last": 1})


def _log2(x):
    return x.bit_length() - 1


class BurstPlanner(wiring.Component):
    """Splits each row of a transfer into the bursts of one port.

    Port ``port`` owns the granules ``j`` (of ``interleave_bytes``) with
    ``j % mem_ports == port``; its words within one row are contiguous in its own address
    space. A burst is at most ``burst_len`` beats and never crosses a 4 KiB page of the port's
    address space. Takes one cycle per row and one per burst.
    """

    def __init__(self, cfg, port):
        self._cfg, self._port = cfg, port
        super().__init__({
            "desc": In(stream.Signature(Descriptor(cfg))),
            "burst": Out(stream.Signature(BurstRequest(cfg))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        N, lw, ln = cfg.mem_ports, _log2(cfg.port_bytes), _log2(cfg.mem_ports)
        g, lg = cfg.granule_words, _log2(cfg.granule_words)
        page_words = max(1, PAGE_BYTES // cfg.port_bytes)
        m = Module()

        desc = Signal(Descriptor(cfg))
        row_addr = Signal(cfg.addr_width)
        rows_left = Signal(16)
        word = Signal(cfg.addr_width)        # next port word of this row
        last = Signal(cfg.addr_width)        # last port word of this row

        # This port's global words within the current row [row_addr, row_addr + row_bytes).
        w0 = row_addr >> lw
        w1 = (row_addr + desc.row_bytes - 1)[lw:cfg.addr_width]
        first_w = Signal(cfg.addr_width + 1)
        last_w = Signal(cfg.addr_width + 1)
        if g == 1:
            m.d.comb += [
                first_w.eq(w0 + ((self._port - w0) & (N - 1))),
                last_w.eq(w1 - ((w1 - self._port) & (N - 1))),
            ]
        else:
            # Granules to skip forward from the first (back from the last) to reach this port.
            j0, j1 = w0 >> lg, w1 >> lg
            d0 = Signal(max(ln, 1))
            d1 = Signal(max(ln, 1))
            m.d.comb += [d0.eq((self._port - j0) & (N - 1)), d1.eq((j1 - self._port) & (N - 1))]
            m.d.comb += [
                first_w.eq(Mux(d0 == 0, w0, (j0 + d0) << lg)),
                last_w.eq(Mux(d1 == 0, w1, Cat(C(g - 1, lg), j1 - d1))),
            ]
        has_words = first_w <= w1

        def port_word(w):
            return w >> ln if g == 1 else Cat(w[:lg], w[lg + ln:])

        # beats = min(burst_len, words left in the row, words left in the 4 KiB page)
        to_page = page_words - (word & (page_words - 1))
        remaining = last - word + 1
        capped = Signal(range(cfg.burst_len + 1))
        beats = Signal(range(cfg.burst_len + 1))
        m.d.comb += [
            capped.eq(Mux(remaining < cfg.burst_len, remaining, cfg.burst_len)),
            beats.eq(Mux(to_page < capped, to_page, capped)),
        ]

        tag = Signal(TAG_BITS)
        m.d.comb += [
            self.burst.payload.addr.eq(word << lw),
            self.burst.payload.len.eq(beats - 1),
            self.burst.payload.tag.eq(tag),
            self.burst.payload.last.eq(word + beats > last),
        ]

        def next_row():
            m.d.sync += [rows_left.eq(rows_left - 1), row_addr.eq(row_addr + desc.stride)]
            with m.If(rows_left == 1):
                m.d.sync += tag.eq(tag + 1)
                m.next = "IDLE"
            with m.Else():
                m.next = "ROW"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.desc.ready.eq(1), self.idle.eq(1)]
                with m.If(self.desc.valid):
                    m.d.sync += [desc.eq(self.desc.payload), row_addr.eq(self.desc.payload.addr),
                                 rows_left.eq(self.desc.payload.rows)]
                    m.next = "ROW"
            with m.State("ROW"):
                with m.If(has_words):
                    m.d.sync += [word.eq(port_word(first_w)), last.eq(port_word(last_w))]
                    m.next = "BURST"
                with m.Else():
                    next_row()
            with m.State("BURST"):
                m.d.comb += self.burst.valid.eq(1)
                with m.If(self.burst.ready):
                    m.d.sync += word.eq(word + beats)
                    with m.If(word + beats > last):
                        next_row()
        return m


class BeatPlan(data.StructLayout):
    """What one stripe of a transfer looks like: its byte mask, which of its word lanes take
    part, the port of its first segment (segment ``i`` is on port ``(port + i) % mem_ports``),
    and whether it ends a row or the transfer."""

    def __init__(self, cfg):
        super().__init__({
            "mask": cfg.stripe_bytes,
            "lanes": cfg.mem_ports,
            "port": max(1, _log2(cfg.mem_ports)),
            "last": 1,
            "end": 1,
        })


class BeatPlanner(wiring.Component):
    """Walks a transfer stripe by stripe, one stripe per cycle."""

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "desc": In(stream.Signature(Descriptor(cfg))),
            "plan": Out(stream.Signature(BeatPlan(cfg))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        S, W, ls = cfg.stripe_bytes, cfg.port_bytes, _log2(cfg.stripe_bytes)
        m = Module()

        desc = Signal(Descriptor(cfg))
        row_addr = Signal(cfg.addr_width)
        rows_left = Signal(16)
        stripe = Signal(cfg.addr_width)

        row_end = row_addr + desc.row_bytes - 1
        s0 = row_addr >> ls
        s1 = row_end[ls:cfg.addr_width]
        lo = Signal(range(S))
        hi = Signal(range(S + 1))       # bytes [lo, hi) of this stripe belong to the row
        m.d.comb += [
            lo.eq(Mux(stripe == s0, row_addr[:ls], 0)),
            hi.eq(Mux(stripe == s1, row_end[:ls] + 1, S)),
        ]
        plan = self.plan.payload
        for i in range(S):
            m.d.comb += plan.mask[i].eq((lo <= i) & (hi > i))
        for p in range(cfg.mem_ports):
            m.d.comb += plan.lanes[p].eq((lo < (p + 1) * W) & (hi > p * W))
        ln, lG = _log2(cfg.mem_ports), _log2(cfg.interleave_bytes)
        if ln:
            m.d.comb += plan.port.eq((stripe << ls)[lG:lG + ln])
        m.d.comb += [
            plan.last.eq(stripe == s1),
            plan.end.eq((stripe == s1) & (rows_left == 1)),
        ]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.desc.ready.eq(1), self.idle.eq(1)]
                with m.If(self.desc.valid):
                    m.d.sync += [desc.eq(self.desc.payload), row_addr.eq(self.desc.payload.addr),
                                 rows_left.eq(self.desc.payload.rows),
                                 stripe.eq(self.desc.payload.addr >> ls)]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.plan.valid.eq(1)
                with m.If(self.plan.ready):
                    m.d.sync += stripe.eq(stripe + 1)
                    with m.If(stripe == s1):
                        next_addr = row_addr + desc.stride
                        m.d.sync += [rows_left.eq(rows_left - 1), row_addr.eq(next_addr),
                                     stripe.eq(next_addr >> ls)]
                        with m.If(rows_left == 1):
                            m.next = "IDLE"
        return m


class Segment(data.StructLayout):
    """A segment of one port's words in a stripe, on its way to the port: up to
    ``segment_words`` words with byte strobes, of which lanes ``first`` to ``last`` (in port
    address order) take part."""

    def __init__(self, cfg):
        k = cfg.segment_words
        super().__init__({
            "data": k * cfg.port_width,
            "strb": k * cfg.port_bytes,
            "first": max(1, _log2(k)),
            "last": max(1, _log2(k)),
        })


class TaggedWord(data.StructLayout):
    """A port word read from memory, with its lane in its segment and whether it ends the
    segment (the segment's last lane, or the port's last word of a row)."""

    def __init__(self, cfg):
        super().__init__({
            "data": cfg.port_width,
            "pos": max(1, _log2(cfg.segment_words)),
            "end": 1,
        })


def _wrap(x, depth):
    return Mux(x == depth - 1, 0, x + 1)


class SegmentGather(wiring.Component):
    """Read side of one port: collects the port's words, one per cycle, into segments, and
    offers whole segments, one per cycle.

    A segment takes one row of a memory of ``rows`` rows of ``segment_words`` words (written a
    word at a time); its untouched lanes keep stale data. ``rows`` defaults to one granule of
    this port's words and one row more, so that a port keeps its full rate while the stripes
    of the other ports' granules go out.

    Members
    -------
    i : In(stream.Signature(TaggedWord))
    o : Out(stream.Signature(segment_words * port_width))
    """

    def __init__(self, cfg, rows=None):
        self._cfg = cfg
        self._rows = rows or cfg.granule_words // cfg.segment_words + 1
        super().__init__({
            "i": In(stream.Signature(TaggedWord(cfg))),
            "o": Out(stream.Signature(cfg.segment_words * cfg.port_width)),
        })

    def elaborate(self, platform):
        cfg, D = self._cfg, self._rows
        k = cfg.segment_words
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=k * cfg.port_width, depth=D, init=[])
        wr = mem.write_port(granularity=cfg.port_width)
        rd = mem.read_port(transparent_for=(wr,))

        head = Signal(range(D))
        tail = Signal(range(D))         # the row being filled
        count = Signal(range(D + 1))    # complete rows
        push = Signal()
        pop = Signal()
        m.d.comb += [
            self.i.ready.eq(count < D),
            push.eq(self.i.valid & self.i.ready & self.i.payload.end),
            wr.addr.eq(tail),
            wr.data.eq(Cat(self.i.payload.data for _ in range(k))),
            wr.en.eq(Mux(self.i.valid & self.i.ready, 1 << self.i.payload.pos, 0)),
            self.o.valid.eq(count != 0),
            self.o.payload.eq(rd.data),
            pop.eq(self.o.valid & self.o.ready),
            # the read port always shows the head row, including what is written this cycle
            rd.addr.eq(Mux(pop, _wrap(head, D), head)),
        ]
        with m.If(push):
            m.d.sync += tail.eq(_wrap(tail, D))
        with m.If(pop):
            m.d.sync += head.eq(_wrap(head, D))
        m.d.sync += count.eq(count + push - pop)
        return m


class SegmentScatter(wiring.Component):
    """Write side of one port: takes whole segments, one per cycle, and hands out their taking
    part words in order, one per cycle, with their strobes.

    Members
    -------
    i : In(stream.Signature(Segment))
    o : Out(stream.Signature({data, strb}))
    level : Out(range(1 << 16))
        Words waiting in the buffer.
    """

    def __init__(self, cfg, rows):
        self._cfg, self._rows = cfg, rows
        super().__init__({
            "i": In(stream.Signature(Segment(cfg))),
            "o": Out(stream.Signature(data.StructLayout(
                {"data": cfg.port_width, "strb": cfg.port_bytes}))),
            "level": Out(range(1 << 16)),
        })

    def elaborate(self, platform):
        cfg, D = self._cfg, self._rows
        W = cfg.port_bytes
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=Segment(cfg), depth=D, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,))

        head = Signal(range(D))
        tail = Signal(range(D))
        count = Signal(range(D + 1))
        push = Signal()
        pop = Signal()
        take = Signal()
        pos = Signal.like(self.i.payload.first)     # the next lane of the head row
        started = Signal()                          # pos is valid for the head row
        row = rd.data
        cur = Mux(started, pos, row.first)
        m.d.comb += [
            self.i.ready.eq(count < D),
            push.eq(self.i.valid & self.i.ready),
            wr.addr.eq(tail),
            wr.data.eq(self.i.payload),
            wr.en.eq(push),
            self.o.valid.eq(count != 0),
            self.o.payload.data.eq(row.data.word_select(cur, 8 * W)),
            self.o.payload.strb.eq(row.strb.word_select(cur, W)),
            take.eq(self.o.valid & self.o.ready),
            pop.eq(take & (cur == row.last)),
            rd.addr.eq(Mux(pop, _wrap(head, D), head)),
        ]
        with m.If(push):
            m.d.sync += tail.eq(_wrap(tail, D))
        with m.If(pop):
            m.d.sync += [head.eq(_wrap(head, D)), started.eq(0)]
        with m.Elif(take):
            m.d.sync += [pos.eq(cur + 1), started.eq(1)]
        m.d.sync += [
            count.eq(count + push - pop),
            self.level.eq(self.level + Mux(push, self.i.payload.last - self.i.payload.first + 1,
                                           0) - take),
        ]
        return m
