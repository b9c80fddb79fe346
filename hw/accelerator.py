"""The accelerator: one AXI4-Lite subordinate, ``mem_ports`` AXI4 managers and an IRQ.

::

    s_axil ─► CSR ─► Controller ─► load / compute / store queues
                      │ fetch                │        │         │
                      ▼                      ▼        ▼         ▼
                 ReadArbiter ◄────────── LoadEngine ComputeEngine StoreEngine
                      │                   │      ╲      │  ▲  ╲       │ ▲   │
                  ReadEngine         Scratchpad ─► array  Accumulator ─┘   WriteEngine
                      │                                                     │
                      └──────────────► m_axi_hbm0 .. m_axi_hbm<N-1> ◄──────┘

The read engine serves instruction fetch and LOAD through the :class:`ReadArbiter`; STORE
has the write engine to itself; each port carries the read channels of the one and the write
channels of the other. Port names are the standard flat ones (``s_axil_awaddr``,
``m_axi_hbm0_arvalid``, ``irq``), so the generated Verilog drops into a vendor block design.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .accumulator import Accumulator
from .axi import AXI4LiteSignature
from .compute_engine import ComputeEngine
from .config import AccelConfig
from .controller import Controller
from .csr import CSR
from .dma import join_ports
from .load_engine import LoadEngine
from .read_arbiter import ReadArbiter
from .read_engine import ReadEngine, memory_ports
from .scratchpad import Scratchpad
from .store_engine import StoreEngine
from .write_engine import WriteEngine

__all__ = ["CSR_ADDR_WIDTH", "Accelerator"]

CSR_ADDR_WIDTH = 12

_ENGINE_MEMBERS = ("instr", "retire", "error", "abort", "busy", "stall")


class Accelerator(wiring.Component):
    """The whole accelerator for configuration ``cfg`` (see the module docstring).

    Members
    -------
    s_axil : In(AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH))
        Control and status registers (:mod:`hw.csr`).
    m_axi_hbm<p> : Out(AXI4Signature), one per memory port
    irq : Out(1)
    """

    def __init__(self, cfg):
        if not isinstance(cfg, AccelConfig):
            self._MustUse__silence = True
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self._cfg = cfg
        super().__init__({
            "s_axil": In(AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH)),
            **memory_ports(cfg),
            "irq": Out(1),
        })

    @property
    def cfg(self):
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.csr = csr = CSR(cfg, addr_width=CSR_ADDR_WIDTH)
        m.submodules.ctrl = ctrl = Controller(cfg)
        m.submodules.arbiter = arbiter = ReadArbiter(cfg, 2)
        m.submodules.reader = reader = ReadEngine(cfg)
        m.submodules.writer = writer = WriteEngine(cfg)
        m.submodules.spad = spad = Scratchpad(cfg)
        m.submodules.acc = acc = Accumulator(cfg)
        m.submodules.load = load = LoadEngine(cfg)
        m.submodules.compute = compute = ComputeEngine(cfg)
        m.submodules.store = store = StoreEngine(cfg)

        # Host side.
        wiring.connect(m, wiring.flipped(self.s_axil), csr.s_axil)
        m.d.comb += [
            self.irq.eq(csr.irq),
            ctrl.start.eq(csr.start), ctrl.soft_reset.eq(csr.soft_reset),
            ctrl.prog_addr.eq(csr.prog_addr), ctrl.prog_len.eq(csr.prog_len),
            ctrl.read_base.eq(csr.read_base), ctrl.read_limit.eq(csr.read_limit),
            ctrl.write_base.eq(csr.write_base), ctrl.write_limit.eq(csr.write_limit),
            csr.busy.eq(ctrl.busy), csr.done.eq(ctrl.done), csr.error.eq(ctrl.error),
            csr.error_code.eq(ctrl.error_code), csr.error_index.eq(ctrl.error_index),
            csr.error_addr.eq(ctrl.error_addr),
        ]
        # The live views for the host, a cycle late: no engine's state reaches the CSR
        # block's read multiplexer in the same cycle.
        m.d.sync += [csr.state.eq(ctrl.state), csr.tokens.eq(ctrl.tokens),
                     csr.dispatched.eq(ctrl.dispatched)]

        # Controller to engines.
        engines = (ctrl.load, load), (ctrl.compute, compute), (ctrl.store, store)
        for e, (port, engine) in enumerate(engines):
            for name in _ENGINE_MEMBERS:
                a, b = getattr(port, name), getattr(engine, name)
                member = port.signature.members[name]
                if member.is_signature:
                    wiring.connect(m, a, b)
                elif member.flow == Out:
                    m.d.comb += b.eq(a)
                else:
                    m.d.comb += a.eq(b)
            # The performance counters' increments go through registers (here and below),
            # so that no handshake or popcount runs into the CSR block's wide adders.
            m.d.sync += [csr.engine_busy[e].eq(engine.busy),
                         csr.engine_stalled[e].eq(engine.stall)]
        m.d.sync += csr.macs.eq(compute.macs)

        # Memory reads: fetch and LOAD share the read engine. LOADs go first unless the
        # instruction buffer is empty: instruction data queued ahead of a LOAD's holds the read
        # engine's stripes (the fetcher takes a word per cycle), and the buffer holds many
        # instructions ahead of decode otherwise.
        wiring.connect(m, ctrl.rd, arbiter.client[0])
        fetch_empty = Signal()
        m.d.sync += fetch_empty.eq(ctrl.state.fetched == 0)
        m.d.comb += arbiter.prefer.eq(Cat(fetch_empty, 1))
        for name in ("desc", "data", "status"):
            wiring.connect(m, getattr(arbiter.engine, name), getattr(reader, name))
        wiring.connect(m, load.rd_desc, arbiter.client[1].desc)
        wiring.connect(m, arbiter.client[1].data, load.rd_data)
        wiring.connect(m, arbiter.client[1].status, load.rd_status)

        # Memory writes: STORE.
        wiring.connect(m, store.wr_desc, writer.desc)
        wiring.connect(m, store.wr_data, writer.data)
        wiring.connect(m, writer.status, store.wr_status)
        m.d.comb += writer.cancel.eq(store.wr_cancel)

        # Buffers.
        wiring.connect(m, load.a_write, spad.a_write)
        wiring.connect(m, load.b_write, spad.b_write)
        wiring.connect(m, load.acc_write, acc.load)
        m.d.comb += acc.loading.eq(load.acc_loading)
        wiring.connect(m, compute.a_read, spad.a_read)
        wiring.connect(m, compute.b_read, spad.b_read)
        wiring.connect(m, compute.acc, acc.i)
        m.d.comb += compute.acc_written.eq(acc.written)
        wiring.connect(m, store.acc_read, acc.store)

        # Ports, and the bytes they move for the counters.
        for p in range(cfg.mem_ports):
            port = getattr(self, f"m_axi_hbm{p}")
            join_ports(m, port, getattr(reader, f"m_axi_hbm{p}"),
                       getattr(writer, f"m_axi_hbm{p}"))
            strobes = Signal(cfg.port_bytes, name=f"strobes{p}")
            # the bytes written: the strobes of each group of 8 counted, then the groups added,
            # a register after each
            groups = [Signal(4, name=f"strobes{p}_{g}") for g in range(-(-cfg.port_bytes // 8))]
            m.d.sync += [
                csr.bytes_read[p].eq(Mux(port.rvalid & port.rready, cfg.port_bytes, 0)),
                strobes.eq(Mux(port.wvalid & port.wready, port.wstrb, 0)),
                *(n.eq(_tree_sum(list(strobes[8 * g:8 * g + 8]))) for g, n in enumerate(groups)),
                csr.bytes_written[p].eq(_tree_sum(groups)),
            ]
        return m


def _tree_sum(terms):
    """The sum of ``terms``, as a balanced tree of adders."""
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]
