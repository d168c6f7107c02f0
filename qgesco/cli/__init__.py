"""The ``qgesco`` command: a thin argparse front over the library.

Each verb lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func``; the modules are found by name, so adding a
verb never touches this file. Every error is printed as one line (plus at most a hint line)
on stderr with exit status 2, never as a traceback: errors that describe bad input
(``ValueError``, missing files) as they are, anything else with its type and a hint. Set
``QGESCO_DEBUG=1`` or pass ``--debug`` to see the traceback (the exit status stays 2). Usage
errors are one line plus a hint too, not argparse's usage block.

Verbs that compute run one torch thread per usable core with sleeping OpenMP waits
(:mod:`qgesco.runtime.threads`), shown as ``threads=N`` in their progress bars; ``--threads``
(train: the config field) overrides.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
import traceback
import warnings

from qgesco.runtime.threads import passive_wait

passive_wait()  # before any verb imports torch

#: The order verbs appear in ``--help``: the story the code tells.
STORY = (
    "info",
    "fetch_weights",
    "data",
    "transmit",
    "train",
    "calibrate",
    "quantize",
    "export",
    "sample",
    "evaluate",
    "compare",
    "train_jscc",
    "bench",
    "demo",
)


def _verb_modules() -> list[str]:
    found = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return sorted(found, key=lambda n: (STORY.index(n) if n in STORY else len(STORY), n))


#: Verbs that only read files or metadata: they take no --threads.
_LIGHT = ("info", "data", "fetch-weights")


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error as one line plus a hint, like every other error, and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\nhint: see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="qgesco",
        description="Quantized generative semantic communication: transmit semantic maps, regenerate images with a "
        "(quantized) diffusion model.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (also: QGESCO_DEBUG=1)"
    )
    parser.add_argument(
        "--require-digest",
        action="store_true",
        help="refuse files that carry no qgesco digest (published .pt checkpoints, files from before digests) "
        "instead of loading them with a warning (also: QGESCO_REQUIRE_DIGEST=1)",
    )
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for name in _verb_modules():
        importlib.import_module(f"{__name__}.{name}").register(sub)
    for verb, p in sub.choices.items():
        p.set_defaults(parser=p)
        if verb not in _LIGHT and "--threads" not in p._option_string_actions:
            p.add_argument("--threads", type=int, help="torch CPU threads (default: one per usable core)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # refused by the verb's parser, so that the hint names the verb's --help
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from ..fileio import digests_required

    warnings.formatwarning = _one_line_warning
    try:
        if args.verb not in _LIGHT:
            _set_threads(args)
        with digests_required() if args.require_digest else contextlib.nullcontext():
            return int(args.func(args) or 0)
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place that turns every error into one line
        if args.debug or os.environ.get("QGESCO_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        print(f"qgesco {args.verb}: error: {_describe(e)}", file=sys.stderr)
        return 2


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"qgesco: warning: {message}\n"


def _set_threads(args: argparse.Namespace) -> None:
    """torch's thread count for this verb: ``--threads`` if given, else one per usable core (the progress
    bars show it as ``threads=N``)."""
    import torch

    from qgesco import validate
    from qgesco.runtime.threads import choose_threads

    if getattr(args, "field_threads", None) is not None:
        return  # train --threads: a config field, which the trainer sets
    requested = getattr(args, "threads", None)
    if requested is not None:
        validate.finite_number("--threads", requested, low=1, integer=True)
    torch.set_num_threads(choose_threads(requested))


#: Errors whose message is written for the user; anything else is named with its type.
_USER_ERRORS = (ValueError, OSError, RuntimeError)


def _describe(e: Exception) -> str:
    if isinstance(e, ModuleNotFoundError):
        extra = "onnx" if (e.name or "").split(".")[0] in ("onnx", "onnxruntime", "onnxscript") else None
        fix = f"pip install 'qgesco[{extra}]'" if extra else f"pip install {e.name}"
        return f"this needs the optional package {e.name!r}, which is not installed\nhint: {fix}"
    text = str(e).strip() or type(e).__name__
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        text = f"{e.filename}: {e.strerror}"
    if isinstance(e, _USER_ERRORS):
        return text
    hint = "hint: unexpected; rerun with --debug for the traceback and report it"
    return f"{type(e).__name__}: {text.splitlines()[0]}\n{hint}"


if __name__ == "__main__":
    sys.exit(main())
