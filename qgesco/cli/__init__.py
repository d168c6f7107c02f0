"""The ``qgesco`` command: a thin argparse front over the library.

Each verb lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func``; the modules are found by name, so adding a
verb never touches this file. Library errors that describe bad input (``ValueError``,
missing files) are printed as one line without a traceback; set ``QGESCO_DEBUG=1`` to
see the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

#: The order verbs appear in ``--help``: the story the code tells.
STORY = ("info", "fetch_weights", "data", "transmit", "train", "calibrate", "quantize", "export", "sample", "evaluate", "compare", "bench", "demo")


def _verb_modules() -> list[str]:
    found = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return sorted(found, key=lambda n: (STORY.index(n) if n in STORY else len(STORY), n))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qgesco",
        description="Quantized generative semantic communication: transmit semantic maps, regenerate images with a (quantized) diffusion model.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for name in _verb_modules():
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, RuntimeError) as e:
        if os.environ.get("QGESCO_DEBUG"):
            raise
        print(f"qgesco {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
