"""Credibility and timing-rule tests of the HBM stack model (plain Python, no simulator)."""

import random
import time
from itertools import pairwise

import pytest

from sim.hbm import (
    HBM2_2000,
    HBM3_6400,
    ROW_CONFLICT,
    ROW_HIT,
    ROW_MISS,
    Burst,
    HbmStack,
    PseudoChannel,
    ideal,
)

T = HBM2_2000
STEP = 4  # cycles between refills of the driver below


def drive(pc, make, inflight, cycles):
    """Keep ``inflight`` bursts outstanding for ``cycles`` memory cycles, then drain.

    Returns the bursts in completion order.
    """
    now, out, done = 0, 0, []
    while now < cycles or out:
        while now < cycles and out < inflight and pc.can_accept():
            pc.submit(now, make())
            out += 1
        now += STEP
        finished = pc.pop_done(now)
        out -= len(finished)
        done += finished
    return done


def sequential(beats=8, ids=1, is_write=False):
    state = {"n": 0}

    def make():
        n = state["n"]
        state["n"] += 1
        return Burst(is_write, n * beats * T.access_bytes, beats, id=n % ids)
    return make


def random_reads(seed=1, ids=16, beats=1, space=1 << 28):
    rng = random.Random(seed)

    def make():
        return Burst(False, rng.randrange(space) & ~31, beats, id=rng.randrange(ids))
    return make


def efficiency(pc):
    return pc.stats()["efficiency"]


# -- credibility against published measurements ---------------------------------------------

@pytest.mark.parametrize("inflight", [16, 32])
def test_sequential_256B_bursts_reach_88_to_93_percent(inflight):
    pc = PseudoChannel()
    drive(pc, sequential(), inflight, 40_000)
    eff = efficiency(pc)
    assert 0.88 <= eff <= 0.93, eff
    assert pc.refreshes == 40_000 // T.tREFI


def test_sequential_writes_match_reads():
    pc = PseudoChannel()
    drive(pc, sequential(is_write=True), 16, 40_000)
    assert 0.88 <= efficiency(pc) <= 0.93


