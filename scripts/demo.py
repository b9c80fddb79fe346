"""Generate a configuration, stream A through its systolic array on Verilator and check the
result against numpy.

    python -m scripts.demo --preset default --m 128
"""

import json
import tempfile
import time
from pathlib import Path

from sim.toolchain import build, run

from .cli import ArgumentParser, add_config_args, config_from_args


def main(argv=None):
    parser = ArgumentParser(prog="demo", description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--m", type=int, default=128, help="rows of A to stream (default 128)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    cfg = config_from_args(parser, args)
    if args.m < 1:
        parser.error(f"--m must be at least 1, not {args.m}")

    print(f"[demo] {cfg.name}: {cfg.rows}x{cfg.cols} array, "
          f"{cfg.in_width}-bit {'signed' if cfg.in_signed else 'unsigned'} inputs, "
          f"{cfg.acc_width}-bit accumulators")
    t0 = time.monotonic()
    build_dir = build(cfg)
    print(f"[demo] Verilog and Verilator model in {build_dir} ({time.monotonic() - t0:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo.json"
        t0 = time.monotonic()
        run(cfg, "sim.tb_array", testcase="demo_stream",
            env={"TB_DEMO_OUT": str(out), "TB_DEMO_M": str(args.m), "TB_SEED": str(args.seed)})
        report = json.loads(out.read_text())
    print(f"[demo] simulated in {time.monotonic() - t0:.1f} s")
    print(f"[demo] C = A @ B, A {args.m}x{cfg.rows}, B {cfg.rows}x{cfg.cols}, weight-stationary")
    print(f"[demo] numpy check: {'PASS, bit-exact' if report['max_abs_error'] == 0 else 'FAIL'}")
    print(f"[demo] cycles, first weight in to last result out: {report['cycles']}")
    print(f"[demo] MAC utilization over those cycles: {100 * report['utilization']:.1f}% "
          f"({report['macs']} MACs on {cfg.macs} PEs)")
    print(f"[demo] result stream: {report['m']} rows in {report['stream_cycles']} cycles "
          f"({100 * report['stream_utilization']:.1f}% of the array's steady-state rate)")


if __name__ == "__main__":
    main()
