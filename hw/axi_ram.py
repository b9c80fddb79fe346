"""An AXI4 subordinate memory in block RAM, with several subordinate ports sharing one array.

It stands in for an HBM pseudo-channel on an FPGA board: the accelerator's memory port on one
subordinate port, a host bridge on another. Reads and writes proceed independently (a simple
dual-port RAM: one read and one write port); each direction serves one burst at a time, and
the ports take turns burst by burst (round robin), so a port's bursts complete in order.

Supported: INCR bursts of 1 to 256 full-width beats, any ID, WSTRB per byte. A burst of any
other type or a narrow size answers SLVERR and touches nothing; a beat whose word lies beyond
``depth`` answers DECERR (reads return zero, writes are dropped). A write burst ends on its
``awlen + 1``-th beat; ``wlast`` is not checked. A read beat is offered one cycle after its
address is issued and ``rvalid`` never depends on ``rready``: with ``rready`` held high a
burst streams one beat per cycle.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from .axi import AXI4Signature, Burst, Resp

__all__ = ["AXI4RAM"]


def _round_robin(m, requests, last, name):
    """Comb grant: the first requester after ``last`` (cyclically). Returns (any, index)."""
    n = len(requests)
    grant = Signal(range(max(n, 2)), name=f"{name}_grant")
    with m.Switch(last):
        for start in range(n):
            with m.Case(start):
                order = [(start + 1 + k) % n for k in range(n)]
                for p in reversed(order):
                    with m.If(requests[p]):
                        m.d.comb += grant.eq(p)
    return Cat(*requests).any(), grant


class AXI4RAM(wiring.Component):
    """``depth`` words of ``data_width`` bits behind ``ports`` AXI4 subordinate ports.

    Parameters
    ----------
    data_width : int
        Bus and word width in bits, a power of two from 8 to 1024.
    addr_width : int
        Byte address width of every port, 12 to 64.
    id_width : int
        AXI ID width, 1 to 16.
    depth : int
        Words of memory; word ``i`` is at byte address ``i * data_width // 8``.
    ports : int
        Subordinate ports, 1 to 8.
    init : list of int, optional
        Initial contents.

    Members
    -------
    s_axi<i> : In(AXI4Signature(...)), one per port
    """

    def __init__(self, *, data_width, addr_width, id_width, depth, ports=1, init=()):
        self._MustUse__silence = True
        sig = AXI4Signature(addr_width=addr_width, data_width=data_width, id_width=id_width)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        words = (1 << addr_width) // (data_width // 8)
        if depth > words:
            raise ValueError(f"depth must be at most {words} words (the {addr_width}-bit "
                             f"address space), not {depth!r}")
        if isinstance(ports, bool) or not isinstance(ports, int) or not 1 <= ports <= 8:
            raise ValueError(f"ports must be an integer from 1 to 8, not {ports!r}")
        self._MustUse__silence = False
        self._depth, self._ports, self._init = depth, ports, list(init)
        self._sig = sig
        super().__init__({f"s_axi{i}": In(sig) for i in range(ports)})

    depth = property(lambda self: self._depth)
    ports = property(lambda self: self._ports)

    def elaborate(self, platform):
        m = Module()
        sig, n = self._sig, self._ports
        W = sig.data_width // 8
        lw = (W - 1).bit_length()
        size = Const(lw, 3)
        buses = [getattr(self, f"s_axi{i}") for i in range(n)]
        word_bits = sig.addr_width - lw

        m.submodules.mem = mem = Memory(shape=unsigned(sig.data_width), depth=self._depth,
                                        init=self._init)
        rd = mem.read_port()
        wr = mem.write_port(granularity=8)

        def pick(signals, index):
            """``signals[index]`` for a list of equally wide values (a mux)."""
            return Array(signals)[index] if n > 1 else signals[0]

        # Read side ---------------------------------------------------------------------------
        # A burst: the words still to issue (r_left), the next word, its ID and response.
        r_left = Signal(9)
        r_word = Signal(word_bits)
        r_id = Signal(sig.id_width)
        r_bad = Signal()
        r_port = Signal(range(max(n, 2)))
        # The beat on R: registered, with the RAM's output register behind it.
        o_valid = Signal()
        o_last = Signal()
        o_id = Signal(sig.id_width)
        o_resp = Signal(2)
        o_port = Signal(range(max(n, 2)))
        o_zero = Signal()
        ar_last = Signal(range(max(n, 2)), init=n - 1)

        ar_any, ar_grant = _round_robin(m, [b.arvalid for b in buses], ar_last, "ar")
        ar_take = Signal()
        m.d.comb += ar_take.eq(ar_any & (r_left == 0))
        for i, b in enumerate(buses):
            m.d.comb += b.arready.eq((r_left == 0) & (ar_grant == i))
        with m.If(ar_take):
            araddr, arlen, arid, arsize, arburst = (
                pick([getattr(b, f"ar{x}") for b in buses], ar_grant)
                for x in ("addr", "len", "id", "size", "burst"))
            m.d.sync += [
                r_left.eq(arlen + 1), r_word.eq(araddr[lw:]), r_id.eq(arid),
                r_bad.eq((arsize != size) | (arburst != Burst.INCR)),
                r_port.eq(ar_grant), ar_last.eq(ar_grant),
            ]

        rready = pick([b.rready for b in buses], o_port)
        advance = Signal()
        m.d.comb += advance.eq(~o_valid | rready)
        in_range = Signal()
        m.d.comb += [
            in_range.eq(r_word < self._depth),
            rd.addr.eq(r_word),
            rd.en.eq(advance),
        ]
        with m.If(advance):
            m.d.sync += o_valid.eq(r_left != 0)
            with m.If(r_left != 0):
                m.d.sync += [
                    o_last.eq(r_left == 1), o_id.eq(r_id), o_port.eq(r_port),
                    o_resp.eq(Mux(r_bad, Resp.SLVERR, Mux(in_range, Resp.OKAY, Resp.DECERR))),
                    o_zero.eq(r_bad | ~in_range),
                    r_left.eq(r_left - 1), r_word.eq(r_word + 1),
                ]
        for i, b in enumerate(buses):
            m.d.comb += [
                b.rvalid.eq(o_valid & (o_port == i)),
                b.rdata.eq(Mux(o_zero, 0, rd.data)),
                b.rid.eq(o_id), b.rresp.eq(o_resp), b.rlast.eq(o_last),
            ]

        # Write side --------------------------------------------------------------------------
        w_active = Signal()
        w_left = Signal(9)
        w_word = Signal(word_bits)
        w_bad = Signal()
        w_port = Signal(range(max(n, 2)))
        b_valid = Signal()
        b_id = Signal(sig.id_width)
        b_resp = Signal(2)
        aw_last = Signal(range(max(n, 2)), init=n - 1)

        aw_any, aw_grant = _round_robin(m, [b.awvalid for b in buses], aw_last, "aw")
        aw_idle = Signal()
        m.d.comb += aw_idle.eq(~w_active & ~b_valid)
        for i, b in enumerate(buses):
            m.d.comb += b.awready.eq(aw_idle & (aw_grant == i))
        with m.If(aw_idle & aw_any):
            m.d.sync += [
                w_active.eq(1),
                w_left.eq(pick([b.awlen for b in buses], aw_grant) + 1),
                w_word.eq(pick([b.awaddr for b in buses], aw_grant)[lw:]),
                b_id.eq(pick([b.awid for b in buses], aw_grant)),
                w_bad.eq((pick([b.awsize for b in buses], aw_grant) != size) |
                         (pick([b.awburst for b in buses], aw_grant) != Burst.INCR)),
                b_resp.eq(Resp.OKAY),
                w_port.eq(aw_grant), aw_last.eq(aw_grant),
            ]

        for i, b in enumerate(buses):
            m.d.comb += b.wready.eq(w_active & (w_port == i))
        wvalid = pick([b.wvalid for b in buses], w_port)
        w_ok = Signal()
        m.d.comb += [
            w_ok.eq(~w_bad & (w_word < self._depth)),
            wr.addr.eq(w_word),
            wr.data.eq(pick([b.wdata for b in buses], w_port)),
        ]
        with m.If(w_active & wvalid):
            with m.If(w_ok):
                m.d.comb += wr.en.eq(pick([b.wstrb for b in buses], w_port))
            with m.Elif(b_resp == Resp.OKAY):
                m.d.sync += b_resp.eq(Mux(w_bad, Resp.SLVERR, Resp.DECERR))
            m.d.sync += [w_left.eq(w_left - 1), w_word.eq(w_word + 1)]
            with m.If(w_left == 1):
                m.d.sync += [w_active.eq(0), b_valid.eq(1)]

        bready = pick([b.bready for b in buses], w_port)
        with m.If(b_valid & bready):
            m.d.sync += b_valid.eq(0)
        for i, b in enumerate(buses):
            m.d.comb += [b.bvalid.eq(b_valid & (w_port == i)), b.bid.eq(b_id),
                         b.bresp.eq(b_resp)]
        return m
