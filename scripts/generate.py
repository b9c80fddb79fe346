"""Generate the Verilog of one configuration: ``<name>.v`` and ``<name>.json`` side by side.

    python -m scripts.generate --preset default -o build/
    python -m scripts.generate --preset large --rows 12 --name big12 -o build/
"""

from sim.toolchain import TOPS, generate

from .cli import ArgumentParser, add_config_args, config_from_args


def main(argv=None):
    parser = ArgumentParser(prog="generate", description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("-o", "--output", default="build", help="output folder")
    parser.add_argument("--top", default="accelerator", choices=sorted(TOPS),
                        help="block to generate (default: %(default)s)")
    args = parser.parse_args(argv)
    cfg = config_from_args(parser, args)
    path = generate(cfg, args.output, args.top)
    print(f"wrote {path} and {path.with_suffix('.json')} "
          f"({cfg.rows}x{cfg.cols}, {cfg.in_width}-bit {'signed' if cfg.in_signed else 'unsigned'}"
          f" inputs, {cfg.acc_width}-bit accumulators)")


if __name__ == "__main__":
    main()
