"""The command line: ``limelight <verb>`` (also ``python -m orchestrator``).

One module per verb (``orchestrator/cli/<verb>.py``), each with ``DESCRIPTION``,
``add_arguments(parser)`` (flags derived from ``option()`` records by
``orchestrator.flags``) and ``run(args) -> int``. A verb's module is imported only when
that verb runs or its ``--help`` is asked for, so ``limelight leaderboard`` and
``limelight --help`` never import torch.

Exit codes: 0 done; 2 bad input, one line naming the flag (or path) and what is allowed,
before any work starts; 1 a run that failed. Bad input is an ``InputError``: a
``ConfigError`` naming its field, or a missing data set, checkpoint or optional package,
whose message says the fix. ``main`` alone turns it into exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from methods.options import ConfigError, InputError
from orchestrator.flags import flag_name

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "VERBS", "build_parser", "main"]

log = logging.getLogger("limelight")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Every verb and its line in ``limelight --help``; the code is ``orchestrator.cli.<verb>``.
VERBS: dict[str, str] = {
    "train": "train one model, then evaluate it",
    "evaluate": "attack trained checkpoints and print their accuracy",
    "explain": "explain a split with LIME over Ray actors into the mask store",
    "sweep": "search a spec's space with Ray Tune + Optuna; one leaderboard row per trial",
    "leaderboard": "query the Parquet leaderboard of a results root",
    "plot": "draw figures (PNG, TensorBoard) from the leaderboard or an LGR run",
    "shortcut": "how much each method follows a planted patch (digits_shortcut, mnist5k_decoy)",
    "report": "regenerate docs/results.md from the report's sweeps (runs what is missing)",
    "corrupt": "make CIFAR-10-C (15 corruptions x 5 severities) from a local CIFAR-10",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, no usage block: the message already names the flag and the choices.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def verb_module(verb: str) -> ModuleType:
    """The module of a verb; an unknown verb raises ``ValueError`` naming the valid ones."""
    if verb not in VERBS:
        raise ValueError(f"unknown verb {verb!r}; valid: {', '.join(VERBS)}")
    return importlib.import_module(f"orchestrator.cli.{verb}")


def build_parser(verbs: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``limelight`` parser with the full flags of ``verbs`` (default: all of them);
    every other verb is listed with its help line only."""
    parser = _Parser(
        prog="limelight",
        description="Interpretability-guided adversarial robustness experiments.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)
    full = set(VERBS if verbs is None else verbs)
    for name, help_line in VERBS.items():
        if name not in full:
            sub.add_parser(name, help=help_line, add_help=False)
            continue
        module = verb_module(name)
        verb = sub.add_parser(
            name,
            help=help_line,
            description=module.DESCRIPTION,
            epilog=getattr(module, "EPILOG", None),
            formatter_class=getattr(module, "FORMATTER", argparse.HelpFormatter),
        )
        module.add_arguments(verb)
        verb.add_argument("-v", "--verbose", action="store_true", help="log progress line by line")
        verb.set_defaults(handler=module.run)
    return parser


def _chosen_verb(argv: Sequence[str]) -> str | None:
    """The verb on the command line (the first word that is not a flag), if known."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in VERBS else None
    return None


def _one_line(error: BaseException) -> str:
    if isinstance(error, ConfigError) and error.names_a_flag:
        return f"{flag_name(error.field)}: {error.message.splitlines()[0]}"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _setup_logging(verbose: bool) -> None:
    # On a terminal the progress bar shows progress; elsewhere (ray job logs, CI) the
    # per-epoch log lines do.
    # -v also lets the libraries' INFO lines through (limelight's logger at DEBUG).
    quiet = sys.stderr.isatty() and not verbose
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if verbose:
        log.setLevel(logging.DEBUG)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = _chosen_verb(argv)
    args = build_parser([verb] if verb else []).parse_args(argv)
    verbose = getattr(args, "verbose", False)
    _setup_logging(verbose)
    prog = f"limelight {args.verb}"
    try:
        return args.handler(args)
    except Exception as error:
        if isinstance(error, InputError):
            print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
            return EXIT_USAGE
        if not isinstance(error, RuntimeError):  # a bug: its traceback is the report
            raise
        # A run that failed (a NaN loss, a Ray Train job, a torch error).
        log.debug("run failed", exc_info=True)
        hint = "" if verbose else " (run with -v for the traceback)"
        print(f"{prog}: failed: {_one_line(error)}{hint}", file=sys.stderr)
        if verbose:
            raise
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