def test_32B_bursts_in_one_bank_group_stay_at_or_under_half():
    state = {"n": 0}

    def make():
        n = state["n"]
        state["n"] += 1
        # Bank-group bits 5 and 11 stay zero; column and bank vary.
        return Burst(False, ((n % 32) << 6) | (((n // 32) % 4) << 12), 1, id=n % 8)

    pc = PseudoChannel()
    drive(pc, make, 32, 40_000)
    eff = efficiency(pc)
    # tCCD_L = 2 tBL caps it at 50%; refresh takes a little more.
    assert 0.40 <= eff <= 0.50, eff
    assert pc.stats()["hit_rate"] > 0.95


def test_random_32B_reads_land_between_25_and_55_percent():
    pc = PseudoChannel()
    drive(pc, random_reads(), 32, 40_000)
    eff = efficiency(pc)
    assert 0.25 <= eff <= 0.55, eff
    assert pc.row_kinds[ROW_CONFLICT] > 0.9 * sum(pc.row_kinds)


def test_refresh_shows_up_as_lost_bandwidth():
    with_ref, without = PseudoChannel(), PseudoChannel(refresh=False)
    drive(with_ref, sequential(), 16, 40_000)
    drive(without, sequential(), 16, 40_000)
    assert without.refreshes == 0 and with_ref.refreshes == 10
    assert efficiency(without) > 0.98
    # tRFC / tREFI alone is 6.7%; closing and reopening the rows adds to it.
    lost = efficiency(without) - efficiency(with_ref)
    assert T.tRFC / T.tREFI <= lost <= 0.09, lost


# -- ordering and the queue ------------------------------------------------------------------

def test_same_id_in_order_different_ids_reorder():
    pc = PseudoChannel()
    rng = random.Random(5)
    bursts = [Burst(rng.random() < 0.3, rng.randrange(1 << 20) & ~31, rng.choice([1, 2, 8, 16]),
                    id=rng.randrange(4)) for _ in range(400)]
    done, it = [], iter(bursts)
    now, pending = 0, True
    while pending or pc.occupancy or pc.next_event() is not None:
        while pending and pc.can_accept():
            b = next(it, None)
            if b is None:
                pending = False
                break
            pc.submit(now, b)
        now += STEP
        done += pc.pop_done(now)
    assert len(done) == len(bursts)
    for key in {(b.is_write, b.id) for b in bursts}:
        mine = [b for b in bursts if (b.is_write, b.id) == key]
        assert [b.done_time for b in mine] == sorted(b.done_time for b in mine)
        firsts = [b.beat_times[0] for b in mine]
        assert firsts == sorted(firsts)
    # Across IDs the scheduler overtakes: some burst finishes before an older one.
    order = [b.submit_time for b in sorted(bursts, key=lambda b: (b.done_time, b._seq))]
    assert any(a > b for a, b in pairwise(order))


def test_row_hit_of_other_id_overtakes_a_conflict():
    pc = PseudoChannel(refresh=False)
    pc.submit(0, Burst(False, 0, 1, id=0))
    pc.advance(200)
    # Same bank (bank 0 of group 0), another row: a conflict, then a hit of the open row.
    conflict = pc.submit(200, Burst(False, 1 << 14, 1, id=1))
    hit = pc.submit(200, Burst(False, 64, 1, id=2))
    pc.advance(1000)
    assert hit.done_time < conflict.done_time


def test_queue_bound_is_respected():
    pc = PseudoChannel(queue_depth=64)
    for k in range(64):
        pc.submit(0, Burst(False, k << 14, 8, id=0))
    assert not pc.can_accept()
    with pytest.raises(OverflowError):
        pc.submit(0, Burst(False, 0, 1))
    small = PseudoChannel(queue_depth=8)
    drive(small, random_reads(ids=4), 100, 5000)
    assert small.max_occupancy == 8


# -- timing rules ----------------------------------------------------------------------------

def test_row_miss_and_conflict_latency():
    lat = 24
    pc = PseudoChannel(ctrl_latency=lat, refresh=False)
    miss = pc.submit(0, Burst(False, 0, 1))
    pc.advance(1000)
    hit = pc.submit(1000, Burst(False, 64, 1))
    pc.advance(2000)
    conflict = pc.submit(2000, Burst(False, 1 << 14, 1))
    pc.advance(3000)
    base = lat + T.CL + T.tBL
    assert hit.done_time - 1000 == base
    assert miss.done_time - 0 == base + T.tRCD
    assert conflict.done_time - 2000 == base + T.tRP + T.tRCD
    assert pc.row_kinds == [1, 1, 1]
    assert [miss._kinds[0], hit._kinds[0], conflict._kinds[0]] == [ROW_MISS, ROW_HIT,
                                                                   ROW_CONFLICT]


def _acts(pc):
    return [t for t, cmd, *_ in pc.trace if cmd == "ACT"]


def _five_activates(timing):
    pc = PseudoChannel(timing, refresh=False, trace=True)
    # Five closed banks, alternating bank groups, five IDs: only tRRD and tFAW pace them.
    for k in range(5):
        bg, ba = k % 4, k // 4
        pc.submit(0, Burst(False, ((bg & 1) << 5) | ((bg >> 1) << 11) | (ba << 12), 1, id=k))
    pc.advance(500)
    return _acts(pc)


def test_tfaw_limits_four_activates():
    acts = _five_activates(T.replace(tFAW=30))
    assert [b - a for a, b in pairwise(acts[:4])] == [T.tRRD_S] * 3
    assert acts[4] - acts[0] == 30
    acts = _five_activates(T)  # tFAW = 4 tRRD: no extra wait
    assert acts[4] - acts[0] == 4 * T.tRRD_S


def test_trrd_long_within_a_bank_group():
    pc = PseudoChannel(T.replace(tRRD_L=6), refresh=False, trace=True)
    pc.submit(0, Burst(False, 0, 1, id=0))            # group 0, bank 0
    pc.submit(0, Burst(False, 1 << 12, 1, id=1))      # group 0, bank 1
    pc.advance(500)
    a, b = _acts(pc)
    assert b - a == 6


def _column_times(pc):
    return [t for t, cmd, *_ in pc.trace if cmd in ("RD", "WR")]


def _column_gaps(bg_interleave):
    pc = PseudoChannel(refresh=False, trace=True, bg_interleave=bg_interleave)
    pc.submit(0, Burst(False, 0, 8))  # opens the rows
    pc.advance(1000)
    pc.trace.clear()
    pc.submit(1000, Burst(False, 0, 8))
    pc.advance(2000)
    cols = _column_times(pc)
    return {b - a for a, b in pairwise(cols)}


def test_tccd_short_across_groups_long_within_one():
    assert _column_gaps(True) == {T.tCCD_S}  # bit 5 alternates the bank group
    assert _column_gaps(False) == {T.tCCD_L}  # eight columns of one bank


def test_read_write_turnarounds():
    pc = PseudoChannel(refresh=False, trace=True)
    pc.submit(0, Burst(True, 0, 1, id=0))
    pc.advance(100)
    pc.submit(100, Burst(False, 64, 1, id=0))    # same bank group as the write
    pc.advance(300)
    pc.submit(300, Burst(True, 128, 1, id=0))
    pc.advance(600)
    wr, rd, wr2 = _column_times(pc)
    assert rd == 100 + pc.ctrl_latency  # the write is long done
    pc2 = PseudoChannel(refresh=False, trace=True)
    pc2.submit(0, Burst(True, 0, 1, id=0))
    pc2.submit(0, Burst(False, 64, 1, id=1))
    pc2.submit(0, Burst(True, 128, 1, id=2))
    pc2.advance(500)
    cmds = [(t, c) for t, c, *_ in pc2.trace if c in ("RD", "WR")]
    times = dict((c, t) for t, c in cmds)
    first, second = cmds[0], cmds[1]
    # Either order is legal; both turnarounds are honoured.
    if first[1] == "WR":
        assert second[0] - first[0] >= T.tCCD_S
    wr_t = [t for t, c in cmds if c == "WR"]
    rd_t = times["RD"]
    for w in wr_t:
        if w < rd_t:
            assert rd_t - w >= T.CWL + T.tBL + T.tWTR_L
        else:
            assert w - rd_t >= T.tRTW


def check_trace(trace, t, bank_groups_of=lambda b: b // 4):
    """Independent check of every command in ``trace`` against the rules of ``t``.

    Returns a list of violations (empty when the trace is legal).
    """
    bad = []
    inf = -10**9
    open_row, last_act, last_pre = {}, {}, {}
    last_rd_bank, last_wr_bank = {}, {}
    acts = []
    act_bg, col_bg_rd, col_bg_wr = {}, {}, {}
    last_col = last_rd = last_wr = inf
    last_wr_bg = {}
    ref_end = inf
    row_times, col_times = set(), set()
    refs = 0
    for now, cmd, b, row in sorted(trace, key=lambda e: e[0]):
        def need(cond, what, now=now, cmd=cmd, b=b):
            if not cond:
                bad.append(f"{now} {cmd} bank {b}: {what}")
        if cmd in ("ACT", "PRE", "PREA", "REF"):
            need(now not in row_times, "two row commands in a cycle")
            row_times.add(now)
        else:
            need(now not in col_times, "two column commands in a cycle")
            col_times.add(now)
        need(now >= ref_end, "command during tRFC")
        g = None if b is None else bank_groups_of(b)
        if cmd == "ACT":
            need(open_row.get(b) is None, "ACT to an open bank")
            need(now >= last_pre.get(b, inf) + t.tRP, "tRP")
            need(now >= last_act.get(b, inf) + t.tRC, "tRC")
            need(not acts or now >= acts[-1] + t.tRRD_S, "tRRD_S")
            need(now >= act_bg.get(g, inf) + t.tRRD_L, "tRRD_L")
            need(len(acts) < 4 or now >= acts[-4] + t.tFAW, "tFAW")
            open_row[b], last_act[b], act_bg[g] = row, now, now
            acts.append(now)
        elif cmd in ("PRE", "PREA"):
            banks = [b] if cmd == "PRE" else [k for k, r in open_row.items() if r is not None]
            for k in banks:
                need(open_row.get(k) is not None, f"PRE of closed bank {k}")
                need(now >= last_act.get(k, inf) + t.tRAS, "tRAS")
                need(now >= last_rd_bank.get(k, inf) + t.tRTP, "tRTP")
                need(now >= last_wr_bank.get(k, inf) + t.CWL + t.tBL + t.tWR, "tWR")
                open_row[k], last_pre[k] = None, now
        elif cmd == "REF":
            refs += 1
            need(all(r is None for r in open_row.values()), "REF with an open bank")
            need(all(now >= p + t.tRP for p in last_pre.values()), "tRP before REF")
            need(now >= refs * t.tREFI, "REF before it is due")
            ref_end = now + t.tRFC
        else:
            need(open_row.get(b) == row, "column command to a row that is not open")
            need(now >= last_act.get(b, inf) + t.tRCD, "tRCD")
            need(now >= last_col + t.tCCD_S, "tCCD_S")
            same = col_bg_rd.get(g, inf) if cmd == "RD" else col_bg_wr.get(g, inf)
            need(now >= same + t.tCCD_L, "tCCD_L")
            if cmd == "RD":
                need(now >= last_wr + t.CWL + t.tBL + t.tWTR_S, "tWTR_S")
                need(now >= last_wr_bg.get(g, inf) + t.CWL + t.tBL + t.tWTR_L, "tWTR_L")
                last_rd, last_rd_bank[b], col_bg_rd[g] = now, now, now
            else:
                need(now >= last_rd + t.tRTW, "tRTW")
                last_wr, last_wr_bank[b], col_bg_wr[g], last_wr_bg[g] = now, now, now, now
            last_col = now
    return bad


def _mixed_trace(timing, check_timing=None):
    pc = PseudoChannel(timing, trace=True)
    rng = random.Random(11)

    def make():
        return Burst(rng.random() < 0.4, rng.randrange(1 << 17) & ~31,
                     rng.choice([1, 2, 4, 8, 16]), id=rng.randrange(6))
    drive(pc, make, 24, 12_000)
    return check_trace(pc.trace, check_timing or timing)


@pytest.mark.parametrize("timing", [HBM2_2000, HBM3_6400], ids=lambda t: t.name)
def test_trace_obeys_every_timing_rule(timing):
    assert _mixed_trace(timing) == []


def test_trace_checker_catches_a_broken_model():
    broken = _mixed_trace(T.replace(tRCD=10, tRRD_S=2, tFAW=8), check_timing=T)
    for rule in ("tRCD", "tRRD_S", "tFAW"):
        assert any(rule in v for v in broken), rule


# -- modes, presets and the stack ------------------------------------------------------------

def test_ideal_mode_is_fixed_latency_at_peak():
    pc = PseudoChannel(ideal(30))
    one = pc.submit(0, Burst(False, 0, 1))
    assert one.done_time == 30
    done = drive(PseudoChannel(ideal(30)), random_reads(ids=3, beats=8), 16, 20_000)
    assert len(done) > 1000
    pc = PseudoChannel(ideal(30))
    drive(pc, random_reads(ids=3, beats=8), 16, 20_000)
    assert efficiency(pc) > 0.99


def test_idle_time_costs_nothing():
    pc = PseudoChannel(refresh=False)
    b = pc.submit(0, Burst(False, 0, 4))
    start = time.perf_counter()
    pc.advance(10**12)
    assert time.perf_counter() - start < 0.01
    assert b.done_time is not None and pc.next_event() == b.done_time
    assert pc.pop_done(10**12) == [b] and pc.next_event() is None
    refreshed = PseudoChannel()
    refreshed.advance(T.tREFI * 1000 + 1)
    assert refreshed.refreshes == 1000


def test_presets_peak_bandwidth():
    assert HBM2_2000.peak_gbps == pytest.approx(16.0)
    assert HBM3_6400.peak_gbps == pytest.approx(25.6)
    assert HBM2_2000.tRC == HBM2_2000.tRAS + HBM2_2000.tRP
    assert HBM3_6400.tREFI * HBM3_6400.tck_ns == pytest.approx(3900)
    pc = PseudoChannel(HBM3_6400)
    drive(pc, sequential(), 16, 40_000)
    assert 0.85 <= efficiency(pc) <= 0.95


def test_address_map():
    pc = PseudoChannel()
    assert pc.decode(0) == (0, 0, 0, 0)
    assert pc.decode(32) == (1, 0, 0, 0)
    assert pc.decode(64) == (0, 0, 0, 1)
    assert pc.decode(1 << 11) == (2, 0, 0, 0)
    assert pc.decode(1 << 12) == (0, 1, 0, 0)
    assert pc.decode(1 << 14) == (0, 0, 1, 0)
    plain = PseudoChannel(bg_interleave=False)
    assert plain.decode(32) == (0, 0, 0, 1)
    assert plain.decode(1 << 10) == (1, 0, 0, 0)


def test_stack_interleave_and_report():
    stack = HbmStack(4, interleave=4096)
    assert stack.ratio == 2
    assert [stack.port_of(a) for a in (0, 4096, 8192, 12288, 16384)] == [0, 1, 2, 3, 0]
    assert stack.local_address(16384 + 100) == 4096 + 100
    assert stack.to_axi(stack.to_mem(7)) == 7 and stack.to_axi(15) == 8
    for k, ch in enumerate(stack.channels):
        drive(ch, sequential(), 16, 4000 * (k + 1))
    st = stack.stats()
    assert [c["refreshes"] for c in st["channels"]] == [1, 2, 3, 4]
    text = stack.report()
    assert "HBM2-2000" in text and len(text.splitlines()) == 7
    hist = stack[0].latency_histogram(bin_ns=50)
    assert sum(hist.values()) == stack[0].bursts
