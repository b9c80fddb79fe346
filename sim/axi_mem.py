"""An interleaved AXI4 memory for Amaranth's simulator: one subordinate per port, random
latency, reordering across IDs, random backpressure, protocol checks and error injection.

For the tier-1 tests of the engines; the HBM timing model for cocotb lives in ``sim/hbm.py``.
"""

import numpy as np

from hw.axi import Burst, Resp

from .transfers import unlocate

__all__ = ["InterleavedMemory", "AxiMemoryPort", "ProtocolError"]


class ProtocolError(AssertionError):
    pass


class InterleavedMemory:
    """The global byte space of ``cfg``; port ``p`` sees granule ``j`` (of ``interleave_bytes``)
    with ``j % mem_ports == p`` at port address ``(j // mem_ports) * interleave_bytes``."""

    def __init__(self, cfg, size):
        self.cfg = cfg
        self.size = size
        self.data = np.zeros(size, dtype=np.uint8)       # global view
        self.written = np.zeros(size, dtype=bool)

    def port_to_global(self, port, port_addr):
        return unlocate(port, port_addr, self.cfg.interleave_bytes, self.cfg.mem_ports)

    def read_word(self, port, port_addr):
        g = self.port_to_global(port, port_addr)
        if g + self.cfg.port_bytes > self.size:
            raise ProtocolError(f"port {port} read at {port_addr:#x} (global {g:#x}) is outside "
                                f"the {self.size}-byte memory")
        return int.from_bytes(self.data[g:g + self.cfg.port_bytes].tobytes(), "little")

    def write_word(self, port, port_addr, value, strobe):
        g = self.port_to_global(port, port_addr)
        if g + self.cfg.port_bytes > self.size:
            raise ProtocolError(f"port {port} write at {port_addr:#x} is outside the memory")
        raw = value.to_bytes(self.cfg.port_bytes, "little")
        for i in range(self.cfg.port_bytes):
            if strobe >> i & 1:
                self.data[g + i] = raw[i]
                self.written[g + i] = True


