"""Bounded formal proofs of the memory system: AXI4 manager rules and beat conservation.

    python -m scripts.formal [--depth N] [--only NAME ...] [-o build/formal]

Each property set is first run in cover mode (its goals must be reached within the depth, so
that its assumptions are known to let the design work), then proven to the depth. Prints one
line per property set (name, depth, PASS/FAIL, seconds, and the cycles the cover goals took),
writes each SymbiYosys project and its logs to ``<out>/<name>/`` and ``<out>/<name>_cover/``,
and a summary to ``<out>/summary.json``. Exit status 1 if any proof or cover run fails.
"""

import json
import sys
from argparse import ArgumentTypeError
from pathlib import Path

from sim.formal import DEFAULT_DEPTHS, HARNESSES, run

from .cli import ArgumentParser


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def main(argv=None):
    parser = ArgumentParser(prog="python -m scripts.formal", description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=_positive, default=None,
                        help="cycles from reset to check (default: per property set)")
    parser.add_argument("--only", action="append", choices=sorted(HARNESSES), metavar="NAME",
                        help=f"run only this property set (repeatable): {', '.join(HARNESSES)}")
    parser.add_argument("--timeout", type=_positive, default=900,
                        help="seconds per property set (default: %(default)s)")
    parser.add_argument("-o", "--out", default="build/formal", help="output folder")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    print(f"{'property set':<18} {'depth':>5}  {'result':<7} {'seconds':>8}  {'reached in':>10}")
    for name in args.only or list(HARNESSES):
        depth = args.depth or DEFAULT_DEPTHS[name]
        cover = run(HARNESSES[name](), depth=depth, build=out, timeout=args.timeout,
                    mode="cover")
        proof = run(HARNESSES[name](), depth=depth, build=out, timeout=args.timeout)
        status = proof.status if cover.passed or not proof.passed else "UNCOVERED"
        reached = f"{cover.depth}" if cover.passed else cover.status
        print(f"{name:<18} {proof.depth:>5}  {status:<7} {proof.seconds + cover.seconds:>8.1f}"
              f"  {reached:>10}", flush=True)
        for failure in proof.failures + cover.failures:
            print(f"    {failure}")
        results.append({**proof.as_dict(), "status": status, "passed": proof.passed and
                        cover.passed, "cover": cover.as_dict()})
    (out / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
