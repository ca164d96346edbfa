"""The ``pmp`` command line: a thin layer over the stage functions and the jobs, one sub-command per stage.

Every command that reads the lake takes ``--data DIR`` (default: ``PM_DATA_DIR`` or ``./data`` in the project).
Exit codes: 0 success, 1 a data-quality gate or a stage failed (a database or MLflow store that cannot be used
included), 2 bad arguments or inputs (a bad ``PM_*`` setting, a bad spec). Errors are one line, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pipelines.cli.parser import build_parser
from pipelines.config import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``pmp`` command; returns its exit code (0 success, 1 failed, 2 bad arguments or inputs)."""
    args = build_parser().parse_args(argv)
    settings = None
    try:
        settings = load_settings()
        return args.func(args, settings)
    except (ValueError, FileNotFoundError, LookupError) as exc:
        print(f"pmp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"pmp {args.command}: failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # A database error the store did not translate: still one line naming the (masked) URL.
        if settings is None or not type(exc).__module__.startswith("sqlalchemy"):
            raise
        from pipelines.campaigns.store_schema import database_error

        print(f"pmp {args.command}: failed: {database_error(settings.database_url, exc)}", file=sys.stderr)
        return 1
