"""``pmp serve``: the staff app under waitress, a production WSGI server, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

from collections.abc import Callable

from pipelines.config import Settings
from pipelines.web import users as users_mod

THREADS = 8


def serve(
    settings: Settings, host: str = "127.0.0.1", port: int = 8000, say: Callable[[str], None] = print
) -> None:
    """Serve the app until interrupted. Says where it listens and where its users are (or how to add some)."""
    import waitress

    from pipelines.web.app import create_app

    app = create_app(settings)
    path = users_mod.users_path(settings.web_dir)
    known = users_mod.load_users(path)
    if known:
        roles = ", ".join(f"{u.name} ({u.role})" for u in known.values())
        say(f"staff app users from {path}: {roles}")
    else:
        say(f"no users in {path} yet: add one with pmp users add NAME --role viewer|manager|privileged")
    shown = f"[{host}]" if ":" in host else host
    say(f"staff app on http://{shown}:{port}/ (Ctrl-C stops it)")
    waitress.serve(app, host=host, port=port, threads=THREADS, ident="pmp", _quiet=True)
