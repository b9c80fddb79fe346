"""2-D strided transfers over interleaved memory ports: descriptors, beats and the planners
shared by the read and write engines.

The global address space is interleaved over ``mem_ports`` ports at the granule of one port
word: global word ``w`` (``port_bytes`` bytes) lives on port ``w % mem_ports`` at port word
``w // mem_ports``. An engine beat (a *stripe*) holds one word of every port, so one long
transfer keeps every port busy, and each port still sees long sequential bursts.
"""

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Descriptor", "Beat", "Status", "BurstRequest", "BurstPlanner", "BeatPlanner",
           "BeatPlan", "TAG_BITS"]

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
    """One INCR burst on one port: port byte address (word aligned), AxLEN, and the number
    of its transfer (counted from reset, modulo ``2**TAG_BITS``)."""

    def __init__(self, cfg):
        super().__init__({"addr": cfg.port_addr_width, "len": 8, "tag": TAG_BITS})


def _log2(x):
    return x.bit_length() - 1


class BurstPlanner(wiring.Component):
    """Splits each row of a transfer into the bursts of one port.

    Port ``port`` owns the global words ``w`` with ``w % mem_ports == port``. A burst is at
    most ``burst_len`` beats and never crosses a 4 KiB page of the port's address space.
    Takes one cycle per row and one per burst.
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
        page_words = max(1, PAGE_BYTES // cfg.port_bytes)
        m = Module()

        desc = Signal(Descriptor(cfg))
        row_addr = Signal(cfg.addr_width)
        rows_left = Signal(16)
        word = Signal(cfg.addr_width)        # next port word of this row
        last = Signal(cfg.addr_width)        # last port word of this row

        # This port's words within the current row [row_addr, row_addr + row_bytes).
        w0 = row_addr >> lw
        w1 = (row_addr + desc.row_bytes - 1)[lw:cfg.addr_width]
        first_w = Signal(cfg.addr_width + 1)
        last_w = Signal(cfg.addr_width + 1)
        m.d.comb += [
            first_w.eq(w0 + ((self._port - w0) & (N - 1))),
            last_w.eq(w1 - ((w1 - self._port) & (N - 1))),
        ]
        has_words = first_w <= w1

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
                    m.d.sync += [word.eq(first_w >> ln), last.eq(last_w >> ln)]
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
    """What one stripe of a transfer looks like: its byte mask, which ports take part, and
    whether it ends a row or the transfer."""

    def __init__(self, cfg):
        super().__init__({
            "mask": cfg.stripe_bytes,
            "lanes": cfg.mem_ports,
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
