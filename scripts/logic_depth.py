"""Logic depth of a synthesized netlist: the longest chains of logic cells between registers.

On an FPGA most of a path's delay is routing, one net per logic cell it passes, so the paths
with the most logic levels, above all those that cross blocks, are the ones that will limit
Fmax. Yosys's netlist shows them all within seconds, where nextpnr takes many minutes and
reports one.

    python -m scripts.logic_depth build/synth/ecp5-accelerator-ecp5-85k/accelerator.json

A level is a LUT, a carry-chain cell entered from its LUT inputs (the carry from one cell of
the chain to the next adds none) or a distributed RAM's read. Flip-flops, block RAMs, DSP
blocks that register their operands or product, a distributed RAM's write side and the
netlist's ports start and end paths.
"""

import argparse
import json
import re
import sys
from collections import Counter

__all__ = ["LogicDepthError", "logic_depth", "format_depth"]

# Combinational arcs of each cell type: (input ports, output ports, levels), as patterns of
# port names. A cell type not listed (or a DSP block with registers) starts and ends paths.
_LUT = [(r"[ABCD]", r"Z", 1)]
ARCS = {
    "LUT4": _LUT,
    "CCU2C": [(r"[ABCD]0", r"S0|S1|COUT", 1), (r"[ABCD]1", r"S1|COUT", 1),
              (r"CIN", r"S0|S1|COUT", 0)],
    "TRELLIS_DPR16X4": [(r"RAD", r"DO", 1)],
    "PFUMX": [(r"ALUT|BLUT|C0", r"Z", 0)],
    "L6MUX21": [(r"D0|D1|SD", r"Z", 0)],
    "SB_LUT4": [(r"I[0-3]", r"O", 1)],
    "SB_CARRY": [(r"I0|I1", r"CO", 1), (r"CI", r"CO", 0)],
}
_MULT_REGS = ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_PIPELINE_CLK", "REG_OUTPUT_CLK")
# clock inputs end no path
CLOCKS = {"CLK", "WCK", "CLKA", "CLKB", "CLK0", "CLK1", "CLK2", "CLK3", "C", "RCLK", "WCLK"}


class LogicDepthError(ValueError):
    pass


def _arcs(cell):
    if cell["type"] == "MULT18X18D" and all(
            cell["parameters"].get(p, "NONE") == "NONE" for p in _MULT_REGS):
        return [(r"[AB]\d+", r"P\d+", 2)]
    return ARCS.get(cell["type"])


def _names(module):
    """The most readable name of each net bit: a visible name before a generated one, then
    the shortest."""
    best = {}
    for name, net in module["netnames"].items():
        bits = net["bits"]
        rank = (net.get("hide_name", 0), name.count("$"), len(name))
        for i, bit in enumerate(bits):
            if isinstance(bit, int) and (bit not in best or rank < best[bit][0]):
                best[bit] = (rank, name if len(bits) == 1 else f"{name}[{i}]")
    return {bit: name for bit, (_, name) in best.items()}


def _base(name):
    return re.sub(r"\[\d+\]$", "", name)


def block_of(cell, prefix="", outside="(harness)"):
    """The block of a flattened netlist's cell: the first part of its hierarchical name after
    ``prefix``, ``"(top)"`` for a cell of the top itself, ``outside`` for one whose name does
    not start with ``prefix``."""
    if not cell.startswith(prefix):
        return outside
    inner = cell[len(prefix):]
    return inner.split(".")[0] if "." in inner and not inner.startswith("$") else "(top)"


def top_module(netlist, top=None):
    """The module named ``top``, or the one the netlist marks as its top."""
    modules = netlist["modules"]
    if top is None:
        tops = [n for n, m in modules.items() if int(m.get("attributes", {}).get("top", 0))]
        if len(tops) != 1:
            raise LogicDepthError(f"the netlist must mark one top module, not {tops}")
        top = tops[0]
    if top not in modules:
        raise LogicDepthError(f"no module {top!r} in the netlist; it has {sorted(modules)}")
    return modules[top]


