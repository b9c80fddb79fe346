"""Control and status registers: the host's view of the accelerator, on AXI4-Lite.

All registers are 32 bits wide at word-aligned byte offsets; address bits 0 and 1 are
ignored. An offset that is not in the table (including aliases above the table within the
port's address space) answers SLVERR, reads returning zero. Access types:

- RW: read/write; WSTRB selects the byte lanes written.
- RO: read-only. A write has no effect and answers SLVERR, so that a driver writing a status
  or counter register by mistake learns it at once.
- W1C: write 1 to clear a bit; 0 leaves it.
- W1S: write 1 to trigger an action; the bits are self-clearing and read as 0.

WSTRB applies to every writable register: a bit in a byte lane whose strobe is low is not
written, whatever the access type. Unimplemented bits read as 0 and ignore writes.

======  ==================  ======  ===========  ==============================================
offset  name                access  reset        meaning
======  ==================  ======  ===========  ==============================================
0x000   CTRL                W1S     0            bit 0 START: run the program at PROG_ADDR;
                                                 ignored (still OKAY) while busy.
                                                 bit 1 SOFT_RESET: pulse ``soft_reset``; wins
                                                 over START written with it.
0x004   STATUS              RO      0            bit 0 BUSY (live ``busy``), bit 1 DONE, bit 2
                                                 ERROR, bits 8-15 ERR_CODE. DONE, ERROR and
                                                 the error registers clear on START.
0x008   ERR_INDEX           RO      0            index of the first failing instruction
0x00C   STATE               RO      0            live state (:data:`hw.controller.StateLayout`):
                                                 bits 0-2 load/compute/store engine busy,
                                                 bit 3 fetch busy, bits 4-6 running,
                                                 finishing, aborting, bits 8-19 load, compute
                                                 and store queue levels (4 bits each), bits
                                                 20-25 words in the instruction buffer
0x010   ERR_ADDR_LO         RO      0            address of the first error, bits 0-31
0x014   ERR_ADDR_HI         RO      0            bits 32-63
0x018   IRQ_ENABLE          RW      0            bit 0 DONE, bit 1 ERROR
0x01C   IRQ_STATUS          W1C     0            bit 0 DONE, bit 1 ERROR; set by the event,
                                                 kept until cleared (a set wins over a clear
                                                 in the same cycle)
0x020   PROG_ADDR_LO        RW      0            byte address of instruction 0, bits 0-31
0x024   PROG_ADDR_HI        RW      0            bits 32 up (``addr_width`` bits in all)
0x028   PROG_LEN            RW      0            program length in instructions
0x030   READ_BASE_LO/HI     RW      0            lowest byte address the accelerator may read
0x038   READ_LIMIT_LO/HI    RW      all ones     highest byte address it may read (inclusive)
0x040   WRITE_BASE_LO/HI    RW      0            lowest byte address it may write
0x048   WRITE_LIMIT_LO/HI   RW      all ones     highest byte address it may write (inclusive)
0x050   TOKENS              RO      0            live tokens given and not taken, 8 bits per
                                                 channel (saturating): load-to-compute,
                                                 compute-to-load, compute-to-store,
                                                 store-to-compute from bit 0 up
0x054   DISPATCHED          RO      0            instructions dispatched in this run (live)
0x100   CYCLES_LO/HI        RO      0            cycles with ``busy`` high
0x108   LOAD_BUSY_LO/HI     RO      0            busy cycles of the load engine
0x110   LOAD_STALL_LO/HI    RO      0            stalled cycles of the load engine
0x118   COMPUTE_BUSY_LO/HI  RO      0            likewise for the compute engine
0x120   COMPUTE_STALL_...   RO      0
0x128   STORE_BUSY_LO/HI    RO      0            likewise for the store engine
0x130   STORE_STALL_LO/HI   RO      0
0x138   MACS_LO/HI          RO      0            multiply-accumulates issued
0x200   BYTES_READ0_LO/HI   RO      0            bytes read on memory port 0; port ``p`` at
                                                 ``0x200 + 16 * p``
0x208   BYTES_WRITTEN0_...  RO      0            bytes written on port 0; port ``p`` at
                                                 ``0x208 + 16 * p``
======  ==================  ======  ===========  ==============================================

In the accelerator, STATE, TOKENS and DISPATCHED come through a register: they show the
state of the cycle before. A ``_LO``/``_HI`` pair is one 64-bit quantity, LO at the lower
offset. Addresses (PROG_ADDR, the protection windows) implement ``cfg.addr_width`` bits.
The outputs follow the registers at once, so the host writes them while the accelerator is
idle; the accelerator decides when it samples them.

Performance counters count only in cycles with ``busy`` high, clear when START takes
effect (so they describe the last run), wrap at ``2**64`` and ignore SOFT_RESET. Reading a
counter's LO word takes a snapshot of its HI word, which a read of HI returns: reading LO
then HI gives a consistent 64-bit value even while the counter carries into HI. HI reads 0
before the first LO read of a run.

START clears DONE, ERROR and the error registers, not IRQ_STATUS, which only the host clears.
SOFT_RESET is a pulse to the rest of the accelerator; it leaves this block's registers as
they are, so that the host can still read the status and counters of an aborted run.
"""

