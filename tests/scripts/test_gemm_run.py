"""Tier 2: a traced GEMM run on Verilator records every memory-port and engine handshake."""

from collections import Counter

from hw.config import PRESETS
from scripts.gemm_run import run_gemms


def test_trace_counts_every_handshake():
    shapes = [(5, 7, 3, "ws"), (4, 9, 6, "os"), (6, 4, 5, "ws")]
    report = run_gemms(PRESETS["tiny"], shapes, trace=True)
    assert len(report["gemms"]) == len(shapes)
    before = {"read_beats": 0, "write_beats": 0}         # the HBM model counts from reset
    for g in report["gemms"]:
        assert g["bit_exact"]
        seen = Counter()
        for channel, _, first, last, count in g["phases"]:
            assert first <= last and count >= 1
            seen[channel] += count
        # the engines' handshakes against the compiler's static counts of the program ...
        stats = g["stats"]
        assert seen["load"] == stats["loads"]
        assert seen["matmul"] == stats["matmuls"]
        assert seen["store"] == stats["stores"]
        assert seen["results"] == stats["result_rows"]
        # ... and the memory ports' data beats against the HBM model's own counts
        assert seen["r"] == g["hbm"]["read_beats"] - before["read_beats"]
        assert seen["w"] == g["hbm"]["write_beats"] - before["write_beats"]
        before = g["hbm"]
