"""The ``pmp`` command line: a thin layer over the stage functions and the jobs, one sub-command per stage.

Every command that reads the lake takes ``--data DIR`` (default: ``PM_DATA_DIR`` or ``./data`` in the project).
Exit codes: 0 success, 1 a data-quality gate or a stage failed, 2 bad arguments.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pipelines.cli.parser import build_parser
from pipelines.config import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``pmp`` command; returns its exit code (0 success, 1 failed, 2 bad arguments or inputs)."""
    args = build_parser().parse_args(argv)
    settings = load_settings()
    try:
        return args.func(args, settings)
    except (ValueError, FileNotFoundError, LookupError) as exc:
        print(f"pmp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"pmp {args.command}: failed: {exc}", file=sys.stderr)
        return 1
