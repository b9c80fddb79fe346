"""cocotb adapter: AXI4 subordinate ports backed by a sparse memory and the HBM timing model.

One :class:`HbmAxiPort` serves one manager port of the DUT (signals ``<prefix><n>_awaddr``,
``..._awvalid`` and so on; the ID signals are optional). Each port runs one coroutine. While
anything moves on the port it wakes once per clock, at the rising edge, where it reads the
values the signals had just before the edge (the handshake) and then drives its outputs for
the new cycle. With nothing to do it sleeps on the rising edge of ARVALID, AWVALID or WVALID,
or on a timer set to the next event of the timing model, so a quiet port costs no wake-ups.

Timing: an accepted burst goes to the port's :class:`~sim.hbm.PseudoChannel` at once (a write
after its last W beat); an R beat goes out no earlier than the model says its data is through
the controller, a B response no earlier than the last beat is written. Read bursts of
different IDs leave in the order the model completes them; beats of different bursts are
never interleaved. Write data reaches the memory when its B response is due.

Checks (each is recorded in :attr:`HbmAxi.errors` and, with ``fail_fast``, raised in the
port's coroutine, which fails the running test): a burst crossing 4 KiB, AxSIZE other than the
bus width, AxBURST other than INCR, WSTRB bits outside the transfer, WLAST on the wrong beat,
VALID dropped before READY, payload changed while VALID and not READY, an access to memory
nobody allocated (writes always, reads with ``check_reads``). A violating burst is answered
with SLVERR (DECERR for unallocated memory) and its write data is dropped.
"""

import random
from collections import deque

import cocotb
from cocotb.triggers import First, RisingEdge, Timer
from cocotb.utils import get_sim_time

from sim.hbm import HBM2_2000, Burst, HbmStack

__all__ = ["OKAY", "SLVERR", "DECERR", "ProtocolError", "SparseMemory", "HbmAxiPort", "HbmAxi"]

OKAY, EXOKAY, SLVERR, DECERR = 0, 1, 2, 3
INCR = 1
BOUNDARY = 4096


class ProtocolError(AssertionError):
    """An AXI rule broken by the manager."""


