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


def _count(counter, up, down):
    """``counter + up - down`` with both sums made from the register and the 1-bit ``up``
    and ``down`` picking one late, so that they reach no carry chain."""
    return Mux(up, Mux(down, counter, counter + 1), Mux(down, counter - 1, counter))


class BurstPlanner(wiring.Component):
    """Splits each row of a transfer into the bursts of one port.

    Port ``port`` owns the granules ``j`` (of ``interleave_bytes``) with
    ``j % mem_ports == port``; its words within one row are contiguous in its own address
    space. A burst is at most ``burst_len`` beats and never crosses a 4 KiB page of the port's
    address space.

    A pipeline in which no cycle holds more than one address-wide carry chain: the row
    generator steps through the rows of a transfer; stage A finds the port's first and last
    word of a row; stage B the row's length, the room to the end of the first burst's page
    and whether the row is longer than any burst; the burst stage holds the burst on offer
    and works out the next one from registers of the words left in the row and to the page.
    A burst is offered every cycle and a row without words of this port takes one; the first
    burst of a transfer comes four cycles after its descriptor, and the row generator takes
    the next descriptor the cycle after it started the last row.
    """

    def __init__(self, cfg, port):
        self._cfg, self._port = cfg, port
        super().__init__({
            "desc": In(stream.Signature(Descriptor(cfg))),
            "burst": Out(stream.Signature(BurstRequest(cfg))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        cfg, port = self._cfg, self._port
        aw, B = cfg.addr_width, cfg.burst_len
        lw, ln, lg = _log2(cfg.port_bytes), _log2(cfg.mem_ports), _log2(cfg.granule_words)
        gl = lg + ln                        # a global word's lane in its granule, and port
        hw = aw - lw - gl                   # rounds of granules over all ports
        pw = lg + hw                        # port word address width
        P = max(2, PAGE_BYTES // cfg.port_bytes)
        M = min(B, P)                       # the most beats a burst can have
        lp, lc = _log2(P), _log2(M)
        k = lc + 1                          # bits of a count of at most M words
        sw = max(pw, k, lp) + 3             # signed port words and word counts
        m = Module()

        def cap_of(pg):
            # most beats of a burst from a word ``pg`` words (0 for P) below its page's end
            to_page = Mux(pg == 0, P, pg)
            return to_page if B >= P else Mux((pg == 0) | (pg > B), B, pg)

        # -- Row generator: the rows of a transfer, one per cycle the pipeline advances. ----
        adv = Signal()
        busy = Signal()
        rows_left = Signal(16)
        stride = Signal(aw)
        row_addr = Signal(aw)               # the row's first byte
        row_lim = Signal(aw)                # one past its last byte, modulo 2**aw
        tag = Signal(TAG_BITS)
        d = self.desc.payload
        m.d.comb += self.desc.ready.eq(~busy)
        with m.If(self.desc.valid & ~busy):
            m.d.sync += [busy.eq(1), rows_left.eq(d.rows), stride.eq(d.stride),
                         row_addr.eq(d.addr), row_lim.eq(d.addr + d.row_bytes)]
        with m.If(busy & adv):
            m.d.sync += [rows_left.eq(rows_left - 1), row_addr.eq(row_addr + stride),
                         row_lim.eq(row_lim + stride)]
            with m.If(rows_left == 1):
                m.d.sync += [busy.eq(0), tag.eq(tag + 1)]

        # -- Stage A: this port's first and last word of the row. ---------------------------
        # Global word w is lane w[:lg] of granule w >> lg, on port w[lg:gl], at port word
        # Cat(w[:lg], w[gl:]) ("rounds" w[gl:]). The row's words are w0 = row_addr >> lw to
        # w1 = (row_lim - 1) >> lw; w1 is taken apart without a chain of its own.
        def lanes(low, high):
            return Cat(low, high) if lg else high

        w0 = row_addr[lw:]
        j0 = w0[lg:gl]
        same0, inc0 = (j0 == port, j0 > port) if ln else (C(1, 1), C(0, 1))
        first = lanes(Mux(same0, w0[:lg], 0), w0[gl:] + inc0)

        lo1 = (row_lim[lw:lw + gl] - (row_lim[:lw] == 0))[:gl]    # w1's lane and port
        borrow1 = row_lim[:lw + gl] == 0                          # w1's rounds: one fewer
        top1 = row_lim == 0                 # the row ends at 2**aw: w1 is the last word
        j1 = lo1[lg:gl]
        same1, dec1 = (j1 == port, j1 < port) if ln else (C(1, 1), C(0, 1))
        lane1 = Mux(same1, lo1[:lg], (1 << lg) - 1)
        if lc >= lg:                        # M words back: M // g rounds back
            lane1c, back_c = lane1, M >> lg
        else:                               # within the granule, or one round back
            lane1c = Cat(lane1[:lc], (lane1[lc:lg] - 1)[:lg - lc])
            back_c = lane1[lc:lg] == 0
        rounds1 = Cat(row_lim[lw + gl:], top1)      # w1's rounds plus borrow1
        back = Signal(range(M + 3), name="back")    # rounds from rounds1 to the last word
        back_cc = Signal(range(M + 3), name="back_c")
        m.d.comb += [back.eq(borrow1 + dec1), back_cc.eq(borrow1 + dec1 + back_c)]
        rounds_l = Signal(signed(sw - lg), name="rounds_last")
        rounds_c = Signal(signed(sw - lg), name="rounds_last_c")
        m.d.comb += [rounds_l.eq(rounds1 - back), rounds_c.eq(rounds1 - back_cc)]
        last = lanes(lane1, rounds_l).as_signed()
        last_c = lanes(lane1c, rounds_c).as_signed()

        a_valid = Signal()
        a_tag = Signal(TAG_BITS)
        a_first = Signal(signed(sw))
        a_last = Signal(signed(sw))         # this port's last word of the row
        a_last_c = Signal(signed(sw))       # a_last - M
        with m.If(adv):
            m.d.sync += [a_valid.eq(busy), a_tag.eq(tag), a_first.eq(first), a_last.eq(last),
                         a_last_c.eq(last_c)]

        # -- Stage B: the row's length, and its first word's room to the end of its page. ---
        b_valid = Signal()
        b_tag = Signal(TAG_BITS)
        b_has = Signal()                    # the row has words of this port
        b_first = Signal(pw)
        b_t = Signal(signed(sw))            # words of the row - M - 1: >= 0 if more than M
        b_lo = Signal(k)                    # words of the row, modulo 2**k
        b_pg = Signal(lp)                   # words to the end of the first word's page, mod P
        b_cap = Signal(range(M + 1))
        pg0 = Signal(lp)
        m.d.comb += pg0.eq(-a_first[:lp])
        with m.If(adv):
            m.d.sync += [b_valid.eq(a_valid), b_tag.eq(a_tag), b_has.eq(a_last >= a_first),
                         b_first.eq(a_first[:pw]), b_t.eq(a_last_c - a_first),
                         b_lo.eq(a_last[:k] - a_first[:k] + 1), b_pg.eq(pg0),
                         b_cap.eq(cap_of(pg0))]

        # -- Burst stage: the burst on offer, and what is left of its row after it. ---------
        valid = Signal()
        word = Signal(pw)
        beats = Signal(range(M + 1))
        length = Signal(8)
        final = Signal()
        btag = Signal(TAG_BITS)
        t = Signal(signed(sw))
        lo = Signal(k)
        pg = Signal(lp)
        cap = Signal(range(M + 1))

        def plan(t, lo, pg, cap, name):
            # The burst from a word ``pg`` below its page end (``cap`` beats at most), with
            # ``t + M + 1`` words left in the row (``lo`` modulo 2**k), and what is left after
            # it. A burst that does not end the row has ``cap`` beats, so what is left after
            # it (all that matters) takes no compare.
            big = t[-1] == 0                # more words than any burst
            short = ~big & (lo < cap)
            n = Signal(range(M + 1), name=f"{name}_beats")
            n_len = Signal(8, name=f"{name}_len")
            nxt_pg = Signal(lp, name=f"{name}_pg")
            m.d.comb += [n.eq(Mux(short, lo, cap)), n_len.eq(Mux(short, lo - 1, cap - 1)),
                         nxt_pg.eq(pg - cap)]
            return {"beats": n, "len": n_len, "last": ~big & (lo <= cap),
                    "t": t - cap,           # exact while big; stays negative after
                    "lo": (lo - cap)[:k], "pg": nxt_pg, "cap": cap_of(nxt_pg)}

        row = plan(b_t, b_lo, b_pg, b_cap, "row")
        more = plan(t, lo, pg, cap, "more")

        def load(x):
            m.d.sync += [beats.eq(x["beats"]), length.eq(x["len"]), final.eq(x["last"]),
                         t.eq(x["t"]), lo.eq(x["lo"]), pg.eq(x["pg"]), cap.eq(x["cap"])]

        free = ~valid | self.burst.ready
        new_row = free & (~valid | final)
        m.d.comb += adv.eq(~b_valid | new_row)
        with m.If(new_row & b_valid):
            m.d.sync += [valid.eq(b_has), word.eq(b_first), btag.eq(b_tag)]
            load(row)
        with m.Elif(free & valid & ~final):
            m.d.sync += word.eq(word + beats)
            load(more)
        with m.Elif(free):
            m.d.sync += valid.eq(0)

        m.d.comb += [
            self.burst.valid.eq(valid),
            self.burst.payload.addr.eq(word << lw),
            self.burst.payload.len.eq(length),
            self.burst.payload.tag.eq(btag),
            self.burst.payload.last.eq(final),
            self.idle.eq(~busy & ~a_valid & ~b_valid & ~valid),
        ]
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
    """Walks a transfer stripe by stripe, one stripe per cycle; a descriptor offered when the
    previous one's last stripe is taken is planned from the next cycle, without a gap.

    The row's end is kept as registers of the stripes left in the row (whose sign marks the
    last stripe) and of its last byte's offset in its stripe, so that each stripe's plan
    comes from registers and small arithmetic; moving to the next row takes one address-wide
    carry chain (``row_addr + stride``) in parallel with small ones."""

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

        rb = Shape.cast(Descriptor(cfg)["row_bytes"].shape).width
        stride = Signal(cfg.addr_width)
        rows_left = Signal(16)
        row_addr = Signal(cfg.addr_width)
        stripe = Signal(cfg.addr_width - ls)
        # Of row_bytes - 1: its stripes (floor) and one fewer, and its bytes past them.
        span_hi = Signal(rb - ls)
        span_hi_m1 = Signal(signed(rb - ls + 1))
        span_lo = Signal(ls)
        left = Signal(signed(rb - ls + 2))  # stripes of the row after this one, minus one
        end_hi = Signal(range(1, S + 1))    # offset of the row's last byte in its stripe, + 1
        first = Signal()                    # this stripe is the row's first

        def row_start(addr_lo, hi, hi_m1, lo, name):
            # left and end_hi of a row whose first byte is at ``addr_lo`` in its stripe,
            # worked out whether or not the row starts (only the registers' enables wait)
            end = Signal(ls + 1, name=f"{name}_end")
            row_left = Signal.like(left, name=f"{name}_left")
            row_end_hi = Signal.like(end_hi, name=f"{name}_end_hi")
            m.d.comb += [end.eq(addr_lo + lo), row_left.eq(Mux(end[ls], hi, hi_m1)),
                         row_end_hi.eq(end[:ls] + 1)]
            return [left.eq(row_left), end_hi.eq(row_end_hi), first.eq(1)]

        d = self.desc.payload
        span = Signal(rb)                   # row_bytes - 1
        span_m1 = Signal(signed(rb + 1))    # row_bytes - 1 - S
        next_addr = Signal(cfg.addr_width)
        next_lo = Signal(ls)                # next_addr[:ls], from a carry chain of its own
        m.d.comb += [span.eq(d.row_bytes - 1), span_m1.eq(d.row_bytes - (S + 1)),
                     next_addr.eq(row_addr + stride), next_lo.eq(row_addr[:ls] + stride[:ls])]
        desc_row = row_start(d.addr[:ls], span[ls:], span_m1 >> ls, span[:ls], "desc")
        next_row = row_start(next_lo, span_hi, span_hi_m1, span_lo, "next")

        last = left[-1]
        lo = Signal(range(S))
        hi = Signal(range(S + 1))       # bytes [lo, hi) of this stripe belong to the row
        m.d.comb += [
            lo.eq(Mux(first, row_addr[:ls], 0)),
            hi.eq(Mux(last, end_hi, S)),
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
            plan.last.eq(last),
            plan.end.eq(last & (rows_left == 1)),
        ]

        def take():
            # the next descriptor, if one is offered; its plans start in the next cycle
            m.d.comb += self.desc.ready.eq(1)
            with m.If(self.desc.valid):
                m.d.sync += [stride.eq(d.stride), row_addr.eq(d.addr),
                             rows_left.eq(d.rows), stripe.eq(d.addr >> ls),
                             span_hi.eq(span[ls:]), span_lo.eq(span[:ls]),
                             span_hi_m1.eq(span_m1 >> ls)]
                m.d.sync += desc_row
                m.next = "RUN"
            with m.Else():
                m.next = "IDLE"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                take()
            with m.State("RUN"):
                m.d.comb += self.plan.valid.eq(1)
                with m.If(self.plan.ready):
                    m.d.sync += [stripe.eq(stripe + 1), left.eq(left - 1), first.eq(0)]
                    with m.If(last):
                        m.d.sync += [rows_left.eq(rows_left - 1), row_addr.eq(next_addr),
                                     stripe.eq(next_addr >> ls)]
                        m.d.sync += next_row
                        with m.If(rows_left == 1):
                            take()      # back to back: no idle cycle between transfers
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
