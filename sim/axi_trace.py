"""The accelerator's memory-port handshakes, cycle by cycle, and the phases of a run they show.

Where a run's cycles go is read off the memory ports: when the program is fetched, when each
operand region is requested and arrives, when the results are written and acknowledged.
:class:`AxiTrace` records every AR, R, AW, W and B handshake of ``m_axi_hbm<p>`` (addresses
made global with the interleave), counting cycles from the write to ``CTRL`` on ``s_axil``
that starts the run; :func:`phases` groups them by channel and memory region. On a build with
public internal signals (``sim.toolchain.build(..., public=True)``) it also records when each
engine takes an instruction (``load``, ``matmul``, ``store``) and each result row the compute
engine hands to the accumulator (``results``).
"""

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from .transfers import unlocate

__all__ = ["AxiTrace", "phases"]

CHANNELS = ("ar", "r", "aw", "w", "b")
#: engine events: (name, instance, stream) of the handshakes recorded with ``engines``
ENGINE_EVENTS = (("load", "load", "instr"), ("matmul", "compute", "instr"),
                 ("store", "store", "instr"), ("results", "compute", "acc"))


class AxiTrace:
    """Records ``(cycle, port, channel, global address or None, beats or None)`` for every
    handshake on the memory ports, from :meth:`start` to :meth:`stop`; ``cycle`` 0 is the
    cycle in which the write to the CSR at ``ctrl_offset`` completes (events before it have
    negative cycles). With ``engines`` (a build with public internal signals) also
    ``(cycle, 0, name, None, None)`` for each handshake of :data:`ENGINE_EVENTS`."""

    def __init__(self, dut, cfg, ctrl_offset, engines=False):
        self._dut, self._cfg, self._ctrl = dut, cfg, ctrl_offset
        self._engines = engines
        self.events = []
        self._task = None

    def start(self):
        self.events, self._raw, self._zero = [], [], None
        self._task = cocotb.start_soon(self._record())

    def stop(self):
        self._task.cancel()
        zero = self._zero
        self.events = [] if zero is None else [(c - zero, p, ch, a, n)
                                               for c, p, ch, a, n in self._raw]

    async def _record(self):
        dut, cfg = self._dut, self._cfg
        sig = lambda p, name: getattr(dut, f"m_axi_hbm{p}_{name}")  # noqa: E731
        # per port and channel: valid, ready, and for AR/AW the address and length
        ports = [{ch: (sig(p, f"{ch}valid"), sig(p, f"{ch}ready"),
                       sig(p, f"{ch}addr") if ch in ("ar", "aw") else None,
                       sig(p, f"{ch}len") if ch in ("ar", "aw") else None)
                  for ch in CHANNELS} for p in range(cfg.mem_ports)]
        engines = [(name, getattr(getattr(dut, inst), f"{stream}__valid"),
                    getattr(getattr(dut, inst), f"{stream}__ready"))
                   for name, inst, stream in ENGINE_EVENTS] if self._engines else []
        cycle, aw_ctrl = 0, False
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            cycle += 1
            if self._zero is None:
                if dut.s_axil_awvalid.value and dut.s_axil_awready.value:
                    aw_ctrl = int(dut.s_axil_awaddr.value) == self._ctrl
                if aw_ctrl and dut.s_axil_wvalid.value and dut.s_axil_wready.value:
                    self._zero = cycle
            for name, valid, ready in engines:
                if valid.value and ready.value:
                    self._raw.append((cycle, 0, name, None, None))
            for p, chans in enumerate(ports):
                for ch, (valid, ready, addr, length) in chans.items():
                    if valid.value and ready.value:
                        self._raw.append((
                            cycle, p, ch,
                            None if addr is None else unlocate(
                                p, int(addr.value), cfg.interleave_bytes, cfg.mem_ports),
                            None if length is None else int(length.value) + 1))


def phases(events, regions, gap=8):
    """Runs of handshakes: ``(channel, region, first cycle, last cycle, handshakes)``, where a
    run continues while the same channel (and, for AR and AW, the same region of ``regions``,
    a dict of name -> (address, bytes)) has a handshake within ``gap`` cycles of the last.
    R, W and B carry no address, so their runs are over all regions (``None``)."""
    def region(addr):
        for name, (base, size) in regions.items():
            if base <= addr < base + max(size, 1):
                return name
        return "other"

    out, open_runs = [], {}
    for cycle, _, ch, addr, _ in sorted(events, key=lambda e: e[0]):
        key = (ch, region(addr) if addr is not None else None)
        run = open_runs.get(key)
        if run is not None and cycle - run[3] <= gap:
            run[3] = cycle
            run[4] += 1
        else:
            run = open_runs[key] = [key[0], key[1], cycle, cycle, 1]
            out.append(run)
    return [tuple(r) for r in sorted(out, key=lambda r: r[2])]
