"""Bandwidth of the read and write engines on the HBM model, as a fraction of its peak.

Sweeps the number of ports, the burst length and the reads in flight (each point is its own
configuration and Verilator build), runs long sequential transfers on each, prints a table,
and writes ``hbm_bandwidth.json`` and ``hbm_bandwidth.png`` to the output folder.

    python -m scripts.bench_hbm                    # the full sweep
    python -m scripts.bench_hbm --quick            # one point per axis
    python -m scripts.bench_hbm --granule 256      # ports interleaved at 256 bytes
"""

import json
import time
from pathlib import Path

from hw.config import PRESETS
from sim.toolchain import run

from .cli import ArgumentParser


def sweep(quick):
    base = {"ports": 1, "burst_len": 16, "in_flight": 32}
    axes = {
        "ports": [1, 4] if quick else [1, 2, 4, 8],
        "burst_len": [16] if quick else [2, 4, 8, 16],
        "in_flight": [32] if quick else [1, 4, 16, 64],
    }
    points = []
    for axis, values in axes.items():
        for v in values:
            point = {**base, axis: v}
            if point not in points:
                points.append(point)
    return points


def measure(point, direction, size, timing, out_dir, granule=None):
    p, b, f = point["ports"], point["burst_len"], point["in_flight"]
    cfg = PRESETS["default"].replace(name=f"bench_p{p}_b{b}_f{f}", mem_ports=p, burst_len=b,
                                     reads_in_flight=f, axi_ids=min(4, f))
    if granule is not None:
        cfg = cfg.replace(name=f"{cfg.name}_g{granule}", interleave_bytes=granule)
    out = out_dir / f"{cfg.name}_{direction}.json"
    run(cfg, "sim.tb_bench", top=f"{direction}_engine",
        env={"BENCH_OUT": str(out), "BENCH_BYTES": str(size), "BENCH_TIMING": timing})
    return json.loads(out.read_text())


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, axis, label in zip(axes, ("ports", "burst_len", "in_flight"),
                               ("ports (16-beat bursts, 32 in flight)",
                                "burst length, beats (1 port, 32 in flight)",
                                "bursts in flight per port (1 port, 16 beats)"), strict=True):
        for direction, marker in (("read", "o"), ("write", "s")):
            pts = sorted((r[axis], r["efficiency"])
                         for r in results if r["direction"] == direction and
                         all(r[k] == v for k, v in (("ports", 1), ("burst_len", 16),
                                                    ("in_flight", 32)) if k != axis))
            if pts:
                ax.plot([x for x, _ in pts], [100 * y for _, y in pts], marker=marker,
                        label=direction)
        ax.axhline(88, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("% of the HBM model's peak")
    axes[0].set_ylim(0, 100)
    axes[0].legend()
    fig.suptitle("Engine bandwidth on the HBM2-2000 model, sequential transfers")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = ArgumentParser(prog="bench_hbm", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one point per axis")
    parser.add_argument("--bytes", type=int, default=1 << 20,
                        help="bytes per transfer (two transfers per point; default 1 MiB)")
    parser.add_argument("--timing", default="HBM2_2000",
                        choices=["HBM2_2000", "HBM3_6400", "ideal"])
    parser.add_argument("--granule", type=int, default=None,
                        help="address interleave granule in bytes (default: one port word)")
    parser.add_argument("-o", "--output", default="build/bench", help="output folder")
    args = parser.parse_args(argv)
    if args.bytes < 1:
        parser.error(f"--bytes must be at least 1, not {args.bytes}")
    if args.granule is not None:
        try:
            PRESETS["default"].replace(interleave_bytes=args.granule)
        except ValueError as e:
            parser.error(str(e))
    out_dir = Path(args.output).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    results = []
    print(f"{'dir':5} {'ports':>5} {'burst':>5} {'flight':>6} {'bytes/cyc':>9} {'eff%':>6} "
          f"{'worst port%':>11} {'cycles/s':>9} {'wall s':>7}")
    for point in sweep(args.quick):
        for direction in ("read", "write"):
            t0 = time.monotonic()
            r = measure(point, direction, args.bytes, args.timing, out_dir, args.granule)
            results.append(r)
            print(f"{direction:5} {r['ports']:>5} {r['burst_len']:>5} {r['in_flight']:>6} "
                  f"{r['bytes_per_cycle']:>9.1f} {100 * r['efficiency']:>6.1f} "
                  f"{100 * min(r['port_efficiency']):>11.1f} {r['cycles_per_second']:>9.0f} "
                  f"{time.monotonic() - t0:>7.1f}", flush=True)
    (out_dir / "hbm_bandwidth.json").write_text(json.dumps(results, indent=2))
    plot(results, out_dir / "hbm_bandwidth.png")
    print(f"wrote {out_dir / 'hbm_bandwidth.json'} and {out_dir / 'hbm_bandwidth.png'}")


if __name__ == "__main__":
    main()
