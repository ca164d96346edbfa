"""Creates the campaign tables in the campaign database (``PM_DATABASE_URL``), or adds the nullable columns a newer
version of the platform defines; a no-op when they are up to date. Run once per ``docker compose up`` by the
campaigns-init service, as the ``campaigns`` role that owns the database."""

from __future__ import annotations

import sys


def main() -> int:
    from sqlalchemy.exc import OperationalError

    from pipelines.campaigns.store_schema import ensure_schema, make_engine
    from pipelines.config import load_settings

    settings = load_settings()
    engine = make_engine(settings.database_url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        ensure_schema(engine)
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()
        print(
            f"campaigns-init: cannot use the campaign database {where}: {' '.join(reason)}", file=sys.stderr
        )
        return 1
    finally:
        engine.dispose()
    print(f"campaigns-init: campaign tables ready in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
