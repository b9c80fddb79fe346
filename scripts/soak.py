"""Randomized regression of the accelerator's Verilog: seeded random GEMM programs, some
corrupted by bit flips, under random backpressure and HBM reordering (see ``sim/soak.py``).

    python -m scripts.soak -n 200                       # tiny preset, seeds 1 .. 200
    python -m scripts.soak --preset default -n 50 --seed 1000 --stall 0.4
"""

import json
import tempfile
import time
from pathlib import Path

from sim.toolchain import run

from .cli import ArgumentParser, add_config_args, config_from_args


def soak(cfg, n, seed, *, max_dim=24, corrupt=0.5, abort=0.1, stall=0.2,
         timing="HBM2_2000"):
    """Run the regression in one simulation; return its summary (see ``sim.tb_soak``)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "soak.json"
        env = {"SOAK_SEED": str(seed), "SOAK_N": str(n), "SOAK_MAX_DIM": str(max_dim),
               "SOAK_CORRUPT": str(corrupt), "SOAK_ABORT": str(abort),
               "SOAK_STALL": str(stall), "TB_TIMING": timing,
               "SOAK_OUT": str(out)}
        try:
            run(cfg, "sim.tb_soak", testcase="soak", top="accelerator", env=env)
        except AssertionError as e:
            if not out.exists():
                raise
            report = json.loads(out.read_text())
            report["error"] = str(e).splitlines()[0]
            return report
        return json.loads(out.read_text())


def main(argv=None):
    parser = ArgumentParser(prog="soak", description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.set_defaults(preset="tiny")
    parser.add_argument("-n", type=int, default=100, help="programs (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="first seed (default %(default)s)")
    parser.add_argument("--max-dim", type=int, default=24, help="largest M, K, N")
    parser.add_argument("--corrupt", type=float, default=0.5,
                        help="share of programs with bit flips (default %(default)s)")
    parser.add_argument("--abort", type=float, default=0.1,
                        help="share of runs cut short by SOFT_RESET (default %(default)s)")
    parser.add_argument("--stall", type=float, default=0.2,
                        help="random stall probability on every AXI channel")
    parser.add_argument("--timing", default="HBM2_2000",
                        choices=["HBM2_2000", "HBM3_6400", "ideal"])
    parser.add_argument("-o", "--output", default="build/soak", help="output folder")
    args = parser.parse_args(argv)
    cfg = config_from_args(parser, args)
    for name, value, ok, allowed in (
            ("-n", args.n, args.n >= 1, "at least 1"),
            ("--seed", args.seed, args.seed >= 0, "at least 0"),
            ("--max-dim", args.max_dim, args.max_dim >= 1, "at least 1"),
            ("--corrupt", args.corrupt, 0 <= args.corrupt <= 1, "from 0 to 1"),
            ("--abort", args.abort, 0 <= args.abort <= 1, "from 0 to 1"),
            ("--stall", args.stall, 0 <= args.stall < 1, "from 0 to below 1")):
        if not ok:
            parser.error(f"{name} must be {allowed}, not {value}")

    print(f"[soak] {cfg.name}: {args.n} programs, seeds {args.seed} .. "
          f"{args.seed + args.n - 1}, {100 * args.corrupt:.0f}% corrupted, "
          f"{100 * args.abort:.0f}% aborted, stall "
          f"{args.stall}, {args.timing}")
    t0 = time.monotonic()
    report = soak(cfg, args.n, args.seed, max_dim=args.max_dim, corrupt=args.corrupt,
                  abort=args.abort, stall=args.stall, timing=args.timing)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"soak-{cfg.name}-{args.seed}.json").write_text(json.dumps(report, indent=1))
    print(f"[soak] programs run: {report['programs']} ({report['valid']} valid, "
          f"{report['corrupted']} corrupted, {report['aborted']} cut short by SOFT_RESET) in "
          f"{time.monotonic() - t0:.0f} s, "
          f"{report['cycles']} accelerator cycles")
    print(f"[soak] outcomes: {report['exact']} bit-exact, {report['errors']} refused with the "
          f"model's error, {report['clean']} corruptions whose outcome the ISA leaves open (tokens "
          f"changed, a race, rows never written) ended cleanly")
    print(f"[soak] error codes seen: {report['error_codes']}")
    print(f"[soak] mismatches: {report['mismatches']}")
    for line in report.get("failures", [])[:20]:
        print(f"[soak]   {line}")
    print(f"[soak] seeds used: {report['seeds'][0]} .. {report['seeds'][1]}")
    if report["mismatches"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
