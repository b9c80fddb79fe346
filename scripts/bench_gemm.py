"""GEMM benchmark: cycles, MAC utilization and the roofline bound of a sweep of shapes on the
accelerator's Verilog fed by the HBM model. Prints a table, writes JSON and a roofline plot.

    python -m scripts.bench_gemm -o build/bench           # default and large presets
    python -m scripts.bench_gemm --preset large --gemm 256x256x256 --gemm 512x512x128
    python -m scripts.bench_gemm --preset large --gemm 64x64x64 --trace   # where cycles go

With ``--trace`` each GEMM's memory-port and engine activity is printed as phases (channel or
engine event, region, first and last cycle from START, handshakes) and kept in the JSON: the
AR, R, AW, W and B handshakes, the LOADs, MATMULs and STOREs the engines take, and the result
rows going into the accumulator (the traced build makes the internal signals readable, which
costs a build of its own).
"""

import json
from pathlib import Path

from hw.config import PRESETS

from .cli import ArgumentParser
from .gemm_run import SHAPE_HELP, parse_shape, run_gemms, summary

SWEEP = ["64x64x64", "128x128x128", "256x256x256", "512x128x256", "128x512x128",
         "256x64x512", "256x256x256:os"]


def table(rows):
    head = (f"{'preset':8} {'shape':>13} {'flow':4} {'exact':5} {'cycles':>8} {'ideal':>8} "
            f"{'util%':>6} {'roof%':>6} {'B/cyc':>6} {'load%':>6} {'store%':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['preset']:8} {r['shape']:>13} {r['dataflow']:4} "
            f"{'yes' if r['bit_exact'] else 'NO':5} {r['cycles']:>8} {r['ideal_cycles']:>8.0f} "
            f"{100 * r['utilization']:>6.1f} {100 * r['of_roofline']:>6.1f} "
            f"{r['bytes_per_cycle']:>6.1f} {100 * r['engine_busy']['LOAD']:>6.1f} "
            f"{100 * r['engine_busy']['STORE']:>6.1f}")
    return "\n".join(lines)


def format_phases(r):
    lines = [f"{r['shape']} {r['dataflow']}: {r['cycles']} cycles; memory-port and engine "
             f"phases (cycles from START)"]
    lines += [f"  {ch.upper():7} {region or '':8} {first:>8} .. {last:<8} {count:>6}"
              for ch, region, first, last, count in r["phases"]]
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for preset in sorted({r["preset"] for r in rows}):
        cfg = PRESETS[preset]
        sel = [r for r in rows if r["preset"] == preset]
        ai = [r["intensity"] for r in sel]
        lo, hi = min(ai) / 2, max(ai) * 2
        bw = cfg.mem_ports * cfg.port_bytes
        xs = [lo * (hi / lo) ** (i / 99) for i in range(100)]
        line = ax.plot(xs, [min(cfg.macs, bw * x) for x in xs], label=f"{preset} roofline")
        ax.scatter(ai, [r["macs_per_cycle"] for r in sel], color=line[0].get_color(),
                   label=f"{preset} measured")
        for r in sel:
            ax.annotate(r["shape"] + ("/os" if r["dataflow"] == "OS" else ""),
                        (r["intensity"], r["macs_per_cycle"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (MACs per byte of compulsory traffic)")
    ax.set_ylabel("MACs per cycle")
    ax.set_title("GEMM on the accelerator, HBM model")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = ArgumentParser(prog="bench_gemm", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS),
                        help="preset to run (repeatable; default: default and large)")
    parser.add_argument("--gemm", action="append", help=f"{SHAPE_HELP} (repeatable; "
                        f"default: {' '.join(SWEEP)})")
    parser.add_argument("--timing", default="HBM2_2000",
                        choices=["HBM2_2000", "HBM3_6400", "ideal"])
    parser.add_argument("--no-refresh", dest="refresh", action="store_false",
                        help="HBM model without refresh: cycle counts that do not depend on "
                        "where the refreshes fall, for comparing two designs")
    parser.add_argument("--trace", action="store_true",
                        help="record and print each GEMM's memory-port and engine phases")
    parser.add_argument("-o", "--output", default="build/bench", help="output folder")
    args = parser.parse_args(argv)
    try:
        shapes = [parse_shape(s) for s in (args.gemm or SWEEP)]
    except ValueError as e:
        parser.error(f"--gemm: {e}")
    presets = args.preset or ["default", "large"]

    rows = []
    for preset in presets:
        cfg = PRESETS[preset]
        report = run_gemms(cfg, shapes, args.timing, trace=args.trace, refresh=args.refresh)
        for g in report["gemms"]:
            rows.append({"preset": preset, **summary(report["config"], g)})
            if args.trace:
                print(format_phases(rows[-1]), flush=True)
        print(table([r for r in rows if r["preset"] == preset]), flush=True)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gemm.json").write_text(json.dumps(
        {"timing": args.timing, "refresh": args.refresh, "results": rows}, indent=1))
    plot(rows, out / "gemm_roofline.png")
    print()
    print(table(rows))
    print(f"wrote {out / 'gemm.json'} and {out / 'gemm_roofline.png'}")


if __name__ == "__main__":
    main()
