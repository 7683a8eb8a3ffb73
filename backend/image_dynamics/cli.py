"""``image-dynamics``: one console script, one module per subcommand under ``commands/``."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import UserError

# Each module defines ``register(subparsers)``, which adds its parser and sets ``func``.
COMMANDS = (
    "synth",
    "extract",
    "evaluate_extraction",
    "demo",
    "serve",
    "keys",
    "predict",
    "animate",
    "export_onnx",
    "evaluate",
    "evaluate_renderer",
    "evaluate_ceilings",
    "train",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="image-dynamics",
        description="Predict how everything in a photo sways, and animate it (Generative Image Dynamics).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"image-dynamics {args.command}: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"image-dynamics {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
