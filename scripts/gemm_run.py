"""Run GEMMs on the accelerator's Verilog (Verilator, HBM model) and summarize each run."""

import json
import tempfile
from pathlib import Path

from sim.toolchain import run

__all__ = ["run_gemms", "summary", "SHAPE_HELP", "parse_shape"]

SHAPE_HELP = "MxKxN, optionally followed by :ws or :os (default ws)"


def parse_shape(text):
    """``"256x128x64:os"`` -> ``(256, 128, 64, "os")``; ``ValueError`` naming the text."""
    shape, _, flow = text.partition(":")
    flow = flow.lower() or "ws"
    try:
        dims = tuple(int(v) for v in shape.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1 or flow not in ("ws", "os"):
        raise ValueError(f"a GEMM shape must be {SHAPE_HELP} with M, K, N >= 1, "
                         f"not {text!r}")
    return (*dims, flow)


def run_gemms(cfg, shapes, timing="HBM2_2000", seed=1, trace=False, refresh=True):
    """Run every ``(M, K, N, flow)`` of ``shapes`` in one simulation; return the report
    (``config``, ``timing`` and one ``gemms`` entry per shape, see ``sim.tb_accel``; with
    ``trace``, each entry's ``phases`` of memory-port and engine activity, on a build with
    public internal signals; without ``refresh``, on an HBM model that does not refresh)."""
    spec = ",".join(f"{m}x{k}x{n}:{flow}" for m, k, n, flow in shapes)
    env = {"TB_GEMMS": spec, "TB_TIMING": timing, "TB_SEED": str(seed),
           "TB_REFRESH": "1" if refresh else "0"}
    if trace:
        env["TB_TRACE"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        run(cfg, "sim.tb_accel", testcase="gemm_report", top="accelerator",
            env={**env, "TB_OUT": str(out)}, public=trace)
        return json.loads(out.read_text())


def summary(cfg, g):
    """Figures of one report entry: cycles, MAC utilization, HBM traffic and the roofline
    bound (peak MACs, or the ports' peak bandwidth times the GEMM's arithmetic intensity on
    its compulsory traffic: A, B, the bias and C once each)."""
    macs = g["M"] * g["K"] * g["N"]
    cycles = g["cycles"]
    c = g["counters"]
    moved = sum(v for k, v in c.items() if k.startswith(("BYTES_READ", "BYTES_WRITTEN")))
    peak_bw = cfg["mem_ports"] * cfg["port_width"] // 8
    peak_macs = cfg["rows"] * cfg["cols"]
    compulsory = g["M"] * g["K"] + g["K"] * g["N"] + 4 * g["N"] + g["M"] * g["N"]
    bound = min(peak_macs, peak_bw * macs / compulsory)
    return {
        "shape": f"{g['M']}x{g['K']}x{g['N']}", "dataflow": g["dataflow"],
        "bit_exact": g["bit_exact"], "cycles": cycles,
        "ideal_cycles": macs / peak_macs,
        "utilization": macs / (cycles * peak_macs),
        "intensity": macs / compulsory, "macs_per_cycle": macs / cycles,
        "roofline_macs_per_cycle": bound,
        "of_roofline": macs / cycles / bound,
        "bytes_moved": moved, "bytes_per_cycle": moved / cycles,
        "bandwidth_share": moved / cycles / peak_bw,
        "engine_busy": {e: c[f"{e}_BUSY"] / cycles for e in ("LOAD", "COMPUTE", "STORE")},
        "engine_stall": {e: c[f"{e}_STALL"] / cycles for e in ("LOAD", "COMPUTE", "STORE")},
        "tiling": g["tiling"], "wall_s": g["wall_s"], "phases": g.get("phases"),
    }
