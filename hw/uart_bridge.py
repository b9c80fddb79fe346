"""A host bridge over a UART (8N1): framed commands to the CSRs (AXI4-Lite) and the memory
(AXI4, the accelerator's interleaved global address space).

Frames, every multi-byte field little-endian::

    request   0xA5  CMD  ADDR[4]  LEN[2]  payload
    response  0x5A  CMD  data  STATUS

======  ==========  ============================  ==========================================
CMD     name        request payload               response data
======  ==========  ============================  ==========================================
0x01    CSR_WRITE   4 bytes, written to ADDR      none
0x02    CSR_READ    none                          4 bytes read from ADDR
0x03    MEM_WRITE   LEN bytes, to ADDR up         none
0x04    MEM_READ    none                          LEN bytes from ADDR up
======  ==========  ============================  ==========================================

STATUS is 0 on success; bits 0-1 hold the first non-OKAY AXI response of the command, bit 7
an unknown CMD (answered with no data; its payload, if any, is then read as frames). A byte
other than 0xA5 where a frame should start is dropped, so a host resynchronizes by waiting
out one command's worth of bytes. A MEM_READ sends all its LEN bytes even after an error.

Memory accesses are single-beat full-width AXI4 bursts, one at a time (a write's W after its
AW): bytes of one memory word go out as one write with their strobes. Global byte ``a`` lives on
port ``(a // G) % ports`` at that port's byte ``(a // (G * ports)) * G + a % G``, with ``G``
the interleave granule, as the accelerator interleaves its ports.
"""

from amaranth import *
from amaranth.lib import enum, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .axi import AXI4LiteSignature, AXI4Signature, Burst

__all__ = ["Cmd", "REQUEST_SYNC", "RESPONSE_SYNC", "STATUS_BAD_CMD", "HEADER_BYTES",
           "UARTRx", "UARTTx", "UARTBridge"]

REQUEST_SYNC, RESPONSE_SYNC = 0xA5, 0x5A
STATUS_BAD_CMD = 0x80
HEADER_BYTES = 8            # sync, cmd, addr, len


class Cmd(enum.IntEnum, shape=8):
    CSR_WRITE = 0x01
    CSR_READ = 0x02
    MEM_WRITE = 0x03
    MEM_READ = 0x04


def _check_divisor(divisor):
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"divisor must be an integer of at least 4 (clock cycles per bit), "
                         f"not {divisor!r}")


class _Serial(wiring.Component):
    """A UART side: ``divisor`` clock cycles per bit, checked."""

    def __init__(self, divisor):
        self._MustUse__silence = True
        _check_divisor(divisor)
        self._MustUse__silence = False
        self._divisor = divisor
        super().__init__()