import dataclasses

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4LiteSignature, Resp
from .config import AccelConfig
from .isa import Queue

__all__ = ["Register", "register_map", "counter_names", "ENGINES", "CTRL_START",
           "CTRL_SOFT_RESET", "STATUS_BUSY", "STATUS_DONE", "STATUS_ERROR", "IRQ_DONE",
           "IRQ_ERROR", "CSR"]

ENGINES = tuple(q.name for q in Queue)      # bit order of engine_busy and engine_stalled

CTRL_START, CTRL_SOFT_RESET = 1 << 0, 1 << 1
STATUS_BUSY, STATUS_DONE, STATUS_ERROR = 1 << 0, 1 << 1, 1 << 2
IRQ_DONE, IRQ_ERROR = 1 << 0, 1 << 1

_WORD = (1 << 32) - 1


@dataclasses.dataclass(frozen=True)
class Register:
    """One 32-bit register of the map.

    Parameters
    ----------
    name : str
    offset : int
        Byte offset.
    access : str
        ``"RW"``, ``"RO"``, ``"W1C"`` or ``"W1S"``.
    reset : int
        Value after reset.
    bits : int
        Mask of the implemented bits; the others read as 0.
    """

    name: str
    offset: int
    access: str
    reset: int
    bits: int


def _counter_offsets(cfg):
    yield "CYCLES", 0x100
    for e, engine in enumerate(ENGINES):
        yield f"{engine}_BUSY", 0x108 + 16 * e
        yield f"{engine}_STALL", 0x110 + 16 * e
    yield "MACS", 0x138
    for p in range(cfg.mem_ports):
        yield f"BYTES_READ{p}", 0x200 + 16 * p
        yield f"BYTES_WRITTEN{p}", 0x208 + 16 * p


def counter_names(cfg):
    """Names of the 64-bit performance counters, in register order."""
    return [name for name, _ in _counter_offsets(cfg)]


