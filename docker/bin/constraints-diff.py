"""How this image's Python environment differs from the constraints file the official Airflow image was built with.

The image installs uv.lock's exact pins over the official image, whose packages were installed with Airflow's
constraints file (kept in the image as ``~/constraints.txt``). This prints the packages whose installed version is
not the constrained one (uv.lock moved them), then how many packages were added beyond the constraints:

    docker run --rm -e CONNECTION_CHECK_MAX_COUNT=0 precision-marketing:latest \\
        python /opt/airflow/scripts/constraints-diff.py [CONSTRAINTS_FILE]
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import distributions
from pathlib import Path


def _name(raw: str) -> str:
    return re.sub(r"[-_.]+", "-", raw).lower()


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else Path.home() / "constraints.txt"
    if not path.is_file():
        print(f"constraints-diff: no constraints file at {path}", file=sys.stderr)
        return 1
    constrained: dict[str, str] = {}
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            constrained[_name(name)] = version.strip()
    installed = {_name(d.metadata["Name"]): d.version for d in distributions() if d.metadata["Name"]}
    moved = sorted(n for n in constrained.keys() & installed.keys() if constrained[n] != installed[n])
    width = max((len(n) for n in moved), default=7)
    print(f"{'package':<{width}}  {'constraint':<12}  installed")
    for name in moved:
        print(f"{name:<{width}}  {constrained[name]:<12}  {installed[name]}")
    added = sorted(installed.keys() - constrained.keys())
    print(
        f"{len(moved)} of {len(constrained.keys() & installed.keys())} constrained packages at another version; "
        f"{len(added)} installed packages not in the constraints file"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