class UARTRx(_Serial):
    """UART receiver, 8N1, ``divisor`` clock cycles per bit; samples mid-bit.

    Members
    -------
    rx : In(1)
        The line (idle high); synchronized inside.
    o : Out(stream.Signature(8))
        One beat per byte received; the beat is lost if not taken before the next byte ends.
    frame_error : Out(1)
        Pulse: a byte without its stop bit (dropped).
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    frame_error: Out(1)

    def elaborate(self, platform):
        m = Module()
        d = self._divisor
        sync = Signal(2, init=0b11)
        m.d.sync += sync.eq(Cat(self.rx, sync[0]))
        line = sync[1]
        count = Signal(range(d))
        bits = Signal(range(9))
        shift = Signal(8)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += self.frame_error.eq(0)
        with m.If(count != 0):
            m.d.sync += count.eq(count - 1)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += count.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(count == 0):
                    with m.If(line):                # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [count.eq(d - 1), bits.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(count == 0):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), bits.eq(bits + 1),
                                 count.eq(d - 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(count == 0):
                    with m.If(line):
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                    m.next = "IDLE"
        return m


class UARTTx(_Serial):
    """UART transmitter, 8N1, ``divisor`` clock cycles per bit.

    Members
    -------
    i : In(stream.Signature(8))
    tx : Out(1)
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        d = self._divisor
        shift = Signal(10, init=0x3FF)
        left = Signal(range(11))
        count = Signal(range(d))
        m.d.comb += [self.tx.eq(shift[0]), self.i.ready.eq(left == 0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shift.eq(Cat(0, self.i.payload, 1)), left.eq(10), count.eq(d - 1)]
        with m.Elif(left != 0):
            with m.If(count == 0):
                m.d.sync += [shift.eq(Cat(shift[1:], 1)), left.eq(left - 1), count.eq(d - 1)]
            with m.Else():
                m.d.sync += count.eq(count - 1)
        return m


class UARTBridge(wiring.Component):
    """The UART command bridge (see the module docstring for the protocol).

    Parameters
    ----------
    cfg : AccelConfig
        The accelerator whose memory ports the bridge shares: ``mem_ports`` managers of its
        width, address and ID widths.
    divisor : int
        Clock cycles per UART bit (``f_clk / baud``), at least 4.
    csr_addr_width : int
        Address width of ``m_axil``.

    Members
    -------
    rx : In(1), tx : Out(1)
        The UART lines.
    m_axil : Out(AXI4LiteSignature(addr_width=csr_addr_width))
    m_axi<p> : Out(AXI4Signature(...)), one per memory port
    active : Out(1)
        A command is in progress.
    rx_error : Out(1)
        Sticky: a received byte was lost (the receive FIFO was full) or had no stop bit.
    """

    def __init__(self, cfg, *, divisor, csr_addr_width=12):
        self._MustUse__silence = True
        _check_divisor(divisor)
        self._MustUse__silence = False
        self._cfg, self._divisor = cfg, divisor
        self._axi = AXI4Signature(addr_width=cfg.port_addr_width, data_width=cfg.port_width,
                                  id_width=cfg.axi_id_width)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "m_axil": Out(AXI4LiteSignature(addr_width=csr_addr_width)),
            **{f"m_axi{p}": Out(self._axi) for p in range(cfg.mem_ports)},
            "active": Out(1),
            "rx_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        W, N = cfg.port_bytes, cfg.mem_ports
        lw, ln = (W - 1).bit_length(), (N - 1).bit_length()
        m.submodules.urx = urx = UARTRx(self._divisor)
        m.submodules.utx = utx = UARTTx(self._divisor)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=16)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        m.d.comb += [fifo.w_data.eq(urx.o.payload), fifo.w_en.eq(urx.o.valid),
                     urx.o.ready.eq(1)]
        with m.If((urx.o.valid & ~fifo.w_rdy) | urx.frame_error):
            m.d.sync += self.rx_error.eq(1)
        rx_valid, rx_data = fifo.r_rdy, fifo.r_data
        rx_take = fifo.r_en
        tx = utx.i

        header = Signal(8 * (HEADER_BYTES - 1))     # cmd, addr, len
        cmd, addr, length = header[:8], header[8:40], header[40:56]
        hdr_count = Signal(range(HEADER_BYTES))
        left = Signal(16)           # bytes of the command's payload or data still to move
        status = Signal(8)
        word = Signal(cfg.port_width)
        strb = Signal(W)
        w_addr = Signal(32)         # global byte address of the word being written or read
        shift = Signal(32)          # CSR data, LSB first
        count = Signal(range(5))
        a_done = Signal()
        w_done = Signal()

        lane = addr[:lw]
        lg = (cfg.interleave_bytes - 1).bit_length()
        port = w_addr[lg:lg + ln] if ln else Const(0, 1)
        port_addr = Cat(Const(0, lw), w_addr[lw:lg], w_addr[lg + ln:])
        buses = [getattr(self, f"m_axi{p}") for p in range(N)]
        for b in buses:
            m.d.comb += [b.awaddr.eq(port_addr), b.araddr.eq(port_addr),
                         b.awsize.eq(lw), b.arsize.eq(lw),
                         b.awburst.eq(Burst.INCR), b.arburst.eq(Burst.INCR),
                         b.wdata.eq(word), b.wstrb.eq(strb), b.wlast.eq(1)]
        axil = self.m_axil
        m.d.comb += [axil.awaddr.eq(addr), axil.araddr.eq(addr), axil.wdata.eq(shift),
                     axil.wstrb.eq(0xF)]

        def sel(name):
            """The member ``name`` of the memory port that ``w_addr`` falls on."""
            return Array(getattr(b, name) for b in buses)[port] if N > 1 else \
                getattr(buses[0], name)

        def drive(name, value):
            for p, b in enumerate(buses):
                m.d.comb += getattr(b, name).eq(value & (port == p))

        def note(resp):
            with m.If(status == 0):
                m.d.sync += status.eq(resp)

        m.d.comb += self.active.eq(1)
        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += [rx_take.eq(1), self.active.eq(0)]
                with m.If(rx_valid & (rx_data == REQUEST_SYNC)):
                    m.d.sync += [hdr_count.eq(0), status.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += rx_take.eq(1)
                with m.If(rx_valid):
                    m.d.sync += [header.eq(Cat(header[8:], rx_data)),
                                 hdr_count.eq(hdr_count + 1)]
                    with m.If(hdr_count == HEADER_BYTES - 2):
                        m.next = "SYNC"
            with m.State("SYNC"):               # response sync, then dispatch
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(RESPONSE_SYNC)]
                with m.If(tx.ready):
                    m.next = "CMD"
            with m.State("CMD"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(cmd)]
                with m.If(tx.ready):
                    m.d.sync += [left.eq(length), count.eq(0), a_done.eq(0), w_done.eq(0),
                                 strb.eq(0), w_addr.eq(addr)]
                    with m.Switch(cmd):
                        with m.Case(Cmd.CSR_WRITE):
                            m.next = "CSR_DATA"
                        with m.Case(Cmd.CSR_READ):
                            m.next = "CSR_AR"
                        with m.Case(Cmd.MEM_WRITE):
                            m.next = "MW_DATA"
                        with m.Case(Cmd.MEM_READ):
                            m.next = "MR_CHECK"
                        with m.Default():
                            m.d.sync += status.eq(STATUS_BAD_CMD)
                            m.next = "STATUS"

            # CSR write: four bytes, then AW and W together, then B.
            with m.State("CSR_DATA"):
                m.d.comb += rx_take.eq(1)
                with m.If(rx_valid):
                    m.d.sync += [shift.eq(Cat(shift[8:], rx_data)), count.eq(count + 1)]
                    with m.If(count == 3):
                        m.next = "CSR_AW"
            with m.State("CSR_AW"):
                m.d.comb += [axil.awvalid.eq(~a_done), axil.wvalid.eq(~w_done)]
                with m.If(axil.awready):
                    m.d.sync += a_done.eq(1)
                with m.If(axil.wready):
                    m.d.sync += w_done.eq(1)
                with m.If((a_done | axil.awready) & (w_done | axil.wready)):
                    m.next = "CSR_B"
            with m.State("CSR_B"):
                m.d.comb += axil.bready.eq(1)
                with m.If(axil.bvalid):
                    note(axil.bresp)
                    m.next = "STATUS"

            # CSR read: AR, R, four data bytes.
            with m.State("CSR_AR"):
                m.d.comb += axil.arvalid.eq(1)
                with m.If(axil.arready):
                    m.next = "CSR_R"
            with m.State("CSR_R"):
                m.d.comb += axil.rready.eq(1)
                with m.If(axil.rvalid):
                    m.d.sync += shift.eq(axil.rdata)
                    note(axil.rresp)
                    m.next = "CSR_SEND"
            with m.State("CSR_SEND"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(shift[:8])]
                with m.If(tx.ready):
                    m.d.sync += [shift.eq(shift >> 8), count.eq(count + 1)]
                    with m.If(count == 3):
                        m.next = "STATUS"

            # Memory write: gather one word's bytes, then AW, W (after AW, which every subordinate
            # accepts) and B.
            with m.State("MW_DATA"):
                with m.If(left == 0):
                    m.next = "STATUS"
                with m.Else():
                    m.d.comb += rx_take.eq(1)
                    with m.If(rx_valid):
                        m.d.sync += [word.word_select(lane, 8).eq(rx_data),
                                     strb.bit_select(lane, 1).eq(1),
                                     w_addr.eq(addr), addr.eq(addr + 1), left.eq(left - 1)]
                        with m.If((lane == W - 1) | (left == 1)):
                            m.next = "MW_AW"
            with m.State("MW_AW"):
                drive("awvalid", 1)
                with m.If(sel("awready")):
                    m.next = "MW_W"
            with m.State("MW_W"):
                drive("wvalid", 1)
                with m.If(sel("wready")):
                    m.next = "MW_B"
            with m.State("MW_B"):
                drive("bready", 1)
                with m.If(sel("bvalid")):
                    note(sel("bresp"))
                    m.d.sync += strb.eq(0)
                    m.next = "MW_DATA"

            # Memory read: one word, then its bytes in the range.
            with m.State("MR_CHECK"):
                m.d.sync += w_addr.eq(addr)
                with m.If(left == 0):
                    m.next = "STATUS"
                with m.Else():
                    m.next = "MR_AR"
            with m.State("MR_AR"):
                drive("arvalid", 1)
                with m.If(sel("arready")):
                    m.next = "MR_R"
            with m.State("MR_R"):
                drive("rready", 1)
                with m.If(sel("rvalid")):
                    m.d.sync += word.eq(sel("rdata"))
                    note(sel("rresp"))
                    m.next = "MR_SEND"
            with m.State("MR_SEND"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(word.word_select(lane, 8))]
                with m.If(tx.ready):
                    m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
                    with m.If(left == 1):
                        m.next = "STATUS"
                    with m.Elif(lane == W - 1):
                        m.next = "MR_CHECK"

            with m.State("STATUS"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(status)]
                with m.If(tx.ready):
                    m.next = "HUNT"
        return m
