"""The ``pmp`` command line: a thin layer over the stage functions and the jobs, one sub-command per stage.

Every command that reads the lake takes ``--data DIR`` (default: ``PM_DATA_DIR`` or ``./data`` in the project).
Exit codes: 0 success, 1 a data-quality gate or a stage failed (a database or MLflow store that cannot be used,
a full disk or a read-only folder included), 2 bad arguments or inputs (a bad ``PM_*`` setting, a bad spec).
Errors are one line, never a traceback.
"""

from __future__ import annotations

import errno
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
    except OSError as exc:
        # A full disk, a read-only or foreign folder: one line naming the path and the cause.
        print(f"pmp {args.command}: failed: {os_error(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        # A database error the store did not translate: still one line naming the (masked) URL.
        if settings is None or not type(exc).__module__.startswith("sqlalchemy"):
            raise
        from pipelines.campaigns.store_schema import database_error

        print(f"pmp {args.command}: failed: {database_error(settings.database_url, exc)}", file=sys.stderr)
        return 1


_OS_HINTS = {
    errno.ENOSPC: "free some space and rerun",
    errno.EDQUOT: "free some space and rerun",
    errno.EROFS: "the file system is read-only: make the folder writable and rerun",
    errno.EACCES: "make the folder writable for this user and rerun",
    errno.EPERM: "make the folder writable for this user and rerun",
}


def os_error(exc: OSError) -> str:
    """One line for an OSError: the path(s) it names, the cause, and what to do when that is clear."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    cause = exc.strerror or (lines[0] if lines else type(exc).__name__)
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    hint = _OS_HINTS.get(exc.errno or 0)
    return (f"{' -> '.join(paths)}: " if paths else "") + cause + (f" ({hint})" if hint else "")
