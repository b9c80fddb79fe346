"""Event-driven timing model of an HBM stack, one pseudo-channel per AXI port.

The model is plain Python: it knows nothing about cocotb or signals. A client hands it bursts
(:meth:`PseudoChannel.submit`) and moves its clock forward (:meth:`PseudoChannel.advance`);
the model schedules DRAM commands (ACT, PRE, RD, WR, PREA, REF) under the JEDEC timing rules
and records, for every 32-byte access of a burst, the memory-clock cycle at which its data is
through the controller. It never steps through idle cycles: each iteration of the scheduler
computes the earliest legal time of every candidate command and jumps there.

Units
-----
All times are memory-clock cycles (``tCK`` of the preset, 1 ns for HBM2-2000). A client that
runs on the AXI clock converts with :attr:`HbmStack.ratio` (memory cycles per AXI cycle).

Mapping of an AXI beat to the DRAM
----------------------------------
One access is 32 bytes: BL4 on the 64-bit HBM2 pseudo-channel, BL8 on the 32-bit HBM3
pseudo-channel. Either way it holds the data bus for ``tBL`` = 2 memory cycles, so a
pseudo-channel peaks at 16 bytes per memory cycle. A 256-bit AXI beat is exactly one access;
by default the AXI clock runs at half the memory clock (``ratio`` = 2), which makes the peak of
the AXI port equal to the peak of the pseudo-channel.

Address map (channel-local byte address, least significant bit first)
---------------------------------------------------------------------
With bank-group interleaving (the default, like the bank-group interleave option of AMD's HBM
controller, PG276)::

    [4:0]   byte within the 32-byte access
    [5]     bank group bit 0
    [10:6]  column (32 accesses of 32 bytes = one 1 KiB page)
    [11]    bank group bit 1
    [13:12] bank within the group
    [..:14] row

Consecutive accesses alternate between two bank groups, so a sequential stream is limited by
``tCCD_S`` and not by ``tCCD_L``. With ``bg_interleave=False`` the map is the plain
column | bank group | bank | row: column [9:5], bank group [11:10], bank [13:12], row [..:14].

Controller
----------
A request queue of ``queue_depth`` bursts; FR-FCFS on two command buses (HBM has separate
row and column command buses): a column command goes to the oldest ready access whose row
is open, a row command to the oldest access of each bank. Accesses of one (direction, AXI ID)
stream are issued strictly in order; only different IDs (and reads against writes) reorder.
A row that an issuable access still hits is kept open, up to ``hit_cap`` such hits while an
older access to another row of the same bank waits. All-bank refresh every ``tREFI``: the
controller stops issuing at the due time, closes all banks (PREA) and issues REF, which blocks
the channel for ``tRFC``. ``ctrl_latency`` cycles pass between a request's arrival and the
first moment the scheduler may act on it.

Presets and their sources
-------------------------
``HBM2_2000``: JEDEC JESD235 HBM2 at 2000 MT/s (1000 MHz), values as in DRAMsim3's
``configs/HBM2_8Gb_x128.ini`` (CL 14, CWL 4, tRCD 14, tRP 14, tRAS 34, tWR 16, tRTP 4,
tWTR_S/L 6/8, tREFI 3900, tRFC 260) with ``tCCD_S``/``tCCD_L`` 2/4 and ``tRRD_S``/``tRRD_L``
4/4 for BL4 in pseudo-channel mode and ``tFAW`` 16 (DRAMsim3 uses 30; JEDEC allows a range).
``HBM3_6400``: Ramulator 2's ``HBM3_6.4Gbps`` preset (``src/dram/impl/HBM3.cpp``), read in
command-clock cycles of 625 ps (data rate = 4 x CK, JESD238): CL 23, CWL 7, tRCD 23, tRP 23,
tRAS 55, tRC 77, tWR 26, tRTP 7, tCCD_S/L 2/4, tRRD_S/L 2/4, tWTR_S/L 10/13, tFAW 48,
tREFI 6240 (3.9 us); tRFC 560 (350 ns, the 16 Gb entry of Ramulator's tRFC table).
``tRTW`` of both presets is ``CL + tBL + 2 - CWL`` (read-to-write with a one-cycle write
preamble), the rule Ramulator 2 uses.
"""