class AxiMemoryPort:
    """The subordinate of one port, as an Amaranth testbench coroutine (``run``).

    ``stall`` is the chance, per cycle and channel, of ready or valid being held low;
    ``latency`` the range of cycles between a request and its response; ``errors`` maps
    ``("r" | "w", port_addr)`` of a burst's first beat to the response it gets. A write
    takes effect when its B response is taken, so writes of different IDs land in any order
    (as in a memory that reorders them) and a read only sees a write once it is answered.
    """

    def __init__(self, mem, port, axi, rng, stall=0.0, latency=(1, 12), errors=None):
        self.mem, self.port, self.axi, self.rng = mem, port, axi, rng
        self.stall, self.latency = stall, latency
        self.errors = errors or {}
        self.reads = {}         # id -> list of [ready_cycle, addr, beats_left, resp]
        self.writes = []        # AW order: [id, addr, beats_left, resp, beats]
        self.bresps = {}        # id -> list of [ready_cycle, resp, beats]
        self.r_cur = None       # (id, burst) being presented
        self.b_cur = None
        self.cycle = 0
        self.bursts = 0

    def _check_addr(self, ch, addr, length, size, burst):
        W = self.mem.cfg.port_bytes
        if size != W.bit_length() - 1:
            raise ProtocolError(f"{ch}size {size} is not the bus width ({W} bytes)")
        if burst != Burst.INCR:
            raise ProtocolError(f"{ch}burst {burst} is not INCR")
        if addr % W:
            raise ProtocolError(f"{ch}addr {addr:#x} is not aligned to {W} bytes")
        if addr // 4096 != (addr + (length + 1) * W - 1) // 4096:
            raise ProtocolError(f"{ch} burst at {addr:#x} of {length + 1} beats crosses 4 KiB")

    def _busy(self):
        return self.rng.random() < self.stall

    async def run(self, ctx):
        a = self.axi
        W = self.mem.cfg.port_bytes
        held = {}
        while True:
            ar_ready = not self._busy()
            aw_ready = not self._busy()
            w_ready = not self._busy()
            ctx.set(a.arready, ar_ready)
            ctx.set(a.awready, aw_ready)
            ctx.set(a.wready, w_ready)
            # R: keep the presented beat until taken, else maybe pick a ready burst (any ID).
            if self.r_cur is None and not self._busy():
                ids = [i for i, q in self.reads.items() if q and q[0][0] <= self.cycle]
                if ids:
                    self.r_cur = ids[int(self.rng.integers(len(ids)))]
            if self.r_cur is not None:
                burst = self.reads[self.r_cur][0]
                resp = burst[3]
                data = self.mem.read_word(self.port, burst[1]) if resp == Resp.OKAY else 0
                ctx.set(a.rvalid, 1)
                ctx.set(a.rid, self.r_cur)
                ctx.set(a.rdata, data)
                ctx.set(a.rresp, resp)
                ctx.set(a.rlast, burst[2] == 1)
            else:
                ctx.set(a.rvalid, 0)
            if self.b_cur is None and not self._busy():
                ids = [i for i, q in self.bresps.items() if q and q[0][0] <= self.cycle]
                if ids:
                    self.b_cur = ids[int(self.rng.integers(len(ids)))]
            if self.b_cur is not None:
                ctx.set(a.bvalid, 1)
                ctx.set(a.bid, self.b_cur)
                ctx.set(a.bresp, self.bresps[self.b_cur][0][1])
            else:
                ctx.set(a.bvalid, 0)

            (arvalid, araddr, arlen, arsize, arburst, arid, rready,
             awvalid, awaddr, awlen, awsize, awburst, awid,
             wvalid, wdata, wstrb, wlast, bready) = (await ctx.tick().sample(
                a.arvalid, a.araddr, a.arlen, a.arsize, a.arburst, a.arid, a.rready,
                a.awvalid, a.awaddr, a.awlen, a.awsize, a.awburst, a.awid,
                a.wvalid, a.wdata, a.wstrb, a.wlast, a.bready))[2:]
            self.cycle += 1

            for ch, valid, payload, ready in (
                    ("ar", arvalid, (araddr, arlen, arid), ar_ready),
                    ("aw", awvalid, (awaddr, awlen, awid), aw_ready),
                    ("w", wvalid, (wdata, wstrb, wlast), w_ready)):
                if ch in held and (not valid or held[ch] != payload):
                    raise ProtocolError(f"{ch}valid dropped or payload changed before ready")
                held.pop(ch, None)
                if valid and not ready:
                    held[ch] = payload

            if arvalid and ar_ready:
                self._check_addr("ar", araddr, arlen, arsize, arburst)
                self.bursts += 1
                lat = int(self.rng.integers(*self.latency, endpoint=True))
                resp = self.errors.get(("r", araddr), Resp.OKAY)
                self.reads.setdefault(arid, []).append([self.cycle + lat, araddr, arlen + 1,
                                                        resp])
            if self.r_cur is not None and rready:
                burst = self.reads[self.r_cur][0]
                burst[1] += W
                burst[2] -= 1
                if burst[2] == 0:
                    self.reads[self.r_cur].pop(0)
                self.r_cur = None
            if awvalid and aw_ready:
                self._check_addr("aw", awaddr, awlen, awsize, awburst)
                self.bursts += 1
                resp = self.errors.get(("w", awaddr), Resp.OKAY)
                self.writes.append([awid, awaddr, awlen + 1, resp, []])
            if wvalid and w_ready:
                if not self.writes:
                    raise ProtocolError("W beat before its AW")
                burst = self.writes[0]
                burst[4].append((burst[1], wdata, wstrb))
                burst[1] += W
                burst[2] -= 1
                if bool(wlast) != (burst[2] == 0):
                    raise ProtocolError(f"wlast {wlast} with {burst[2]} beats left")
                if burst[2] == 0:
                    self.writes.pop(0)
                    lat = int(self.rng.integers(*self.latency, endpoint=True))
                    self.bresps.setdefault(burst[0], []).append([self.cycle + lat, burst[3],
                                                                 burst[4]])
            if self.b_cur is not None and bready:
                _, resp, beats = self.bresps[self.b_cur].pop(0)
                if resp == Resp.OKAY:       # the write takes effect with its response
                    for addr, data, strb in beats:
                        self.mem.write_word(self.port, addr, data, strb)
                self.b_cur = None