class SparseMemory:
    """Byte-addressed memory in 4 KiB pages, with an allocator that records what is valid.

    Parameters
    ----------
    base : int
        First address handed out by :meth:`alloc`.
    """

    PAGE = 4096

    def __init__(self, base=0x10000):
        self._pages = {}
        self._regions = []  # sorted, disjoint (start, end)
        self._next = base
        self.device_writes = []     # (start, end) of every byte range a port wrote, in order

    def alloc(self, size, align=4096, addr=None):
        """Reserve ``size`` bytes and return their address.

        Parameters
        ----------
        size : int
            Bytes to reserve.
        align : int
            Alignment of the address (a power of two).
        addr : int, optional
            Place the region here instead of after the previous one.
        """
        if addr is None:
            addr = -(-self._next // align) * align
        if size <= 0 or any(s < addr + size and addr < e for s, e in self._regions):
            raise ValueError(f"cannot allocate {size} bytes at {addr:#x}")
        self._regions.append((addr, addr + size))
        self._regions.sort()
        self._next = max(self._next, addr + size)
        return addr

    def allocated(self, addr, n):
        """Whether all of ``[addr, addr + n)`` lies in allocated regions."""
        end = addr + n
        for s, e in self._regions:
            if s <= addr < e:
                if end <= e:
                    return True
                addr = e
            elif s > addr:
                break
        return addr >= end

    def write(self, addr, data):
        """Store ``data`` at ``addr`` (host side; the range must be allocated)."""
        if not self.allocated(addr, len(data)):
            raise ValueError(f"write of {len(data)} bytes at {addr:#x} outside allocated memory")
        self._store(addr, bytes(data))

    def read(self, addr, n):
        """Return ``n`` bytes from ``addr``; never-written bytes read as zero."""
        out = bytearray()
        while n > 0:
            page, off = divmod(addr, self.PAGE)
            k = min(n, self.PAGE - off)
            p = self._pages.get(page)
            out += p[off:off + k] if p is not None else bytes(k)
            addr, n = addr + k, n - k
        return bytes(out)

    def _store(self, addr, data):
        i = 0
        while i < len(data):
            page, off = divmod(addr + i, self.PAGE)
            k = min(len(data) - i, self.PAGE - off)
            p = self._pages.get(page)
            if p is None:
                p = self._pages[page] = bytearray(self.PAGE)
            p[off:off + k] = data[i:i + k]
            i += k


class _Read:
    __slots__ = ("id", "addr", "beats", "resp", "burst", "sent", "accepted")

    def __init__(self, id_, addr, beats, resp, accepted):
        self.id, self.addr, self.beats, self.resp = id_, addr, beats, resp
        self.burst, self.sent, self.accepted = None, 0, accepted


class _Write:
    __slots__ = ("id", "addr", "beats", "resp", "data", "strb", "burst")

    def __init__(self, id_, addr, beats, resp):
        self.id, self.addr, self.beats, self.resp = id_, addr, beats, resp
        self.data, self.strb, self.burst = [], [], None


def _pauser(spec, rng):
    """A function answering 'stall this cycle?' from a probability, an iterable or None."""
    if spec is None or spec == 0:
        return None
    if isinstance(spec, (int, float)):
        p = float(spec)
        return lambda: rng.random() < p
    it = iter(spec)
    return lambda: bool(next(it, False))


class HbmAxiPort:
    """AXI4 subordinate on one manager port of the DUT, timed by one pseudo-channel.

    Parameters
    ----------
    owner : HbmAxi
        The stack adapter (memory, model, error list).
    index : int
        Port number; the port uses channel ``index`` of the model.
    prefix : str
        Signal name prefix including the trailing underscore, e.g. ``"m_axi_hbm0_"``.
    """

    def __init__(self, owner, index, prefix):
        self.owner, self.index, self.prefix = owner, index, prefix
        dut = owner.dut
        self.pc = owner.stack[index]
        self.rng = random.Random(owner.seed * 1000 + index)

        def sig(name, optional=False):
            full = prefix + name
            if optional and not hasattr(dut, full):
                return None
            return getattr(dut, full)

        for ch in ("aw", "ar"):
            for f in ("addr", "len", "size", "burst", "valid", "ready"):
                setattr(self, ch + f, sig(ch + f))
            setattr(self, ch + "id", sig(ch + "id", True))
        for f in ("wdata", "wstrb", "wlast", "wvalid", "wready", "bresp", "bvalid", "bready",
                  "rdata", "rresp", "rlast", "rvalid", "rready"):
            setattr(self, f, sig(f))
        self.bid, self.rid = sig("bid", True), sig("rid", True)
        self.bus_bytes = len(self.wdata) // 8
        self.full_strb = (1 << self.bus_bytes) - 1
        self.size_log2 = self.bus_bytes.bit_length() - 1
        acc = owner.stack.timing.access_bytes
        self.accesses_per_beat = max(1, self.bus_bytes // acc)
        # Driven state, as in effect during the current cycle.
        self._arready = self._awready = self._wready = False
        self._rvalid = self._bvalid = False
        self._rvalid_hw = self._bvalid_hw = False
        for s in (self.arready, self.awready, self.wready, self.rvalid, self.bvalid):
            s.value = 0
        self._ar_hold = self._aw_hold = self._w_hold = None
        self._reads = {}  # id -> deque of _Read in acceptance order
        self._n_reads = 0
        self._r_cur = None
        self._aw_wait = deque()  # writes waiting for W beats
        self._writes = {}  # model burst -> _Write
        self._b = deque()  # (id, resp) due
        self._b_cur = None
        self._injected = []
        self._counts = {False: 0, True: 0}
        self._pause = {ch: None for ch in ("ar", "aw", "w", "r", "b")}
        self._seen_valid = False
        # Figures.
        self.read_beats = self.write_beats = 0
        self.reordered = 0
        self.wakeups = 0
        self.active_cycles = 0
        self._accept_seq = 0
        self.task = cocotb.start_soon(self._run())

    # -- configuration -------------------------------------------------------------------

    def set_backpressure(self, **channels):
        """Stall channels at random: ``ar``, ``aw``, ``w`` (READY low), ``r``, ``b`` (VALID
        held back before a beat). Each value is a probability per cycle, an iterable of
        booleans (true = stall) or ``None``."""
        for ch, spec in channels.items():
            if ch not in self._pause:
                raise ValueError(f"unknown channel {ch!r}")
            self._pause[ch] = _pauser(spec, self.rng)
            # A sleeping port keeps its READY; drop it so that the stalls start now.
            if spec and ch in ("ar", "aw", "w") and getattr(self, f"_{ch}ready"):
                getattr(self, f"{ch}ready").value = 0
                setattr(self, f"_{ch}ready", False)

    def inject_error(self, is_write, resp=SLVERR, addr=None, index=None):
        """Answer one future burst with ``resp``: the first one (of that direction) whose
        start address is ``addr`` and/or which is the ``index``-th accepted on this port."""
        self._injected.append((is_write, resp, addr, index))

    # -- helpers -------------------------------------------------------------------------

    def _stall(self, ch):
        p = self._pause[ch]
        return p is not None and p()

    def _error(self, msg):
        self.owner._error(f"{self.prefix}: {msg}")

    @staticmethod
    def _val(s):
        v = s.value
        try:
            return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)
        except ValueError:
            return None

    def _valid(self, s):
        v = s.value
        return v.is_resolvable and int(v) == 1

    def _ax(self, ch):
        ids = getattr(self, ch + "id")
        return (0 if ids is None else self._val(ids), self._val(getattr(self, ch + "addr")),
                self._val(getattr(self, ch + "len")), self._val(getattr(self, ch + "size")),
                self._val(getattr(self, ch + "burst")))

    def _check_ax(self, ch, ax):
        """Validate an AR/AW payload; return the response it earns."""
        id_, addr, ln, size, burst = ax
        if None in ax:
            self._error(f"{ch.upper()} payload has X/Z bits: {ax}")
            return SLVERR
        resp = OKAY
        if size != self.size_log2:
            self._error(f"{ch.upper()}SIZE {size} at {addr:#x} is narrower than the "
                        f"{self.bus_bytes}-byte bus")
            resp = SLVERR
        if burst != INCR:
            self._error(f"{ch.upper()}BURST {burst} at {addr:#x} is not INCR")
            resp = SLVERR
        start = addr - addr % self.bus_bytes
        if addr // BOUNDARY != (start + (ln + 1) * self.bus_bytes - 1) // BOUNDARY:
            self._error(f"{ch.upper()} burst at {addr:#x} of {ln + 1} beats crosses 4 KiB")
            resp = SLVERR
        end = start + (ln + 1) * self.bus_bytes
        if (ch == "aw" or self.owner.check_reads) and not all(
                self.owner.memory.allocated(self.mem_addr(a), min(end, a + self.bus_bytes) - a)
                for a in [addr] + list(range(start + self.bus_bytes, end, self.bus_bytes))):
            self._error(f"{'write' if ch == 'aw' else 'read'} of [{addr:#x}, {end:#x}) "
                        f"touches unallocated memory")
            resp = DECERR
        if self.owner.stack.interleave and self.owner.stack.port_of(addr) != self.index:
            self._error(f"address {addr:#x} belongs to port {self.owner.stack.port_of(addr)}")
            resp = SLVERR
        is_write = ch == "aw"
        n = self._counts[is_write]
        self._counts[is_write] += 1
        for k, (w, r, a, i) in enumerate(self._injected):
            if w == is_write and (a is None or a == addr) and (i is None or i == n):
                del self._injected[k]
                return r
        return resp

    def _hold_check(self, ch, hold, valid, payload):
        """VALID must stay high and the payload stable until READY."""
        if hold is None:
            return
        if not valid:
            self._error(f"{ch.upper()}VALID dropped before {ch.upper()}READY")
        elif payload != hold:
            self._error(f"{ch.upper()} payload changed while VALID and not READY: "
                        f"{hold} -> {payload}")

    def _model_burst(self, is_write, addr, beats, id_, tag):
        stack = self.owner.stack
        local = stack.local_address(addr - addr % self.bus_bytes)
        return Burst(is_write, local, beats * self.accesses_per_beat, id=id_, tag=tag)

    def _room(self):
        return self.pc.queue_depth - self.pc.occupancy - len(self._aw_wait)

    # -- the per-cycle step ----------------------------------------------------------------

    def _step(self, cycle):
        """Handshakes at the edge that starts ``cycle``, then the outputs for ``cycle``."""
        owner = self.owner
        stack = owner.stack
        now = stack.to_mem(cycle)
        self.active_cycles += 1
        seen = False
        # AR
        arvalid = self._valid(self.arvalid)
        seen |= arvalid
        if arvalid or self._ar_hold is not None:
            ax = self._ax("ar") if arvalid else None
            self._hold_check("ar", self._ar_hold, arvalid, ax)
            self._ar_hold = None
            if arvalid and self._arready:
                resp = self._check_ax("ar", ax)
                rd = _Read(ax[0], ax[1], ax[2] + 1, resp, self._accept_seq)
                self._accept_seq += 1
                rd.burst = self.pc.submit(now, self._model_burst(False, ax[1], rd.beats, ax[0],
                                                                 rd))
                self._reads.setdefault(ax[0], deque()).append(rd)
                self._n_reads += 1
            elif arvalid:
                self._ar_hold = ax
        # AW
        awvalid = self._valid(self.awvalid)
        seen |= awvalid
        if awvalid or self._aw_hold is not None:
            ax = self._ax("aw") if awvalid else None
            self._hold_check("aw", self._aw_hold, awvalid, ax)
            self._aw_hold = None
            if awvalid and self._awready:
                resp = self._check_ax("aw", ax)
                self._aw_wait.append(_Write(ax[0], ax[1], ax[2] + 1, resp))
            elif awvalid:
                self._aw_hold = ax
        # W
        wvalid = self._valid(self.wvalid)
        seen |= wvalid
        if wvalid or self._w_hold is not None:
            w = (self._val(self.wdata), self._val(self.wstrb),
                 self._valid(self.wlast)) if wvalid else None
            self._hold_check("w", self._w_hold, wvalid, w)
            self._w_hold = None
            if wvalid and self._wready:
                self._take_w(now, w)
            elif wvalid:
                self._w_hold = w
        # R and B handshakes
        if self._rvalid and self._valid(self.rready):
            self._r_sent()
        if self._bvalid and self._valid(self.bready):
            self._b_cur = None
            self._bvalid = False
        # Model: commands up to this cycle, writes that are through.
        for burst in self.pc.pop_done(now + 1):
            wr = burst.tag
            if burst.is_write:
                if wr.resp == OKAY:
                    self._commit(wr)
                self._b.append((wr.id, wr.resp))
        # Outputs for this cycle.
        room = self._room()
        ready = room > 0 and self._n_reads < owner.max_reads and not self._stall("ar")
        if ready != self._arready:
            self.arready.value = self._arready = ready
        ready = (room > 0 and len(self._aw_wait) < owner.max_write_bursts
                 and not self._stall("aw"))
        if ready != self._awready:
            self.awready.value = self._awready = ready
        ready = bool(self._aw_wait) and not self._stall("w")
        if ready != self._wready:
            self.wready.value = self._wready = ready
        if not self._rvalid:
            self._drive_r(now)
            if not self._rvalid and self._rvalid_hw:
                self.rvalid.value = self._rvalid_hw = False
        if not self._bvalid:
            if self._b and not self._stall("b"):
                id_, resp = self._b_cur = self._b.popleft()
                if self.bid is not None:
                    self.bid.value = id_
                self.bresp.value = resp
                self.bvalid.value = self._bvalid = self._bvalid_hw = True
            elif self._bvalid_hw:
                self.bvalid.value = self._bvalid_hw = False
        self._seen_valid = seen

    def _take_w(self, now, w):
        data, strb, last = w
        wr = self._aw_wait[0]
        k = len(wr.data)
        allowed = self.full_strb
        if k == 0:
            allowed &= self.full_strb << (wr.addr % self.bus_bytes)
        if strb is None or data is None:
            self._error(f"W beat {k} of the burst at {wr.addr:#x} has X/Z bits")
            wr.resp, strb, data = SLVERR, 0, 0
        elif strb & ~allowed:
            self._error(f"WSTRB {strb:#x} of beat {k} of the burst at {wr.addr:#x} has bits "
                        f"outside the transfer ({allowed:#x})")
            wr.resp = SLVERR
        wr.data.append(data)
        wr.strb.append(strb)
        self.write_beats += 1
        end = len(wr.data) == wr.beats
        if last != end:
            self._error(f"WLAST {'set' if last else 'missing'} on beat {k} of a {wr.beats}-beat "
                        f"burst at {wr.addr:#x}")
            wr.resp = SLVERR
        if end or last:
            self._aw_wait.popleft()
            wr.burst = self.pc.submit(now, self._model_burst(True, wr.addr, wr.beats, wr.id, wr))

    def mem_addr(self, addr):
        """Backing-memory address of port address ``addr``: the same, or with ``striped``,
        granule ``j`` of this port is global granule ``j * ports + index``."""
        if not self.owner.striped:
            return addr
        G = self.owner.granule or self.bus_bytes
        j, off = divmod(addr, G)
        return (j * len(self.owner.ports) + self.index) * G + off

    def _commit(self, wr):
        mem = self.owner.memory
        base = wr.addr - wr.addr % self.bus_bytes
        for k, (data, strb) in enumerate(zip(wr.data, wr.strb, strict=True)):
            addr = self.mem_addr(base + k * self.bus_bytes)
            raw = data.to_bytes(self.bus_bytes, "little")
            if strb == self.full_strb:
                mem._store(addr, raw)
                mem.device_writes.append((addr, addr + self.bus_bytes))
            else:
                for j in range(self.bus_bytes):
                    if strb >> j & 1:
                        mem._store(addr + j, raw[j:j + 1])
                        mem.device_writes.append((addr + j, addr + j + 1))

    def _beat_ready(self, rd, k, now):
        """Whether beat ``k`` of ``rd`` has all its accesses through by ``now``."""
        last = (k + 1) * self.accesses_per_beat - 1
        times = rd.burst.beat_times
        return len(times) > last and times[last] <= now

    def _drive_r(self, now):
        rd = self._r_cur
        if rd is None:
            best = None
            for q in self._reads.values():
                head = q[0]
                if self._beat_ready(head, 0, now):
                    t = head.burst.beat_times[0]
                    if best is None or (t, head.accepted) < (best.burst.beat_times[0],
                                                             best.accepted):
                        best = head
            rd = best
        if rd is None or not self._beat_ready(rd, rd.sent, now) or self._stall("r"):
            return
        if self._r_cur is None:
            self._r_cur = rd
            oldest = min(q[0].accepted for q in self._reads.values())
            if rd.accepted != oldest:
                self.reordered += 1
        addr = rd.addr - rd.addr % self.bus_bytes + rd.sent * self.bus_bytes
        self.rdata.value = int.from_bytes(self.owner.memory.read(self.mem_addr(addr),
                                                                 self.bus_bytes), "little")
        if self.rid is not None:
            self.rid.value = rd.id
        self.rresp.value = rd.resp
        self.rlast.value = rd.sent + 1 == rd.beats
        if not self._rvalid_hw:
            self.rvalid.value = self._rvalid_hw = True
        self._rvalid = True

    def _r_sent(self):
        rd = self._r_cur
        rd.sent += 1
        self.read_beats += 1
        self._rvalid = False
        if rd.sent == rd.beats:
            q = self._reads[rd.id]
            q.popleft()
            if not q:
                del self._reads[rd.id]
            self._n_reads -= 1
            self._r_cur = None

    # -- scheduling of wake-ups ------------------------------------------------------------

    def _busy(self):
        """Whether the next cycle needs a step regardless of input edges."""
        return (self._seen_valid or self._rvalid or self._bvalid or bool(self._b)
                or self._r_cur is not None)

    def _next_cycle(self):
        """The next AXI cycle at which the model has something for this port, or None."""
        times = []
        t = self.pc.next_event()
        if t is not None:
            times.append(t)
        for q in self._reads.values():
            times += q[0].burst.beat_times[:1]
        return self.owner.stack.to_axi(min(times)) if times else None

    async def _run(self):
        owner = self.owner
        edge = RisingEdge(owner.clk)
        await owner.started()
        t0, period = owner.t0, owner.period
        valid_edges = [RisingEdge(self.arvalid), RisingEdge(self.awvalid)]
        wvalid_edge = RisingEdge(self.wvalid)
        while True:
            await edge
            self.wakeups += 1
            cycle = round((get_sim_time("step") - t0) / period)
            self._step(cycle)
            if self._busy():
                continue
            nxt = self._next_cycle()
            if nxt is not None and nxt <= cycle + 2:
                continue
            triggers = list(valid_edges)
            if self._aw_wait:
                triggers.append(wvalid_edge)
            if nxt is not None:
                wait = round(t0 + (nxt - 0.5) * period - get_sim_time("step"))
                triggers.append(Timer(wait, unit="step"))
            await First(*triggers)
            self.wakeups += 1


class HbmAxi:
    """An HBM stack behind the AXI4 manager ports of a DUT.

    Parameters
    ----------
    dut : cocotb handle
        Top level.
    clk : cocotb handle
        Clock of the AXI ports (the testbench starts it).
    ports : int, optional
        Number of ports; by default every ``<prefix><n>_awaddr`` found from n = 0.
    prefix : str
        Port name prefix before the number.
    timing : HbmTiming
        Preset of the model.
    memory : SparseMemory, optional
        Shared backing memory; a new one by default.
    ratio, interleave : optional
        See :class:`~sim.hbm.HbmStack`.
    max_reads : int
        Read bursts a port accepts before the last beat of the oldest has left.
    max_write_bursts : int
        Write bursts a port accepts ahead of their W data.
    check_reads : bool
        Treat reads of unallocated memory as errors.
    striped : bool
        Each port has a dense address space of its own, and consecutive granules of the
        backing memory's (global) address space alternate between ports, as the accelerator
        interleaves them: port ``p`` address ``a`` is global byte
        ``((a // G) * ports + p) * G + a % G``.
    granule : int, optional
        The interleave granule ``G`` in bytes (``AccelConfig.interleave_bytes``); one bus word
        by default.
    fail_fast : bool
        Raise :class:`ProtocolError` in the port coroutine on the first error (fails the
        test); otherwise only record it in :attr:`errors`.
    seed : int
        Seed of the backpressure generators.
    **channel_args
        Passed to every :class:`~sim.hbm.PseudoChannel` (``queue_depth``, ``ctrl_latency``,
        ``refresh``, ``bg_interleave``...).
    """

    def __init__(self, dut, clk, ports=None, prefix="m_axi_hbm", timing=HBM2_2000, memory=None,
                 ratio=None, interleave=None, max_reads=64, max_write_bursts=16,
                 check_reads=True, striped=False, granule=None, fail_fast=True, seed=0,
                 **channel_args):
        self.dut, self.clk = dut, clk
        if ports is None:
            ports = 0
            while hasattr(dut, f"{prefix}{ports}_awaddr"):
                ports += 1
        if ports < 1:
            raise ValueError(f"no AXI port named {prefix}0_* on the DUT")
        self.memory = memory if memory is not None else SparseMemory()
        self.stack = HbmStack(ports, timing, ratio=ratio, interleave=interleave, **channel_args)
        self.max_reads, self.max_write_bursts = max_reads, max_write_bursts
        self.check_reads, self.fail_fast, self.seed = check_reads, fail_fast, seed
        self.striped, self.granule = striped, granule
        self.errors = []
        self.t0 = self.period = None
        self._started = cocotb.start_soon(self._measure_clock())
        self.ports = [HbmAxiPort(self, i, f"{prefix}{i}_") for i in range(ports)]

    async def _measure_clock(self):
        edge = RisingEdge(self.clk)
        await edge
        first = get_sim_time("step")
        await edge
        self.t0 = get_sim_time("step")
        self.period = self.t0 - first

    async def started(self):
        """Wait until the clock period is known."""
        await self._started

    def _error(self, msg):
        self.errors.append(msg)
        self.dut._log.error("HBM AXI: %s", msg)
        if self.fail_fast:
            raise ProtocolError(msg)

    # -- host side -----------------------------------------------------------------------

    def alloc(self, size, align=4096, addr=None):
        """Reserve memory (see :meth:`SparseMemory.alloc`)."""
        return self.memory.alloc(size, align, addr)

    def write(self, addr, data):
        """Store bytes from the host side."""
        self.memory.write(addr, data)

    def read(self, addr, n):
        """Fetch bytes from the host side."""
        return self.memory.read(addr, n)

    # -- test controls -------------------------------------------------------------------

    def set_backpressure(self, port=None, **channels):
        """Random stalls on ``port`` (all ports by default); see
        :meth:`HbmAxiPort.set_backpressure`."""
        for p in self.ports if port is None else [self.ports[port]]:
            p.set_backpressure(**channels)

    def inject_error(self, port, is_write, resp=SLVERR, addr=None, index=None):
        """Make one burst of ``port`` answer with an error (see
        :meth:`HbmAxiPort.inject_error`)."""
        self.ports[port].inject_error(is_write, resp, addr, index)

    def check(self):
        """Raise :class:`ProtocolError` listing the recorded errors, if any."""
        if self.errors:
            raise ProtocolError(f"{len(self.errors)} AXI errors:\n" + "\n".join(self.errors))

    def stats(self):
        """Model statistics (:meth:`HbmStack.stats`) plus per-port adapter figures."""
        st = self.stack.stats()
        for s, p in zip(st["channels"], self.ports, strict=True):
            s.update(read_beats=p.read_beats, write_beats=p.write_beats,
                     reordered=p.reordered, wakeups=p.wakeups, active_cycles=p.active_cycles)
        return st

    def report(self):
        """The model's report plus one line per port about the adapter."""
        lines = [self.stack.report()]
        for p in self.ports:
            lines.append(f"port {p.index}: {p.read_beats} R beats, {p.write_beats} W beats, "
                         f"{p.reordered} bursts out of order, {p.wakeups} wake-ups")
        return "\n".join(lines)
