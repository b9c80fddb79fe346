"""Run an int8 GEMM with bias, ReLU and requantization on the accelerator's Verilog, fed by
the HBM model, and check it against numpy.

    python -m scripts.demo                      # 256x256x256 on the default preset, HBM2
    python -m scripts.demo --preset large --gemm 512x256x128 --timing HBM3_6400
"""

import time

from sim.toolchain import build

from .cli import ArgumentParser, add_config_args, config_from_args
from .gemm_run import SHAPE_HELP, parse_shape, run_gemms, summary


def main(argv=None):
    parser = ArgumentParser(prog="demo", description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--gemm", default="256x256x256", help=f"{SHAPE_HELP} "
                        "(default %(default)s)")
    parser.add_argument("--timing", default="HBM2_2000",
                        choices=["HBM2_2000", "HBM3_6400", "ideal"])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    cfg = config_from_args(parser, args)
    try:
        shape = parse_shape(args.gemm)
    except ValueError as e:
        parser.error(f"--gemm: {e}")

    print(f"[demo] {cfg.name}: {cfg.rows}x{cfg.cols} array, {cfg.mem_ports} x "
          f"{cfg.port_width}-bit memory ports, {args.timing} model")
    t0 = time.monotonic()
    build_dir = build(cfg, "accelerator")
    print(f"[demo] Verilog and Verilator model in {build_dir} ({time.monotonic() - t0:.1f} s)")
    t0 = time.monotonic()
    report = run_gemms(cfg, [shape], args.timing, args.seed)
    g = report["gemms"][0]
    s = summary(report["config"], g)
    print(f"[demo] simulated in {time.monotonic() - t0:.1f} s")
    m, k, n, flow = shape
    print(f"[demo] C = int8(ReLU(A @ B + bias) * scale >> 12), A {m}x{k}, B {k}x{n}, "
          f"{flow.upper()}, tiling {s['tiling']}")
    print(f"[demo] numpy check: {'PASS, bit-exact' if g['bit_exact'] else 'FAIL'} "
          f"({g['mismatches']} mismatches)")
    print(f"[demo] cycles from START to done: {s['cycles']} "
          f"(ideal {s['ideal_cycles']:.0f} at one MAC per PE per cycle)")
    print(f"[demo] MAC utilization: {100 * s['utilization']:.1f}% of {cfg.macs} PEs")
    print(f"[demo] HBM traffic: {s['bytes_moved']} bytes, {s['bytes_per_cycle']:.1f} B/cycle "
          f"({100 * s['bandwidth_share']:.1f}% of the ports' peak)")
    busy = ", ".join(f"{e.lower()} {100 * v:.0f}%" for e, v in s["engine_busy"].items())
    print(f"[demo] engines busy: {busy}")
    if not g["bit_exact"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