import heapq
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from fractions import Fraction

__all__ = ["HbmTiming", "HBM2_2000", "HBM3_6400", "ideal", "Burst", "PseudoChannel", "HbmStack",
           "ROW_HIT", "ROW_MISS", "ROW_CONFLICT"]

ROW_HIT, ROW_MISS, ROW_CONFLICT = 0, 1, 2


@dataclass(frozen=True)
class HbmTiming:
    """Timing and organisation of one pseudo-channel, in memory-clock cycles.

    Parameters
    ----------
    name : str
        Preset name, for reports.
    tck_ns : float
        Memory (command) clock period in nanoseconds.
    tBL : int
        Cycles one 32-byte access holds the data bus.
    CL, CWL, tRCD, tRP, tRAS, tRC, tCCD_S, tCCD_L, tRRD_S, tRRD_L, tFAW, tWR, tRTP, tWTR_S, \
tWTR_L, tRTW, tREFI, tRFC : int
        JEDEC timing parameters (``_S``: different bank group, ``_L``: same bank group).
    bank_groups, banks_per_group : int
        Organisation of the pseudo-channel.
    page_bytes : int
        Row (page) size of one bank.
    access_bytes : int
        Bytes moved by one column command.
    ideal_latency : int or None
        When set, the channel ignores all DRAM rules: every burst's first beat arrives
        ``ideal_latency`` cycles after submission and the data bus runs at peak.
    """

    name: str
    tck_ns: float
    tBL: int
    CL: int
    CWL: int
    tRCD: int
    tRP: int
    tRAS: int
    tRC: int
    tCCD_S: int
    tCCD_L: int
    tRRD_S: int
    tRRD_L: int
    tFAW: int
    tWR: int
    tRTP: int
    tWTR_S: int
    tWTR_L: int
    tRTW: int
    tREFI: int
    tRFC: int
    bank_groups: int = 4
    banks_per_group: int = 4
    page_bytes: int = 1024
    access_bytes: int = 32
    ideal_latency: int | None = None

    @property
    def banks(self):
        """Number of banks of the pseudo-channel."""
        return self.bank_groups * self.banks_per_group

    @property
    def peak_bytes_per_cycle(self):
        """Peak data rate in bytes per memory cycle."""
        return self.access_bytes / self.tBL

    @property
    def peak_gbps(self):
        """Peak data rate in GB/s (10**9 bytes per second)."""
        return self.peak_bytes_per_cycle / self.tck_ns

    def replace(self, **changes):
        """Return a copy with some fields changed (e.g. ``tREFI=0`` disables refresh)."""
        return replace(self, **changes)

    def ideal(self, latency):
        """This preset's clock and bus in the fixed-latency mode (see ``ideal_latency``)."""
        return replace(self, name=f"{self.name}-ideal{latency}", ideal_latency=int(latency))


def _trtw(CL, tBL, CWL):
    return CL + tBL + 2 - CWL


HBM2_2000 = HbmTiming(
    name="HBM2-2000", tck_ns=1.0, tBL=2, CL=14, CWL=4, tRCD=14, tRP=14, tRAS=34, tRC=48,
    tCCD_S=2, tCCD_L=4, tRRD_S=4, tRRD_L=4, tFAW=16, tWR=16, tRTP=4, tWTR_S=6, tWTR_L=8,
    tRTW=_trtw(14, 2, 4), tREFI=3900, tRFC=260)

HBM3_6400 = HbmTiming(
    name="HBM3-6400", tck_ns=0.625, tBL=2, CL=23, CWL=7, tRCD=23, tRP=23, tRAS=55, tRC=77,
    tCCD_S=2, tCCD_L=4, tRRD_S=2, tRRD_L=4, tFAW=48, tWR=26, tRTP=7, tWTR_S=10, tWTR_L=13,
    tRTW=_trtw(23, 2, 7), tREFI=6240, tRFC=560)


