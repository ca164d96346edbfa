"""Writes the password file of Airflow's simple auth manager from the environment, so that the admin's password is
the one in .env instead of one generated (and printed to the log) at the api-server's first start.

Reads ``AIRFLOW_ADMIN_USERNAME``, ``AIRFLOW_ADMIN_PASSWORD`` and the file's path from
``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE``; the user must also be listed, with its role, in
``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS``. Run by the api-server container before ``airflow api-server``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    missing = [
        name
        for name in (
            "AIRFLOW_ADMIN_USERNAME",
            "AIRFLOW_ADMIN_PASSWORD",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
        )
        if not os.environ.get(name)
    ]
    if missing:
        print(f"simple-auth-passwords: {', '.join(missing)} not set", file=sys.stderr)
        return 1
    username = os.environ["AIRFLOW_ADMIN_USERNAME"]
    users = [
        u.split(":")[0] for u in os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "").split(",")
    ]
    if username not in users:
        print(
            f"simple-auth-passwords: AIRFLOW_ADMIN_USERNAME={username!r} is not listed in "
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
            file=sys.stderr,
        )
        return 1
    path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    # Only the owner reads it: the password is stored as plain text, as the simple auth manager does.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump({username: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, file)
        file.write("\n")
    print(f"simple-auth-passwords: password of {username!r} written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