def register_map(cfg):
    """The registers of a :class:`CSR` for configuration ``cfg``, by name, in offset order."""
    aw = cfg.addr_width
    regs = {}

    def add(name, offset, access, reset=0, bits=_WORD):
        regs[name] = Register(name, offset, access, reset, bits)

    def add64(name, offset, access, width, reset=0):
        add(f"{name}_LO", offset, access, reset & _WORD, (1 << min(width, 32)) - 1)
        add(f"{name}_HI", offset + 4, access, reset >> 32, (1 << max(width - 32, 0)) - 1)

    add("CTRL", 0x000, "W1S", bits=CTRL_START | CTRL_SOFT_RESET)
    add("STATUS", 0x004, "RO", bits=0xFF00 | STATUS_BUSY | STATUS_DONE | STATUS_ERROR)
    add("ERR_INDEX", 0x008, "RO")
    add("STATE", 0x00C, "RO")
    add64("ERR_ADDR", 0x010, "RO", 64)
    add("IRQ_ENABLE", 0x018, "RW", bits=IRQ_DONE | IRQ_ERROR)
    add("IRQ_STATUS", 0x01C, "W1C", bits=IRQ_DONE | IRQ_ERROR)
    add64("PROG_ADDR", 0x020, "RW", aw)
    add("PROG_LEN", 0x028, "RW")
    add64("READ_BASE", 0x030, "RW", aw)
    add64("READ_LIMIT", 0x038, "RW", aw, reset=(1 << aw) - 1)
    add64("WRITE_BASE", 0x040, "RW", aw)
    add64("WRITE_LIMIT", 0x048, "RW", aw, reset=(1 << aw) - 1)
    add("TOKENS", 0x050, "RO")
    add("DISPATCHED", 0x054, "RO")
    for name, offset in _counter_offsets(cfg):
        add64(name, offset, "RO", 64)
    return dict(sorted(regs.items(), key=lambda item: item[1].offset))


def _word(value, k):
    """Word ``k`` (bits ``32k`` to ``32k + 31``) of ``value``, or nothing if it is narrower."""
    return value[32 * k:32 * k + 32] if len(value) > 32 * k else None