def ideal(latency, base=HBM2_2000):
    """A fixed-latency, peak-bandwidth timing on the clock and bus of ``base``."""
    return base.ideal(latency)


@dataclass(eq=False)
class Burst:
    """One AXI burst as the memory controller sees it.

    Parameters
    ----------
    is_write : bool
        Direction.
    address : int
        Channel-local byte address of the first access (rounded down to 32 bytes).
    beats : int
        Number of 32-byte accesses.
    id : int
        AXI ID; bursts of one direction and ID complete in submission order.
    tag : object
        Anything the client wants to find again.

    Attributes
    ----------
    submit_time : int
        Cycle of :meth:`PseudoChannel.submit`.
    beat_times : list of int
        For each access issued so far, the cycle its data is through the controller (read
        data ready to return, or write data stored).
    done_time : int or None
        Cycle of the last entry of ``beat_times`` once every access is issued.
    """

    is_write: bool
    address: int
    beats: int
    id: int = 0
    tag: object = None
    submit_time: int = -1
    beat_times: list = field(default_factory=list)
    done_time: int | None = None
    # Scheduler bookkeeping.
    _seq: int = 0
    _visible: int = 0
    _next: int = 0
    _banks: tuple = ()
    _rows: tuple = ()
    _kinds: list = field(default_factory=list)

    @property
    def first_time(self):
        """Cycle the first access's data is through, or ``None`` before it is issued."""
        return self.beat_times[0] if self.beat_times else None


