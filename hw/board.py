"""The accelerator on an FPGA board: block RAM in place of HBM, and a UART host bridge.

::

    uart_rx ─► UARTBridge ─► m_axil ─────────────────► Accelerator.s_axil
    uart_tx ◄─     │                                        │
                   └─ m_axi<p> ─► AXI4RAM<p>.s_axi1         │ m_axi_hbm<p>
                                  AXI4RAM<p>.s_axi0 ◄───────┘

Each accelerator memory port has its own :class:`~hw.axi_ram.AXI4RAM`; the bridge reaches it
through the RAM's second subordinate port, with the same interleaving as the accelerator (global
word ``g`` on port ``g % mem_ports``), so the host sees one flat memory of ``mem_bytes`` bytes
at global addresses 0 to ``mem_bytes - 1``. :class:`BoardTop` has plain ports and runs in any
simulator; :class:`ULX3S` puts it on the ULX3S board's clock, FTDI UART and LEDs.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .accelerator import CSR_ADDR_WIDTH, Accelerator
from .axi_ram import AXI4RAM
from .config import AccelConfig
from .uart_bridge import UARTBridge

__all__ = ["BoardTop", "ULX3S"]


class BoardTop(wiring.Component):
    """Accelerator, block-RAM memory and UART bridge.

    Parameters
    ----------
    cfg : AccelConfig
    divisor : int
        Clock cycles per UART bit.
    mem_bytes : int
        Memory size, a multiple of ``cfg.stripe_bytes`` (one word on every port).

    Members
    -------
    uart_rx : In(1), uart_tx : Out(1)
    leds : Out(8)
        0: IRQ, 1: a bridge command in progress, 2: a received byte was lost, 7: heartbeat.
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    leds: Out(8)

    def __init__(self, cfg, *, divisor, mem_bytes):
        self._MustUse__silence = True
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        if isinstance(mem_bytes, bool) or not isinstance(mem_bytes, int) or mem_bytes <= 0 or \
                mem_bytes % cfg.stripe_bytes or mem_bytes > 1 << cfg.addr_width:
            raise ValueError(f"mem_bytes must be a positive multiple of {cfg.stripe_bytes} "
                             f"(one word on each of the {cfg.mem_ports} ports) within the "
                             f"{cfg.addr_width}-bit address space, not {mem_bytes!r}")
        if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"divisor must be an integer of at least 4 (clock cycles per "
                             f"bit), not {divisor!r}")
        self._MustUse__silence = False
        self._cfg, self._divisor, self._mem_bytes = cfg, divisor, mem_bytes
        super().__init__()

    cfg = property(lambda self: self._cfg)
    mem_bytes = property(lambda self: self._mem_bytes)

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.accel = accel = Accelerator(cfg)
        m.submodules.bridge = bridge = UARTBridge(cfg, divisor=self._divisor,
                                                  csr_addr_width=CSR_ADDR_WIDTH)
        depth = self._mem_bytes // cfg.stripe_bytes
        for p in range(cfg.mem_ports):
            ram = AXI4RAM(data_width=cfg.port_width, addr_width=cfg.port_addr_width,
                          id_width=cfg.axi_id_width, depth=depth, ports=2)
            m.submodules[f"ram{p}"] = ram
            wiring.connect(m, getattr(accel, f"m_axi_hbm{p}"), ram.s_axi0)
            wiring.connect(m, getattr(bridge, f"m_axi{p}"), ram.s_axi1)
        wiring.connect(m, bridge.m_axil, accel.s_axil)

        heartbeat = Signal(24)
        m.d.sync += heartbeat.eq(heartbeat + 1)
        m.d.comb += [
            bridge.rx.eq(self.uart_rx), self.uart_tx.eq(bridge.tx),
            self.leds[0].eq(accel.irq), self.leds[1].eq(bridge.active),
            self.leds[2].eq(bridge.rx_error), self.leds[7].eq(heartbeat[-1]),
        ]
        return m


class ULX3S(Elaboratable):
    """:class:`BoardTop` on the ULX3S: the 25 MHz clock, the FTDI UART, the eight LEDs."""

    def __init__(self, cfg, *, baud, mem_bytes, clk_hz=25_000_000):
        if isinstance(baud, bool) or not isinstance(baud, int) or \
                not 1 <= baud <= clk_hz // 4:
            raise ValueError(f"baud must be an integer from 1 to {clk_hz // 4}, not {baud!r}")
        self.divisor = round(clk_hz / baud)
        self.top = BoardTop(cfg, divisor=self.divisor, mem_bytes=mem_bytes)

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self.top
        uart = platform.request("uart", 0)
        m.d.comb += [top.uart_rx.eq(uart.rx.i), uart.tx.o.eq(top.uart_tx)]
        for i in range(8):
            m.d.comb += platform.request("led", i).o.eq(top.leds[i])
        return m
