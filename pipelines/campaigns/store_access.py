"""Who may read what in the campaign database on PostgreSQL: the staff and contact group roles and their grants.

The schema step (:func:`pipelines.campaigns.store_schema.ensure_schema`) calls :func:`ensure_access`, which makes
sure of, in the schema the tables live in (``current_schema()``)::

    staff role   (PM_STAFF_ROLE, default pmp_staff)     USAGE on the schema; SELECT on campaign_runs,
                 campaign_targets, campaign_exclusions, campaign_segments, campaign_results, model_monitoring,
                 campaign_decisions;
                 INSERT on list_exports;
                 SELECT and INSERT on campaign_spec_history (the staff app's campaign form records its edits)
    contact role (PM_CONTACT_ROLE, default pmp_contact) all of the staff role's, plus INSERT and SELECT on
                 contact_exports and SELECT on list_exports

Both are NOLOGIN group roles: people log in as their own roles and are made members (``GRANT pmp_contact TO
alice``). Nothing else is granted: neither role may write the campaign tables nor update or delete an audit row,
and the staff role cannot see ``contact_exports`` at all. Contact details themselves are not in the database
(they are joined from the lake at export time): the contact role is what ``pmp lists export --with-contact``
requires (:mod:`pipelines.campaigns.contact_export`).

Idempotent and cheap when everything is in place (two catalogue queries, nothing written). Roles are global to
the cluster: a role that already exists (whoever created it) is used as it is. A connecting user that may not
create roles (no CREATEROLE) or may not grant on the tables (not their owner) does not fail the step: what it
could not do is said once per process in one warning line, and contact exports are refused until an
administrator has done it.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import bindparam, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

STAFF_TABLES = (
    "campaign_runs",
    "campaign_targets",
    "campaign_exclusions",
    "campaign_segments",
    "campaign_results",
    "model_monitoring",
    "campaign_decisions",
)
_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_log = logging.getLogger(__name__)
_warned: set[str] = set()


def configured_roles() -> tuple[str, str]:
    """(staff role, contact role) of the settings (``PM_STAFF_ROLE``, ``PM_CONTACT_ROLE``)."""
    from pipelines.config import load_settings

    settings = load_settings()
    return settings.staff_role, settings.contact_role


def wanted_privileges(staff_role: str, contact_role: str) -> list[tuple[str, str, str]]:
    """(role, table, privilege) triples the two roles must have; anything else they must not be given."""
    wanted = []
    for role in (staff_role, contact_role):
        wanted += [(role, table, "SELECT") for table in STAFF_TABLES]
        wanted.append((role, "list_exports", "INSERT"))
        wanted += [(role, "campaign_spec_history", "SELECT"), (role, "campaign_spec_history", "INSERT")]
    wanted += [
        (contact_role, "contact_exports", "INSERT"),
        (contact_role, "contact_exports", "SELECT"),
        (contact_role, "list_exports", "SELECT"),
    ]
    return wanted


def ensure_access(conn: Connection, staff_role: str, contact_role: str) -> None:
    """Create the two roles if missing and grant them what :func:`wanted_privileges` lists and they lack, in the
    schema of the tables; see the module docstring for what happens when the connecting user may not."""
    for role in (staff_role, contact_role):
        if not _ROLE_NAME.match(role):
            raise ValueError(f"role name {role!r} is not a plain PostgreSQL identifier (letters, digits, _)")
    roles = _create_missing_roles(conn, [staff_role, contact_role])
    if not roles:
        return
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    quote = conn.dialect.identifier_preparer.quote
    wanted = [(r, t, p) for r, t, p in wanted_privileges(staff_role, contact_role) if r in roles]
    missing = _missing(conn, schema, wanted, roles)
    for role, table, privilege in missing:
        on = f"SCHEMA {quote(schema)}" if table is None else f"TABLE {quote(schema)}.{quote(table)}"
        try:
            # A user that is not the owner gets a warning (some privilege) or an error (none): neither fails the step.
            with conn.begin_nested():
                conn.exec_driver_sql(f"GRANT {privilege} ON {on} TO {quote(role)}")
        except sa_exc.DBAPIError:
            pass
    if missing and (still := _missing(conn, schema, wanted, roles)):
        who = conn.execute(text("SELECT current_user")).scalar_one()
        listed = ", ".join(f"{p} on {t or 'schema ' + schema} to {r}" for r, t, p in still[:4])
        more = f" and {len(still) - 4} more" if len(still) > 4 else ""
        _warn_once(
            conn,
            f"{who} may not grant {listed}{more} in schema {schema}: run the schema step as the tables' owner",
        )


def _missing(
    conn: Connection, schema: str, wanted: list[tuple[str, str, str]], roles: list[str]
) -> list[tuple[str, str | None, str]]:
    """The schema USAGE and table privileges of ``wanted`` the roles do not have (one query)."""
    checks = [(r, None, "USAGE") for r in roles] + list(wanted)
    values = ", ".join(f"(:r{i}, :t{i}, :p{i})" for i in range(len(checks)))
    params = {}
    for i, (role, table, privilege) in enumerate(checks):
        params.update({f"r{i}": role, f"t{i}": table or "", f"p{i}": privilege})
    query = text(
        f"SELECT r, t, p, CASE WHEN t = '' THEN has_schema_privilege(r, :schema, p) "  # noqa: S608 - bound values
        f"ELSE has_table_privilege(r, format('%I.%I', :schema, t), p) END "
        f"FROM (VALUES {values}) AS wanted(r, t, p)"
    ).bindparams(bindparam("schema", schema), **params)
    return [(r, t or None, p) for r, t, p, ok in conn.execute(query).all() if not ok]


def _create_missing_roles(conn: Connection, roles: list[str]) -> list[str]:
    """Creates those of ``roles`` that do not exist if the connecting user may; returns the ones that exist."""
    existing = set(
        conn.execute(
            text("SELECT rolname FROM pg_roles WHERE rolname IN :names").bindparams(
                bindparam("names", expanding=True)
            ),
            {"names": roles},
        ).scalars()
    )
    missing = [r for r in roles if r not in existing]
    if not missing:
        return roles
    who, may = conn.execute(
        text("SELECT rolname, rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
    ).one()
    if not may:
        commands = "; ".join(f"CREATE ROLE {r} NOLOGIN" for r in missing)
        _warn_once(
            conn,
            f"roles {', '.join(missing)} do not exist and {who} may not create roles (no CREATEROLE): no grants "
            f"for them, and contact exports are refused until an administrator creates them ({commands}) and "
            "the schema step runs again",
        )
        return [r for r in roles if r in existing]
    quote = conn.dialect.identifier_preparer.quote
    for role in missing:
        try:
            with conn.begin_nested():
                conn.exec_driver_sql(f"CREATE ROLE {quote(role)} NOLOGIN")
        except (sa_exc.ProgrammingError, sa_exc.IntegrityError) as exc:
            # Another schema step of the same cluster created it meanwhile (roles are cluster-wide).
            if getattr(exc.orig, "sqlstate", None) not in ("42710", "23505"):
                raise
    return roles


def _warn_once(conn: Connection, message: str) -> None:
    from pipelines.campaigns.store_schema import safe_url

    line = f"campaign database {safe_url(conn.engine)}: {message}"
    if line not in _warned:
        _warned.add(line)
        _log.warning(line)
