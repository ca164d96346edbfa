"""The staff app's users: a TOML file of names, roles and password hashes, and the demo users of ``make run``.

``<web_dir>/users.toml`` (``PM_WEB_DIR``, default ``<data>/web``, git-ignored) holds one table per user::

    [users.anna]
    role = "manager"
    password = "scrypt:32768:8:1$...$..."   # werkzeug's salted scrypt hash, never the password

Roles, each including the ones before it:

- ``viewer``: campaigns, runs and readouts;
- ``manager`` (campaign manager): also the campaign builder, list previews and downloads without contact details,
  and the audit page;
- ``privileged``: also lists with contact details (names, phones, e-mails), each download audited.

The file is written whole, atomically, mode 0600. :func:`ensure_demo_users` gives ``make run`` one user per role
with generated passwords, written in plain text to ``demo-passwords.txt`` (0600) beside it, only when the file has
no users yet (it never changes a password someone set).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROLES = ("viewer", "manager", "privileged")
ROLE_TEXT = {
    "viewer": "viewer (results)",
    "manager": "campaign manager (builder, lists without contact details)",
    "privileged": "privileged (lists with contact details)",
}
USERS_FILE = "users.toml"
DEMO_PASSWORDS_FILE = "demo-passwords.txt"
DEMO_USERS = {"viewer": "viewer", "manager": "manager", "privileged": "privileged"}  # name -> role
MIN_PASSWORD_LENGTH = 10
_NAME = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")
# A hash to check against when the name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH: str | None = None


class UsersError(ValueError):
    """The users file or a user's entry cannot be used: one line naming the file, the user and the problem."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str

    def may(self, role: str) -> bool:
        """True when this user's role includes ``role`` (viewer < manager < privileged)."""
        return ROLES.index(self.role) >= ROLES.index(role)


def users_path(web_dir: Path) -> Path:
    return Path(web_dir) / USERS_FILE


def load_users(path: Path) -> dict[str, User]:
    """The users of ``path`` by name; an absent file has none. UsersError naming the file and the entry when an
    entry lacks its role or hash, or has an unknown role."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsersError(f"{path}: not valid TOML ({exc})") from None
    users: dict[str, User] = {}
    for name, entry in (data.get("users") or {}).items():
        if not isinstance(entry, dict):
            raise UsersError(f"{path}: users.{name} must be a table with role and password")
        role, hashed = entry.get("role"), entry.get("password")
        if role not in ROLES:
            raise UsersError(f"{path}: users.{name}.role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(hashed, str) or "$" not in hashed:
            raise UsersError(
                f"{path}: users.{name}.password must be a password hash (set it with pmp users add {name})"
            )
        users[name] = User(name, role, hashed)
    return users


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsersError(
            f"user name {name!r}: use 2-32 lower-case letters, digits, '.', '_' or '-', starting with a letter"
        )
    return name


def hash_password(password: str) -> str:
    """werkzeug's salted scrypt hash of ``password``; UsersError when it is shorter than 10 characters."""
    from werkzeug.security import generate_password_hash

    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsersError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return generate_password_hash(password, method="scrypt")


def authenticate(users: dict[str, User], name: str, password: str) -> User | None:
    """The user when ``password`` matches their hash, else None (an unknown name costs a hash check too)."""
    global _DUMMY_HASH
    from werkzeug.security import check_password_hash

    user = users.get(name)
    if user is None:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hash_password(secrets.token_hex(16))
        check_password_hash(_DUMMY_HASH, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def save_users(path: Path, users: dict[str, User]) -> None:
    """Write ``users`` to ``path`` whole: a 0600 temporary file in the same folder, then an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# The staff app's users (pmp users add NAME --role ROLE). Hashes only; never commit this file.",
        "",
    ]
    for user in sorted(users.values(), key=lambda u: u.name):
        lines += [
            f"[users.{user.name}]",
            f"role = {json.dumps(user.role)}",
            f"password = {json.dumps(user.password_hash)}",
            "",
        ]
    _write_private(path, "\n".join(lines))


def add_user(path: Path, name: str, role: str, password: str) -> User:
    """Add ``name`` with ``role`` and ``password`` (hashed) to the users file, or replace their role and password."""
    if role not in ROLES:
        raise UsersError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    users = load_users(path)
    users[check_name(name)] = User(name, role, hash_password(password))
    save_users(path, users)
    return users[name]


def ensure_demo_users(web_dir: Path) -> tuple[Path, list[str]]:
    """One user per role (``viewer``, ``manager``, ``privileged``) with generated passwords, written in plain text
    to ``demo-passwords.txt`` (0600) beside the users file, when that file has no users yet. Returns the
    passwords file and the names created (empty when users already existed)."""
    web_dir = Path(web_dir)
    path = users_path(web_dir)
    passwords = web_dir / DEMO_PASSWORDS_FILE
    if load_users(path):
        return passwords, []
    chosen = {name: secrets.token_urlsafe(12) for name in DEMO_USERS}
    users = {name: User(name, role, hash_password(chosen[name])) for name, role in DEMO_USERS.items()}
    text = [
        "# Demo users of the staff app (made by make run). Change them with pmp users add NAME --role ROLE.",
        "",
    ]
    text += [f"{name:<11} {chosen[name]}   role: {ROLE_TEXT[role]}" for name, role in DEMO_USERS.items()]
    _write_private(passwords, "\n".join(text) + "\n")
    save_users(path, users)
    return passwords, list(users)


def session_key(web_dir: Path, configured: str = "") -> bytes:
    """The key that signs session cookies and CSRF tokens: ``configured`` (PM_WEB_SECRET_KEY) when set, else
    ``<web_dir>/secret_key``, generated (32 random bytes, 0600) on first use."""
    if configured:
        return configured.encode("utf-8")
    path = Path(web_dir) / "secret_key"
    if not path.is_file():
        with contextlib.suppress(FileExistsError):  # another app process made it first: use theirs
            _write_private(path, secrets.token_hex(32), exclusive=True)
    return path.read_text(encoding="ascii").strip().encode("ascii")


def _write_private(path: Path, text: str, exclusive: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    partial = path.parent / f".{path.name}.{secrets.token_hex(4)}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
