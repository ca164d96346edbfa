"""Reading the files of docker/ as Docker and compose read them: compose's variable interpolation and .env files,
the parts of a service the tests look at, the Dockerfile's instructions and the .dockerignore rules. Used by
``test_compose.py``; nothing here needs a Docker engine."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.conftest import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILE = DOCKER / "Dockerfile"
INIT_SQL = DOCKER / "postgres" / "init-databases.sql"
SCRIPTS = DOCKER / "bin"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
SCHEMA = Path(__file__).parent / "schema" / "compose-spec.json"

# ---------------------------------------------------------------------------------------------- interpolation

VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` with compose's ``$$``, ``$NAME``, ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``,
    ``${NAME:?error}``, ``${NAME?error}`` and ``${NAME:+alternative}`` replaced from ``env``."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        unset_or_empty = not value
        if op in (":-", "-"):
            return arg if (unset_or_empty if op == ":-" else value is None) else value
        if op in (":?", "?"):
            if unset_or_empty if op == ":?" else value is None:
                raise MissingVariable(name, arg or "required")
            return value
        if op in (":+", "+"):
            return arg if (not unset_or_empty if op == ":+" else value is not None) else ""
        return value or ""

    return VARIABLE.sub(replace, text)


def walk_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_strings(item)


def interpolated(node: Any, env: Mapping[str, str]) -> Any:
    # Compose interpolates values, not keys.
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, Mapping):
        return {key: interpolated(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolated(item, env) for item in node]
    return node


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a .env file (comments and blank lines skipped; values unquoted as written)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), (
            f"{path.name}:{number}: not a KEY=value line: {line!r}"
        )
        assert key not in values, f"{path.name}:{number}: {key} is defined twice"
        values[key] = value
    return values


def stand_in_env(example: Mapping[str, str]) -> dict[str, str]:
    """The example's values, with a distinct URL-safe stand-in for each secret left empty there (so a URL that uses
    the wrong secret shows up as a wrong value)."""
    return {key: value or f"{key.lower().replace('_', '-')}-stand-in" for key, value in example.items()}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def depends_on(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def health_active(service: Mapping[str, Any]) -> bool:
    check = service.get("healthcheck") or {}
    return bool(check.get("test")) and not check.get("disable", False)


def is_one_shot(service: Mapping[str, Any]) -> bool:
    return str(service.get("restart", "no")) == "no"


def volume_mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """target -> source of the short-syntax volumes of a service."""
    mounts = {}
    for item in service.get("volumes") or []:
        assert isinstance(item, str), f"use the short volume syntax (source:target[:mode]), got {item!r}"
        source, target = item.split(":")[:2]
        mounts[target] = source
    return mounts


def active_services(services: Mapping[str, Any], profiles: set[str]) -> set[str]:
    return {name for name, s in services.items() if not s.get("profiles") or set(s["profiles"]) & profiles}


def command_words(service: Mapping[str, Any], key: str = "command") -> list[str]:
    value = service.get(key) or []
    return value.split() if isinstance(value, str) else [str(word) for word in value]


def postgres_urls(services: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(service, variable, parsed URL) of every URL that points at the postgres service."""
    for name, service in services.items():
        for key, value in environment(service).items():
            if "://" in value:
                url = urlsplit(value.removeprefix("db+"))
                if url.hostname == "postgres":
                    yield name, key, url


# ------------------------------------------------------------------------------------------ Dockerfile parsing


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docker/Dockerfile, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        if pending and line.lstrip().startswith("#"):
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in final_stage(instructions):
        if word == "ENV":
            for pair in rest.split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def copies(instructions: list[tuple[str, str]]) -> Iterator[tuple[list[str], str, dict[str, str]]]:
    """(sources, destination, flags) of every COPY."""
    for word, rest in instructions:
        if word != "COPY":
            continue
        parts = rest.split()
        flags = dict(p[2:].split("=", 1) for p in parts if p.startswith("--"))
        paths = [p for p in parts if not p.startswith("--")]
        yield paths[:-1], paths[-1], flags


# ----------------------------------------------------------------------------------------- .dockerignore


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            i += 2
            if pattern[i : i + 1] == "/":
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        char = pattern[i]
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_matcher(text: str):
    """A function telling whether a context path is left out, with Docker's rules: patterns in order, the last one
    that matches the path or one of its parent folders decides, ``!`` lets a path back in."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        rules.append((negate, _glob_regex(os.path.normpath(pattern).lstrip("/"))))

    def ignored(path: str) -> bool:
        parts = path.split("/")
        candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
        result = False
        for negate, regex in rules:
            if any(regex.match(c) for c in candidates):
                result = not negate
        return result

    return ignored
