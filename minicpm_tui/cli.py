"""Command line entry point.

Each subcommand lives in ``minicpm_tui/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``. Only the chosen subcommand's module is imported, so ``--version`` and
``--help`` stay fast and no subcommand pays for another's imports.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from minicpm_tui import __version__

# name -> one-line help. The order is the order a person meets them.
SUBCOMMANDS: dict[str, str] = {
    "doctor": "check the training environment: Python, torch, LLaMA-Factory and its templates, DeepSpeed, NVML",
    "probe": "probe the GPUs, topology, InfiniBand and host through NVML",
    "plan": "recommend ZeRO stage, offload, precision, NCCL flags and batch sizes, with the memory behind them",
    "validate": "validate a SFT / DPO / KTO dataset the way LLaMA-Factory will read it",
    "register": "register a dataset in a dataset_info.json (merge, backup, atomic)",
    "convert": "convert a dataset: OpenAI messages -> sharegpt, KTO string labels -> booleans, CSV -> JSONL",
    "generate": "write a run directory (train.yaml, ds_config.json, launch scripts) from a recipe",
    "smoke": "prove a run directory with a short real training of a tiny model on the CPU",
    "run": "launch a run directory detached (survives SSH drops)",
    "runs": "list the runs known on this machine",
    "monitor": "follow a run's progress, losses and GPUs (TUI, or --plain over SSH)",
    "stop": "stop a run gracefully, then its whole process group",
    "export": "merge a finished LoRA run's adapter into its base model, ready to serve",
}

EXIT_USAGE = 2


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minicpm-tui",
        description="From GPUs and a dataset to a live-monitored MiniCPM fine-tune with LLaMA-Factory. "
        "Without a subcommand it opens the wizard.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands:\n" + "\n".join(f"  {name:<10} {text}" for name, text in SUBCOMMANDS.items())
        + "\n\n`minicpm-tui SUBCOMMAND --help` for each one's options.",
    )
    parser.add_argument("--version", action="version", version=f"minicpm-tui {__version__}")
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse, plus a "did you mean --flag?" for a mistyped option."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            flags = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
            for word in message[len(prefix):].split():
                close = _close(word.split("=", 1)[0], flags) if word.startswith("-") else None
                if close:
                    message += f"; did you mean {close}?"
                    break
        super().error(message)


def _close(word: str, candidates: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def _error(message: str) -> None:
    print(f"minicpm-tui: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if not args_in or (args_in[0].startswith("-") and args_in[0] not in ("-h", "--help", "--version")):
        # Bare `minicpm-tui` (optionally with wizard flags) opens the TUI.
        return _dispatch("wizard", args_in)
    if args_in[0] in ("-h", "--help", "--version"):
        _top_parser().parse_args(args_in[:1])
        return 0
    name = args_in[0]
    if name not in SUBCOMMANDS:
        _top_parser().print_usage(sys.stderr)
        close = [n for n in SUBCOMMANDS if n.startswith(name[:2])] or [_close(name, list(SUBCOMMANDS)) or ""]
        hint = f"; did you mean {' or '.join(close)}?" if any(close) else "; see `minicpm-tui --help`"
        _error(f"unknown subcommand {name!r}{hint}")
        return EXIT_USAGE
    return _dispatch(name, args_in[1:])


def _dispatch(name: str, rest: list[str]) -> int:
    from minicpm_tui.core.errors import UserError

    module = importlib.import_module(f"minicpm_tui.commands.{name}")
    help_text = SUBCOMMANDS.get(name, "open the wizard")
    parser = _Parser(prog=f"minicpm-tui {name}" if name != "wizard" else "minicpm-tui",
                                     description=help_text[:1].upper() + help_text[1:] + ".")
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        _error(exc.one_line())
        return exc.exit_code
    except OSError as exc:
        if exc.filename is None or isinstance(exc, BrokenPipeError) or os.environ.get("MINICPM_TUI_DEBUG"):
            return _internal_error(name, exc)
        # A path the person gave cannot be used (permission, a file where a folder should be, a full disk).
        from minicpm_tui.core.errors import os_error

        user = os_error(exc)
        _error(user.one_line())
        return user.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug of ours: still one line, with a way to see more
        return _internal_error(name, exc)


def _internal_error(name: str, exc: Exception) -> int:
    if isinstance(exc, BrokenPipeError):
        # `minicpm-tui runs | head`: the reader left; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if os.environ.get("MINICPM_TUI_DEBUG"):
        raise exc
    _error(f"internal error in `{name}`: {type(exc).__name__}: {exc} "
           "(rerun with MINICPM_TUI_DEBUG=1 for the traceback, and please report it)")
    return 70


if __name__ == "__main__":
    sys.exit(main())