class CSR(wiring.Component):
    """The control and status register block (see the module docstring for the map).

    Parameters
    ----------
    cfg : AccelConfig
    addr_width : int
        Byte address width of ``s_axil``, 12 to 64.

    Members
    -------
    s_axil : In(AXI4LiteSignature(addr_width=addr_width))
        Host port. AW, W and AR each have a one-entry buffer, so AW and W may come in either
        order or together, and the next request may come before the previous response is
        taken; writes and reads proceed independently. Responses are registered and
        ``bvalid``/``rvalid`` never depend on ``bready``/``rready``.
    start, soft_reset : Out(1)
        One-cycle pulses, in the cycle after the write to CTRL. START takes effect only while
        ``busy`` is low. Writes take effect at most every other cycle, so a sequencer that
        raises ``busy`` in the cycle after the ``start`` pulse never sees a second one.
    prog_addr : Out(cfg.addr_width), prog_len : Out(32)
        Program byte address and length in instructions.
    read_base, read_limit, write_base, write_limit : Out(cfg.addr_width)
        Protection windows: the inclusive byte ranges the accelerator may read and write.
    irq : Out(1)
        Level interrupt: any bit of IRQ_STATUS & IRQ_ENABLE.
    busy : In(1)
        A program runs; gates every performance counter.
    done : In(1)
        Pulse at program end: sets STATUS.DONE and IRQ_STATUS.DONE.
    error : In(1)
        Error pulse: sets IRQ_STATUS.ERROR; the first one after START also sets STATUS.ERROR
        and latches the three inputs below.
    error_code : In(8), error_index : In(32), error_addr : In(64)
        The error's code, failing instruction index and address, valid with ``error``.
    state, tokens, dispatched : In(32)
        Live words for the STATE, TOKENS and DISPATCHED registers.
    engine_busy, engine_stalled : In(3)
        Per engine, bit order :data:`ENGINES` (load, compute, store).
    macs : In(range(cfg.macs + 1))
        Multiply-accumulates issued this cycle.
    bytes_read, bytes_written : In(ArrayLayout(range(cfg.port_bytes + 1), cfg.mem_ports))
        Bytes moved this cycle on each memory port.

    Attributes
    ----------
    counters : dict of str to Signal(64)
        The counter registers by name (:func:`counter_names`), for testbenches that need a
        counter near a carry.
    """

    def __init__(self, cfg, *, addr_width=12):
        # a component that failed to construct is no unused design: no warning for it
        self._MustUse__silence = True
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        if isinstance(addr_width, bool) or not isinstance(addr_width, int) or \
                not 12 <= addr_width <= 64:
            raise ValueError(f"addr_width must be an integer from 12 to 64, not {addr_width!r}")
        self._MustUse__silence = False
        self._cfg = cfg
        self._regs = register_map(cfg)
        aw = cfg.addr_width
        ports = data.ArrayLayout(range(cfg.port_bytes + 1), cfg.mem_ports)
        super().__init__({
            "s_axil": In(AXI4LiteSignature(addr_width=addr_width)),
            # control, toward the sequencer and the memory engines
            "start": Out(1),
            "soft_reset": Out(1),
            "prog_addr": Out(aw),
            "prog_len": Out(32),
            "read_base": Out(aw),
            "read_limit": Out(aw, init=(1 << aw) - 1),
            "write_base": Out(aw),
            "write_limit": Out(aw, init=(1 << aw) - 1),
            "irq": Out(1),
            # status, from the sequencer
            "busy": In(1),
            "done": In(1),
            "error": In(1),
            "error_code": In(8),
            "error_index": In(32),
            "error_addr": In(64),
            "state": In(32),
            "tokens": In(32),
            "dispatched": In(32),
            # performance-counter increments
            "engine_busy": In(len(ENGINES)),
            "engine_stalled": In(len(ENGINES)),
            "macs": In(range(cfg.macs + 1)),
            "bytes_read": In(ports),
            "bytes_written": In(ports),
        })
        self._counters = {name: Signal(64, name=f"cnt_{name.lower()}")
                          for name in counter_names(cfg)}

    @property
    def counters(self):
        return dict(self._counters)

    def elaborate(self, platform):
        cfg, regs = self._cfg, self._regs
        m = Module()
        bus = self.s_axil

        # Write channels: AW and W each fill a one-entry buffer, so they may arrive in any
        # order; the write happens once both are full and the B register is free.
        aw_full, aw_addr = Signal(), Signal.like(bus.awaddr)
        w_full, w_data, w_strb = Signal(), Signal.like(bus.wdata), Signal.like(bus.wstrb)
        do_write = Signal()
        m.d.comb += [
            bus.awready.eq(~aw_full),
            bus.wready.eq(~w_full),
            do_write.eq(aw_full & w_full & (~bus.bvalid | bus.bready)),
        ]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(bus.awaddr)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        wmask = Cat(w_strb[i].replicate(8) for i in range(4))
        wbits = w_data & wmask

        def written(name):
            return do_write & (aw_addr[2:] == regs[name].offset >> 2)

        def write_rw(name, value, k):
            part = _word(value, k)
            if part is not None:
                n = len(part)
                with m.If(written(name)):
                    m.d.sync += part.eq((part & ~wmask[:n]) | wbits[:n])

        wr_ok = Signal()
        m.d.comb += wr_ok.eq(Cat(written(r.name) for r in regs.values() if r.access != "RO")
                             .any())
        with m.If(do_write):
            m.d.sync += [
                aw_full.eq(0),
                w_full.eq(0),
                bus.bvalid.eq(1),
                bus.bresp.eq(Mux(wr_ok, Resp.OKAY, Resp.SLVERR)),
            ]

        # Control.
        go = written("CTRL") & wbits[0]
        reset_req = written("CTRL") & wbits[1]
        starting = Signal()
        m.d.comb += starting.eq(go & ~reset_req & ~self.busy)
        m.d.sync += [self.start.eq(starting), self.soft_reset.eq(reset_req)]

        # RW registers drive their outputs directly.
        irq_enable = Signal(2)
        write_rw("IRQ_ENABLE", irq_enable, 0)
        write_rw("PROG_LEN", self.prog_len, 0)
        rw64 = {"PROG_ADDR": self.prog_addr, "READ_BASE": self.read_base,
                "READ_LIMIT": self.read_limit, "WRITE_BASE": self.write_base,
                "WRITE_LIMIT": self.write_limit}
        for name, value in rw64.items():
            write_rw(f"{name}_LO", value, 0)
            write_rw(f"{name}_HI", value, 1)

        # Status: sticky until the next START; the event wins over START in the same cycle.
        done_flag, err_flag = Signal(), Signal()
        err_code, err_index, err_addr = Signal(8), Signal(32), Signal(64)
        with m.If(starting):
            m.d.sync += [done_flag.eq(0), err_flag.eq(0), err_code.eq(0), err_index.eq(0),
                         err_addr.eq(0)]
        with m.If(self.done):
            m.d.sync += done_flag.eq(1)
        with m.If(self.error & (~err_flag | starting)):
            m.d.sync += [err_flag.eq(1), err_code.eq(self.error_code),
                         err_index.eq(self.error_index), err_addr.eq(self.error_addr)]

        irq_status = Signal(2)
        with m.If(written("IRQ_STATUS")):
            m.d.sync += irq_status.eq(irq_status & ~wbits[:2])
        with m.If(self.done):
            m.d.sync += irq_status[0].eq(1)
        with m.If(self.error):
            m.d.sync += irq_status[1].eq(1)
        m.d.comb += self.irq.eq((irq_status & irq_enable).any())

        # Performance counters.
        incs = [Const(1)]
        for e in range(len(ENGINES)):
            incs += [self.engine_busy[e], self.engine_stalled[e]]
        incs.append(self.macs)
        for p in range(cfg.mem_ports):
            incs += [self.bytes_read[p], self.bytes_written[p]]
        counters = list(self._counters.values())
        for cnt, inc in zip(counters, incs, strict=True):
            with m.If(starting):
                m.d.sync += cnt.eq(0)
            with m.Elif(self.busy):
                m.d.sync += cnt.eq(cnt + inc)

        # Read channels: AR fills a one-entry buffer; the registered response is loaded
        # from it when R is free or being taken.
        ar_full, ar_addr = Signal(), Signal.like(bus.araddr)
        do_read = Signal()
        m.d.comb += [
            bus.arready.eq(~ar_full),
            do_read.eq(ar_full & (~bus.rvalid | bus.rready)),
        ]
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [ar_full.eq(1), ar_addr.eq(bus.araddr)]
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)

        values = {
            "CTRL": 0,
            "STATUS": Cat(self.busy, done_flag, err_flag, C(0, 5), err_code),
            "ERR_INDEX": err_index,
            "STATE": self.state,
            "TOKENS": self.tokens,
            "DISPATCHED": self.dispatched,
            "ERR_ADDR_LO": err_addr[:32],
            "ERR_ADDR_HI": err_addr[32:],
            "IRQ_ENABLE": irq_enable,
            "IRQ_STATUS": irq_status,
            "PROG_LEN": self.prog_len,
        }
        for name, value in rw64.items():
            values[f"{name}_LO"] = _word(value, 0)
            values[f"{name}_HI"] = _word(value, 1)
        for name, cnt in self._counters.items():
            # the snapshot is taken after the clear on START so a read racing START stays
            # consistent with the LO word it returned
            snapshot = Signal(32, name=f"snap_{name.lower()}")
            with m.If(starting):
                m.d.sync += snapshot.eq(0)
            with m.If(do_read & (ar_addr[2:] == regs[f"{name}_LO"].offset >> 2)):
                m.d.sync += snapshot.eq(cnt[32:])
            values[f"{name}_LO"] = cnt[:32]
            values[f"{name}_HI"] = snapshot

        rd_data, rd_ok = Signal(32), Signal()
        with m.Switch(ar_addr[2:]):
            for reg in regs.values():
                with m.Case(reg.offset >> 2):
                    value = values[reg.name]
                    m.d.comb += [rd_data.eq(0 if value is None else value), rd_ok.eq(1)]
        with m.If(do_read):
            m.d.sync += [
                ar_full.eq(0),
                bus.rvalid.eq(1),
                bus.rdata.eq(rd_data),
                bus.rresp.eq(Mux(rd_ok, Resp.OKAY, Resp.SLVERR)),
            ]
        return m