def logic_depth(netlist, top=None, count=10, prefix=""):
    """Analyse a Yosys JSON netlist (a dict) and return the histogram of logic levels over
    every path end (a bit) and the ``count`` deepest paths ending in distinct signals, each
    with its levels, end points, the blocks it passes (the first part of the hierarchical
    cell names after ``prefix``, in order: :func:`block_of`) and the signals along it."""
    module = top_module(netlist, top)

    fanin = {}              # output bit -> [(input bit, levels, cell)]
    ends = []               # (bit, name of the end)
    names = _names(module)
    for cname, cell in module["cells"].items():
        conns, dirs = cell["connections"], cell["port_directions"]
        arcs = _arcs(cell)
        # inputs that no arc takes (all of a register's) end paths, named after a flip-flop's
        # output, or the cell
        outs = [b for p, bits in conns.items() if dirs.get(p) == "output" for b in bits
                if isinstance(b, int)]
        label = (_base(names.get(outs[0], cname)) if len(outs) == 1 and arcs is None else
                 re.sub(r"(\.\d+)+$", "", cname))        # a memory's cells as one
        ends += [(b, label) for p, bits in conns.items()
                 if dirs.get(p) == "input" and p not in CLOCKS and
                 not any(re.fullmatch(ins, p) for ins, _, _ in arcs or ())
                 for b in bits if isinstance(b, int)]
        for ins, arc_outs, levels in arcs or ():
            src = [b for p, bits in conns.items() if re.fullmatch(ins, p) for b in bits
                   if isinstance(b, int)]
            for p, bits in conns.items():
                if re.fullmatch(arc_outs, p):
                    for b in bits:
                        if isinstance(b, int):
                            fanin.setdefault(b, []).extend((s, levels, cname) for s in src)
    for pname, port in module["ports"].items():
        if port["direction"] == "output":
            ends += [(b, pname) for b in port["bits"] if isinstance(b, int)]

    depth, via = {}, {}         # bit -> levels; bit -> (input bit, cell) it takes them from
    for start, _ in ends:
        if start in depth:
            continue
        stack = [(start, iter(fanin.get(start, ())))]
        on_stack = {start}
        while stack:
            bit, it = stack[-1]
            step = next(it, None)
            if step is None:
                stack.pop()
                on_stack.discard(bit)
                best = max(((depth[s] + lv, s, c) for s, lv, c in fanin.get(bit, ())),
                           default=(0, None, None), key=lambda t: t[0])
                depth[bit] = best[0]
                via[bit] = best[1:]
                continue
            src = step[0]
            if src in on_stack:
                raise LogicDepthError(f"combinational loop through cell {step[2]} "
                                      f"(net {names.get(src, src)})")
            if src not in depth:
                stack.append((src, iter(fanin.get(src, ()))))
                on_stack.add(src)

    histogram = Counter(depth[b] for b, _ in ends)
    deepest, seen = [], set()
    for bit, end in sorted(ends, key=lambda e: -depth[e[0]]):
        if len(deepest) == count:
            break
        if end in seen:
            continue
        seen.add(end)
        bits, cells = [bit], []
        while via[bits[-1]][0] is not None:
            src, cell = via[bits[-1]]
            bits.append(src)
            cells.append(cell)
        signals = []
        for b in reversed(bits):
            name = names.get(b, f"net {b}")
            if not signals or _base(signals[-1]) != _base(name):
                signals.append(name)
        blocks = []
        for c in reversed(cells):
            block = block_of(c, prefix)
            if not blocks or blocks[-1] != block:
                blocks.append(block)
        deepest.append({"levels": depth[bit], "from": signals[0], "to": end,
                        "blocks": blocks, "signals": signals})
    return {"histogram": dict(sorted(histogram.items())), "deepest": deepest}


def format_depth(result):
    hist = result["histogram"]
    lines = ["  logic levels (path ends): " +
             ", ".join(f"{lv}: {n}" for lv, n in hist.items())]
    for p in result["deepest"]:
        lines.append(f"  {p['levels']:3} levels to {p['to']} from {p['from']} "
                     f"({' > '.join(p['blocks']) or 'no logic'})")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="logic_depth", description=__doc__.splitlines()[0])
    parser.add_argument("netlist", help="Yosys JSON netlist (write_json, or synth -json)")
    parser.add_argument("--top", help="module to analyse (default: the one marked top)")
    parser.add_argument("-n", "--count", type=int, default=10,
                        help="deepest paths to list, ending in distinct signals")
    parser.add_argument("--signals", action="store_true",
                        help="list the signals along each of them")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, not {args.count}")
    try:
        with open(args.netlist) as f:
            netlist = json.load(f)
        result = logic_depth(netlist, args.top, args.count)
    except (OSError, json.JSONDecodeError, LogicDepthError) as e:
        print(f"logic_depth: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(format_depth(result), end="")
    if args.signals:
        for p in result["deepest"]:
            print(f"{p['levels']} levels to {p['to']}:\n    " + "\n    ".join(p["signals"]))


if __name__ == "__main__":
    main()
