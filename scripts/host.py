"""Run a GEMM on the ULX3S board through its UART bridge and check it against numpy.

    python -m scripts.host --port /dev/ttyUSB0
    python -m scripts.host --port /dev/ttyUSB0 --gemm 16x9x7:os --baud 115200 --mem-kib 64

The preset, baud rate and memory size must be those the bitstream was built with
(``python -m scripts.board``).
"""

import re
import sys

import numpy as np

from hw.isa import Dataflow

from .cli import ArgumentParser, add_config_args, config_from_args


def parse_gemm(text):
    """``MxKxN`` or ``MxKxN:ws|os`` to ``(M, K, N, Dataflow)``."""
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+)(?::(ws|os))?", text)
    if not match or min(int(g) for g in match.groups()[:3]) < 1:
        raise ValueError(f"--gemm must be MxKxN or MxKxN:ws|os with positive sizes, "
                         f"not {text!r}")
    M, K, N = (int(g) for g in match.groups()[:3])
    return M, K, N, Dataflow.OS if match.group(4) == "os" else Dataflow.WS


def main(argv=None):
    parser = ArgumentParser(prog="host", description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.set_defaults(preset="tiny")
    parser.add_argument("--port", required=True, help="serial port of the board's FTDI UART")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--mem-kib", type=int, default=64, help="the board's memory in KiB")
    parser.add_argument("--gemm", default="8x8x8", help="MxKxN[:ws|os] (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds for the run")
    args = parser.parse_args(argv)
    cfg = config_from_args(parser, args)
    try:
        M, K, N, dataflow = parse_gemm(args.gemm)
    except ValueError as e:
        parser.error(str(e))
    if args.baud < 1 or args.mem_kib < 1:
        parser.error("--baud and --mem-kib must be positive")

    import serial

    from sim.board_host import BoardHost, BridgeClient, BridgeError, run_gemm
    from sim.driver import RunError

    try:
        port = serial.Serial(args.port, args.baud, timeout=2.0)
    except serial.SerialException as e:
        print(f"host: error: {e}", file=sys.stderr)
        sys.exit(1)
    with port:
        port.reset_input_buffer()
        host = BoardHost(BridgeClient(port), cfg, args.mem_kib << 10)
        try:
            C, want, run, gemm = run_gemm(host, M, K, N, seed=args.seed, dataflow=dataflow,
                                          timeout=args.timeout)
        except (BridgeError, RunError, MemoryError) as e:
            print(f"host: error: {e}", file=sys.stderr)
            sys.exit(1)
    ok = C.shape == want.shape and np.array_equal(C, want)
    macs = run.counters["MACS"]
    print(f"{M}x{K}x{N} {dataflow.name} on {cfg.name}: "
          f"{'matches numpy' if ok else f'{np.count_nonzero(C != want)} values differ'}")
    print(f"  {run.cycles} cycles from START to done, {macs} MACs "
          f"({macs / max(run.cycles * cfg.macs, 1):.1%} of the array), "
          f"{run.bytes_read} bytes read, {run.bytes_written} written")
    for name, value in run.counters.items():
        print(f"  {name:<18} {value}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