class PseudoChannel:
    """Timing model of one HBM pseudo-channel and its memory controller.

    Parameters
    ----------
    timing : HbmTiming
        Preset, e.g. :data:`HBM2_2000`.
    queue_depth : int
        Bursts the controller holds until all their column commands are issued.
    ctrl_latency : int
        Cycles from a request's arrival until the scheduler may act on it.
    bg_interleave : bool
        Put bank-group bit 0 right above the 32-byte access (see the module docstring).
    refresh : bool
        Model all-bank refresh (``tREFI``/``tRFC``).
    hit_cap : int
        Row hits allowed to keep a row open while an older access to another row of the
        same bank waits.
    trace : bool
        Record every DRAM command as ``(cycle, command, bank, row)`` in :attr:`trace`.
    """

    def __init__(self, timing=HBM2_2000, queue_depth=64, ctrl_latency=24, bg_interleave=True,
                 refresh=True, hit_cap=32, trace=False):
        self.timing = t = timing
        self.queue_depth = int(queue_depth)
        self.ctrl_latency = int(ctrl_latency)
        self.bg_interleave = bg_interleave
        self.refresh = bool(refresh) and t.tREFI > 0 and t.ideal_latency is None
        self.hit_cap = hit_cap
        self.trace = [] if trace else None
        nb = t.banks
        self._col_bits = (t.page_bytes // t.access_bytes).bit_length() - 1
        self._acc_bits = t.access_bytes.bit_length() - 1
        self._bg_bits = t.bank_groups.bit_length() - 1
        self._ba_bits = t.banks_per_group.bit_length() - 1
        # Bank state.
        self._open = [None] * nb
        self._col_ready = [0] * nb
        self._pre_ok = [0] * nb
        self._act_ok = [0] * nb
        self._pending = [[] for _ in range(nb)]  # (seq, burst, index) in arrival order
        self._streak = [0] * nb
        # Channel state.
        self._act_any = 0
        self._act_bg = [0] * t.bank_groups
        self._faw = deque(maxlen=4)
        self._row_bus = 0
        self._rd_any = self._wr_any = 0
        self._rd_bg = [0] * t.bank_groups
        self._wr_bg = [0] * t.bank_groups
        self._data_free = 0
        self._blocked = 0
        self._ref_due = t.tREFI if self.refresh else None
        # Requests.
        self._queues = {}  # (is_write, id) -> deque of bursts with accesses left to issue
        self._count = 0
        self._seq = 0
        self._horizon = 0
        self._cached = None
        self._done = []  # heap of (done_time, seq, burst)
        # Statistics.
        self.bytes_read = 0
        self.bytes_written = 0
        self.bursts = 0
        self.row_kinds = [0, 0, 0]
        self.refreshes = 0
        self.latencies = []
        self.first_submit = None
        self.last_done = 0
        self.max_occupancy = 0

    # -- address map ---------------------------------------------------------------------

    def decode(self, address):
        """Split a channel-local byte address into ``(bank_group, bank, row, column)``."""
        a = address >> self._acc_bits
        if self.bg_interleave and self._bg_bits:
            bg = a & 1
            a >>= 1
            col = a & ((1 << self._col_bits) - 1)
            a >>= self._col_bits
            bg |= (a & ((1 << (self._bg_bits - 1)) - 1)) << 1
            a >>= self._bg_bits - 1
        else:
            col = a & ((1 << self._col_bits) - 1)
            a >>= self._col_bits
            bg = a & ((1 << self._bg_bits) - 1)
            a >>= self._bg_bits
        ba = a & ((1 << self._ba_bits) - 1)
        row = a >> self._ba_bits
        return bg, ba, row, col

    def _bank_row(self, address):
        bg, ba, row, _ = self.decode(address)
        return bg * self.timing.banks_per_group + ba, row

    # -- client interface ----------------------------------------------------------------

    @property
    def occupancy(self):
        """Bursts in the request queue (not all column commands issued yet)."""
        return self._count

    def can_accept(self, n=1):
        """Whether ``n`` more bursts fit in the request queue."""
        return self._count + n <= self.queue_depth

    def submit(self, now, burst):
        """Hand a burst to the controller at cycle ``now``.

        Commands before ``now`` are scheduled first, so ``now`` must not go backwards.

        Raises
        ------
        OverflowError
            When the request queue is full (see :meth:`can_accept`).
        """
        self.advance(now)
        if self._count >= self.queue_depth:
            raise OverflowError(f"request queue full ({self.queue_depth} bursts)")
        if burst.beats < 1:
            raise ValueError("a burst has at least one beat")
        t = self.timing
        self._seq += 1
        burst._seq = self._seq
        burst.submit_time = now
        burst.beat_times = []
        burst.done_time = None
        burst._next = 0
        self.bursts += 1
        if self.first_submit is None:
            self.first_submit = now
        self._count += 1
        self.max_occupancy = max(self.max_occupancy, self._count)
        if t.ideal_latency is not None:
            self._submit_ideal(now, burst)
            return burst
        burst._visible = max(now + self.ctrl_latency, self._horizon)
        base = burst.address & ~(t.access_bytes - 1)
        banks, rows = [], []
        for i in range(burst.beats):
            b, r = self._bank_row(base + i * t.access_bytes)
            banks.append(b)
            rows.append(r)
            self._pending[b].append((burst._seq, burst, i))
        burst._banks, burst._rows = tuple(banks), tuple(rows)
        burst._kinds = [ROW_HIT] * burst.beats
        self._queues.setdefault((burst.is_write, burst.id), deque()).append(burst)
        self._cached = None
        return burst

    def advance(self, until):
        """Issue every command whose time is before ``until``."""
        if until <= self._horizon:
            return
        while True:
            cmd = self._cached or self._next_command()
            self._cached = cmd
            if cmd is None or cmd[0] >= until:
                break
            self._cached = None
            self._issue(*cmd)
        self._horizon = until

    def next_event(self):
        """Earliest cycle at which the model will issue a command, or at which a burst not
        yet taken by :meth:`pop_done` completes; ``None`` when there is neither.

        Refreshes of an idle channel do not count; they are applied when time passes them.
        """
        times = []
        if self._done:
            times.append(self._done[0][0])
        if self._count and self.timing.ideal_latency is None:
            cmd = self._cached or self._next_command()
            self._cached = cmd
            if cmd is not None:
                times.append(cmd[0])
        return min(times) if times else None

    def pop_done(self, until):
        """Remove and return, in completion order, the bursts done before ``until``."""
        self.advance(until)
        out = []
        while self._done and self._done[0][0] < until:
            out.append(heapq.heappop(self._done)[2])
        return out

    # -- scheduler -----------------------------------------------------------------------

    def _next_command(self):
        """The next command as ``(time, kind, bank, burst, index)``, FR-FCFS, or ``None``."""
        t = self.timing
        bpg = t.banks_per_group
        open_ = self._open
        blocked = self._blocked
        best = None  # (time, seq, kind, bank, burst, index)
        hit_banks = set()
        for q in self._queues.values():
            h = q[0]
            i = h._next
            b = h._banks[i]
            if open_[b] != h._rows[i]:
                continue
            hit_banks.add(b)
            g = b // bpg
            if h.is_write:
                tt = max(self._wr_any, self._wr_bg[g], self._data_free - t.CWL)
            else:
                tt = max(self._rd_any, self._rd_bg[g], self._data_free - t.CL)
            tt = max(tt, self._col_ready[b], h._visible, blocked)
            if best is None or (tt, h._seq) < best[:2]:
                best = (tt, h._seq, "WR" if h.is_write else "RD", b, h, i)
        faw = self._faw[0] + t.tFAW if len(self._faw) == 4 else 0
        for b, pend in enumerate(self._pending):
            if not pend:
                continue
            seq, tb, ti = pend[0]
            row = tb._rows[ti]
            cur = open_[b]
            if cur == row:
                continue
            if cur is not None:
                if b in hit_banks and self._streak[b] < self.hit_cap:
                    continue
                tt = max(self._pre_ok[b], self._row_bus, tb._visible, blocked)
                kind = "PRE"
            else:
                g = b // bpg
                tt = max(self._act_ok[b], self._act_any, self._act_bg[g], faw, self._row_bus,
                         tb._visible, blocked)
                kind = "ACT"
            if best is None or (tt, seq) < best[:2]:
                best = (tt, seq, kind, b, tb, ti)
        due = self._ref_due
        if due is not None and (best is None or best[0] >= due):
            return (due, "REF", None, None, None)
        if best is None:
            return None
        return (best[0], best[2], best[3], best[4], best[5])

    def _issue(self, now, kind, b, burst, i):
        t = self.timing
        if self.trace is not None and kind != "REF":
            self.trace.append((now, kind, b, burst._rows[i] if burst is not None else None))
        if kind == "RD" or kind == "WR":
            self._issue_column(now, kind, b, burst, i)
        elif kind == "ACT":
            g = b // t.banks_per_group
            self._open[b] = burst._rows[i]
            self._col_ready[b] = now + t.tRCD
            self._pre_ok[b] = now + t.tRAS
            self._act_ok[b] = now + t.tRC
            self._act_any = now + t.tRRD_S
            self._act_bg[g] = now + t.tRRD_L
            self._faw.append(now)
            self._row_bus = now + 2
            if burst._kinds[i] == ROW_HIT:
                burst._kinds[i] = ROW_MISS
        elif kind == "PRE":
            self._open[b] = None
            self._act_ok[b] = max(self._act_ok[b], now + t.tRP)
            self._row_bus = now + 1
            self._streak[b] = 0
            burst._kinds[i] = ROW_CONFLICT
        else:
            self._do_refresh(now)

    def _issue_column(self, now, kind, b, burst, i):
        t = self.timing
        g = b // t.banks_per_group
        if kind == "RD":
            self._rd_any = max(self._rd_any, now + t.tCCD_S)
            self._rd_bg[g] = max(self._rd_bg[g], now + t.tCCD_L)
            self._wr_any = max(self._wr_any, now + t.tRTW)
            self._data_free = now + t.CL + t.tBL
            self._pre_ok[b] = max(self._pre_ok[b], now + t.tRTP)
            self.bytes_read += t.access_bytes
        else:
            self._wr_any = max(self._wr_any, now + t.tCCD_S)
            self._wr_bg[g] = max(self._wr_bg[g], now + t.tCCD_L)
            end = now + t.CWL + t.tBL
            self._rd_any = max(self._rd_any, end + t.tWTR_S)
            self._rd_bg[g] = max(self._rd_bg[g], end + t.tWTR_L)
            self._data_free = end
            self._pre_ok[b] = max(self._pre_ok[b], end + t.tWR)
            self.bytes_written += t.access_bytes
        self._data_done(burst, self._data_free)
        pend = self._pending[b]
        if pend[0][1] is burst and pend[0][2] == i:
            pend.pop(0)
        else:
            if pend[0][1]._rows[pend[0][2]] != self._open[b]:
                self._streak[b] += 1
            for k, (_, pb, pi) in enumerate(pend):
                if pb is burst and pi == i:
                    del pend[k]
                    break
        self.row_kinds[burst._kinds[i]] += 1
        burst._next = i + 1
        if burst._next == burst.beats:
            q = self._queues[(burst.is_write, burst.id)]
            q.popleft()
            if not q:
                del self._queues[(burst.is_write, burst.id)]

    def _data_done(self, burst, when):
        burst.beat_times.append(when)
        if len(burst.beat_times) == burst.beats:
            burst.done_time = when
            self._count -= 1
            self.latencies.append(when - burst.submit_time)
            self.last_done = max(self.last_done, when)
            heapq.heappush(self._done, (when, burst._seq, burst))

    def _do_refresh(self, due):
        t = self.timing
        start = max(due, self._row_bus, self._blocked)
        if any(r is not None for r in self._open):
            pre = max([start] + [self._pre_ok[b] for b, r in enumerate(self._open)
                                 if r is not None])
            if self.trace is not None:
                self.trace.append((pre, "PREA", None, None))
            for b in range(t.banks):
                if self._open[b] is not None:
                    self._open[b] = None
                    self._streak[b] = 0
                self._act_ok[b] = max(self._act_ok[b], pre + t.tRP)
            ref = pre + t.tRP
        else:
            ref = max([start] + self._act_ok)
        if self.trace is not None:
            self.trace.append((ref, "REF", None, None))
        self._blocked = ref + t.tRFC
        self._row_bus = max(self._row_bus, ref + 1)
        self.refreshes += 1
        self._ref_due = due + t.tREFI

    def _submit_ideal(self, now, burst):
        t = self.timing
        start = max(now + t.ideal_latency - t.tBL, self._data_free)
        for k in range(burst.beats):
            self._data_done(burst, start + (k + 1) * t.tBL)
        self._data_free = start + burst.beats * t.tBL
        if burst.is_write:
            self.bytes_written += burst.beats * t.access_bytes
        else:
            self.bytes_read += burst.beats * t.access_bytes

    # -- statistics ----------------------------------------------------------------------

    def stats(self, elapsed=None):
        """Figures of this channel as a dict.

        Parameters
        ----------
        elapsed : int, optional
            Window in memory cycles for the bandwidth; by default from the first submission to
            the last completion.
        """
        t = self.timing
        if elapsed is None:
            elapsed = self.last_done - (self.first_submit or 0)
        total = self.bytes_read + self.bytes_written
        accesses = sum(self.row_kinds) or 1
        lat = sorted(self.latencies)

        def pct(p):
            return lat[min(len(lat) - 1, int(p * len(lat)))] * t.tck_ns if lat else 0.0

        return {
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "bursts": self.bursts,
            "cycles": elapsed,
            "gbps": total / (elapsed * t.tck_ns) if elapsed else 0.0,
            "efficiency": total / (elapsed * t.peak_bytes_per_cycle) if elapsed else 0.0,
            "row_hits": self.row_kinds[ROW_HIT],
            "row_misses": self.row_kinds[ROW_MISS],
            "row_conflicts": self.row_kinds[ROW_CONFLICT],
            "hit_rate": self.row_kinds[ROW_HIT] / accesses,
            "refreshes": self.refreshes,
            "latency_ns_p50": pct(0.5),
            "latency_ns_p99": pct(0.99),
            "latency_ns_max": lat[-1] * t.tck_ns if lat else 0.0,
            "max_occupancy": self.max_occupancy,
        }

    def latency_histogram(self, bin_ns=10.0):
        """Burst latencies (submission to last data) as ``{bin start in ns: count}``."""
        tck = self.timing.tck_ns
        return dict(sorted(Counter(int(x * tck // bin_ns) * bin_ns
                                   for x in self.latencies).items()))


class HbmStack:
    """N pseudo-channels, one per AXI port, with a shared report.

    Parameters
    ----------
    channels : int
        Number of pseudo-channels (AXI ports).
    timing : HbmTiming
        Preset of every channel.
    ratio : Fraction or int, optional
        Memory cycles per AXI cycle. By default the AXI port's peak (one 32-byte beat per
        cycle) equals the pseudo-channel's peak: ``tBL`` memory cycles per AXI cycle.
    interleave : int, optional
        Granularity in bytes at which global addresses alternate between ports. When given,
        :meth:`local_address` strips the port-select bits so that every channel sees a dense
        address space (its banks and rows are used as if it were alone).
    **channel_args
        Passed to every :class:`PseudoChannel`.
    """

    def __init__(self, channels=4, timing=HBM2_2000, ratio=None, interleave=None,
                 **channel_args):
        self.timing = timing
        self.ratio = Fraction(timing.tBL if ratio is None else ratio)
        self.interleave = interleave
        self.channels = [PseudoChannel(timing, **channel_args) for _ in range(channels)]

    def __len__(self):
        return len(self.channels)

    def __getitem__(self, i):
        return self.channels[i]

    def port_of(self, address):
        """The port a global address belongs to under the interleave (0 without one)."""
        if not self.interleave:
            return 0
        return (address // self.interleave) % len(self.channels)

    def local_address(self, address):
        """Channel-local address of a global address."""
        if not self.interleave:
            return address
        g, n = self.interleave, len(self.channels)
        return (address // (g * n)) * g + address % g

    def to_mem(self, axi_cycle):
        """Memory cycle at the start of an AXI cycle."""
        return int(axi_cycle * self.ratio)

    def to_axi(self, mem_cycle):
        """First AXI cycle that starts at or after a memory cycle."""
        return -((-mem_cycle * self.ratio.denominator) // self.ratio.numerator)

    def stats(self, elapsed=None):
        """Per-channel statistics (see :meth:`PseudoChannel.stats`) plus a ``total`` entry."""
        per = [c.stats(elapsed) for c in self.channels]
        busy = [s for s in per if s["bursts"]]
        cycles = max((s["cycles"] for s in busy), default=0)
        total_bytes = sum(s["bytes_read"] + s["bytes_written"] for s in per)
        peak = self.timing.peak_bytes_per_cycle * len(self.channels)
        total = {
            "bytes": total_bytes,
            "cycles": cycles,
            "gbps": total_bytes / (cycles * self.timing.tck_ns) if cycles else 0.0,
            "efficiency": total_bytes / (cycles * peak) if cycles else 0.0,
            "refreshes": sum(s["refreshes"] for s in per),
        }
        return {"channels": per, "total": total}

    def report(self, elapsed=None):
        """A table of the statistics as text."""
        st = self.stats(elapsed)
        lines = [f"HBM model {self.timing.name}: {len(self.channels)} pseudo-channels, "
                 f"peak {self.timing.peak_gbps:.1f} GB/s each, "
                 f"{float(self.ratio):g} memory cycles per AXI cycle",
                 "ch   read B    write B   GB/s   eff%  hit%  miss  confl  ref  "
                 "lat p50/p99/max ns"]
        for i, s in enumerate(st["channels"]):
            lines.append(
                f"{i:<3} {s['bytes_read']:>9} {s['bytes_written']:>9} {s['gbps']:6.2f} "
                f"{100 * s['efficiency']:5.1f} {100 * s['hit_rate']:5.1f} {s['row_misses']:5} "
                f"{s['row_conflicts']:6} {s['refreshes']:4}  {s['latency_ns_p50']:.0f}/"
                f"{s['latency_ns_p99']:.0f}/{s['latency_ns_max']:.0f}")
        tot = st["total"]
        lines.append(f"all {tot['bytes']:>19} {tot['gbps']:6.2f} {100 * tot['efficiency']:5.1f}")
        return "\n".join(lines)

