"""The staff app's Flask application: sign-in, roles, CSRF, the Jinja2 set-up and the error pages.

:func:`create_app` builds it over one :class:`~pipelines.config.Settings` (the campaign database, the run folders,
the MLflow registry, the campaign specs) and the users file (:mod:`pipelines.web.users`). Pages are server-rendered
from ``templates/web/*.html.j2`` with the same Jinja2 options as the report files (autoescaped HTML, undefined names
fail); the run page includes the readout report's own body template.

Security: sessions are signed cookies (HttpOnly, SameSite=Lax, 8 hours); every POST carries a CSRF token checked by
Flask-WTF's ``CSRFProtect``; each page checks the signed-in user's role (:func:`requires`); database and service
errors become a one-line error page, never a traceback.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask, abort, flash, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from pipelines.config import Settings
from pipelines.templating import TEMPLATES_DIR
from pipelines.web import users as users_mod

SESSION_HOURS = 8


class _App(Flask):
    # Flask autoescapes only .html/.htm/.xml names; the project's HTML templates end in .html.j2.
    def select_jinja_autoescape(self, filename: str | None) -> bool:
        return filename is None or filename.endswith((".html.j2", ".html", ".css.j2"))


def create_app(settings: Settings, *, testing: bool = False) -> Flask:
    """The staff app over ``settings``. The users file is read at each sign-in, so ``pmp users add`` takes effect
    without a restart."""
    import jinja2

    app = _App(__name__, template_folder=str(TEMPLATES_DIR), static_folder=None)
    app.jinja_options = {
        **app.jinja_options,
        "undefined": jinja2.StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
    }
    app.config.update(
        SECRET_KEY=users_mod.session_key(settings.web_dir, settings.web_secret_key),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="pmp_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600,
        MAX_CONTENT_LENGTH=1_000_000,
        TESTING=testing,
    )
    app.extensions["pmp_settings"] = settings
    CSRFProtect(app)

    from pipelines.web import builder, lists, monitoring, pages

    app.register_blueprint(pages.blueprint)
    app.register_blueprint(lists.blueprint)
    app.register_blueprint(builder.blueprint)
    app.register_blueprint(monitoring.blueprint)
    _add_sign_in(app)
    _add_error_pages(app)
    app.jinja_env.globals.update(role_text=users_mod.ROLE_TEXT)
    app.jinja_env.filters.update(count=_count, pct=_pct)

    @app.before_request
    def _timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
        )
        if "started" in g:
            response.headers["Server-Timing"] = f"app;dur={1000 * (time.perf_counter() - g.started):.1f}"
        return response

    return app


def settings_of() -> Settings:
    from flask import current_app

    return current_app.extensions["pmp_settings"]


def current_user() -> users_mod.User | None:
    """The signed-in user (re-read from the users file, so a removed user or a changed role applies at once)."""
    if "user" in g:
        return g.user
    name = session.get("user")
    user = None
    if name:
        user = users_mod.load_users(users_mod.users_path(settings_of().web_dir)).get(name)
    g.user = user
    return user


def requires(role: str) -> Callable:
    """A view decorator: sign in first (redirect to the sign-in page), then a role at least ``role`` (403)."""

    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any):
            user = current_user()
            if user is None:
                return redirect(url_for("sign_in", next=request.full_path.rstrip("?")))
            if not user.may(role):
                abort(403, f"{users_mod.ROLE_TEXT[role].split(' (')[0]} role needed; you are {user.role}")
            return view(*args, **kwargs)

        return guarded

    return wrap


def _add_sign_in(app: Flask) -> None:
    @app.route("/login", methods=["GET", "POST"], endpoint="sign_in")
    def sign_in():
        error = None
        if request.method == "POST":
            name = request.form.get("username", "").strip().lower()
            found = users_mod.load_users(users_mod.users_path(settings_of().web_dir))
            user = users_mod.authenticate(found, name, request.form.get("password", ""))
            if user is not None:
                session.clear()
                session.permanent = True
                session["user"] = user.name
                target = request.args.get("next", "")
                # Only a path on this site: never an open redirect.
                if not target.startswith("/") or target.startswith("//"):
                    target = url_for("pages.campaigns")
                return redirect(target)
            error = "Wrong user name or password."
        no_users = not users_mod.load_users(users_mod.users_path(settings_of().web_dir))
        return render_template("web/login.html.j2", error=error, no_users=no_users, user=None), (
            401 if error else 200
        )

    @app.route("/logout", methods=["POST"])
    def sign_out():
        session.clear()
        flash("Signed out.")
        return redirect(url_for("sign_in"))

    @app.context_processor
    def _user() -> dict:
        return {"user": current_user()}


def _add_error_pages(app: Flask) -> None:
    from werkzeug.exceptions import HTTPException

    from pipelines.campaigns.store_schema import CampaignDBError

    def page(status: int, title: str, message: str):
        return render_template("web/error.html.j2", status=status, title=title, message=message), status

    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError):
        return page(
            400, "Form expired or forged", f"{error.description} Reload the page and submit it again."
        )

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        return page(error.code or 500, error.name, error.description or "")

    @app.errorhandler(CampaignDBError)
    def _database(error: CampaignDBError):
        return page(503, "Campaign database unavailable", str(error).splitlines()[0])

    @app.errorhandler(users_mod.UsersError)
    def _users(error: users_mod.UsersError):
        return page(500, "Users file unusable", str(error))


def _count(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "–"


def _pct(value: Any, digits: int = 1) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if number != number else f"{100 * number:.{digits}f} %"
