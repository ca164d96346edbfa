"""Place rules: ``within_km`` in a spec's audience list, and the same test for a point (a real-time trigger).

A spec writes ``- within_km: {of: BR012, km: 25}`` (a branch id) or ``- within_km: {of: [51.5, -0.12], km: 10}``
(a latitude and longitude): the customer's home city centre (``places.CITY_BY_NAME``; a customer's home is only
known to the city) must lie within ``km`` kilometres of that point, by geodesic distance on WGS84
(``places.distance_km``). A customer with no city, or a city the catalogue does not know, fails the rule.

A branch id resolves through the lake's ``branches`` table when the lake has one (:func:`lake_branches`), else
through the places catalogue (``places.BRANCHES``); an id found in neither is a ValueError naming the rule and the
id. Loading a spec checks only the id's shape (``BR`` and digits): which branches exist is the lake's to say.

:func:`within_km` answers for points (the real-time service's "event within N km of a branch");
:func:`rule_passes` and :func:`exclusion_detail` are what the contact policy applies to a scored frame.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.data import places, storage

BRANCH_ID = re.compile(r"^BR\d{3,6}$")
BRANCH_COLUMNS = ("branch_id", "lat", "lon")  # what a branches table must hold for the rule


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class WithinKm(BaseModel):
    """A circle: ``km`` kilometres (> 0) around ``of``, a branch id (``BR012``) or a ``(lat, lon)`` pair."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    of: str | tuple[float, float]
    km: float = Field(gt=0.0, allow_inf_nan=False)

    @field_validator("of", mode="plain")
    @classmethod
    def _branch_or_point(cls, v: Any) -> str | tuple[float, float]:
        if isinstance(v, str):
            if not BRANCH_ID.match(v):
                raise ValueError(
                    f"{v!r} is not a branch id (BR and 3 to 6 digits, e.g. BR012); or give [lat, lon]"
                )
            return v
        if isinstance(v, list | tuple) and len(v) == 2 and all(_number(x) for x in v):
            lat, lon = float(v[0]), float(v[1])
            if abs(lat) > 90 or abs(lon) > 180:
                raise ValueError(
                    f"[lat, lon] out of range: latitude within [-90, 90], longitude within [-180, 180], "
                    f"got {list(v)!r}"
                )
            return (lat, lon)
        raise ValueError(f"needs a branch id (e.g. BR012) or a [lat, lon] pair of numbers, got {v!r}")

    @field_validator("km", mode="before")
    @classmethod
    def _not_a_flag(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"needs a number of kilometres above 0, got {v!r}")
        return v

    @property
    def target(self) -> str:
        """``BR012`` or ``[51.5, -0.12]``, as the label writes it."""
        if isinstance(self.of, str):
            return self.of
        return f"[{self.of[0]:g}, {self.of[1]:g}]"

    @property
    def label(self) -> str:
        return f"within {self.km:g} km of {self.target}"


class WithinKmRule(BaseModel):
    """An audience rule ``within_km: {of, km}``: the customer's home city centre within ``km`` of ``of``. Its
    ``column`` is ``city``, the scored frame's column it reads (so code that lists the rules' columns needs no
    special case)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: ClassVar[str] = "city"
    op: ClassVar[str] = "within_km"
    within_km: WithinKm

    @property
    def label(self) -> str:
        """The rule as text, e.g. ``city within 25 km of BR012``."""
        return f"{self.column} {self.within_km.label}"


def _circle(rule_or_target: WithinKmRule | WithinKm | Mapping[str, Any]) -> WithinKm:
    if isinstance(rule_or_target, WithinKmRule):
        return rule_or_target.within_km
    if isinstance(rule_or_target, WithinKm):
        return rule_or_target
    return WithinKm.model_validate(dict(rule_or_target))


def lake_branches(lake_dir: str | Path) -> pd.DataFrame | None:
    """The lake's ``branches`` table (``branch_id``, ``lat``, ``lon``), or None when the lake has none (then the
    places catalogue's branches are used)."""
    if not storage.has_table(Path(lake_dir), "branches"):
        return None
    return storage.read_table(Path(lake_dir), "branches", columns=list(BRANCH_COLUMNS))


def target_point(
    rule_or_target: WithinKmRule | WithinKm | Mapping[str, Any], branches: pd.DataFrame | None = None
) -> tuple[float, float]:
    """The ``(lat, lon)`` of a rule's ``of``: the point itself, or the branch's coordinates from ``branches``
    (a lake's branches table) or, when that is None, the places catalogue. ValueError naming the rule and the id
    when the branch is unknown."""
    circle = _circle(rule_or_target)
    if not isinstance(circle.of, str):
        return circle.of
    if branches is None:
        known = {b.branch_id: (b.lat, b.lon) for b in places.BRANCHES}
        where = "the places catalogue"
    else:
        missing = [c for c in BRANCH_COLUMNS if c not in branches.columns]
        if missing:
            raise ValueError(f"branches table lacks column(s) {missing}; it needs {list(BRANCH_COLUMNS)}")
        known = {
            str(b): (float(lat), float(lon))
            for b, lat, lon in zip(branches["branch_id"], branches["lat"], branches["lon"], strict=True)
        }
        where = "the lake's branches table"
    if circle.of not in known:
        ids = sorted(known)
        shown = f"{ids[0]} .. {ids[-1]}" if ids else "none"
        raise ValueError(
            f"rule 'city {circle.label}': unknown branch id {circle.of!r}; {where} has {len(ids)} branches "
            f"({shown})"
        )
    return known[circle.of]


def within_km(
    rule_or_target: WithinKmRule | WithinKm | Mapping[str, Any],
    lat: float | np.ndarray,
    lon: float | np.ndarray,
    *,
    branches: pd.DataFrame | None = None,
) -> bool | np.ndarray:
    """Whether the point(s) ``(lat, lon)`` lie within the circle's ``km`` of its ``of`` (distance <= km, geodesic
    on WGS84). ``rule_or_target`` is a :class:`WithinKmRule`, a :class:`WithinKm` or a mapping ``{"of": ...,
    "km": ...}`` (validated as in a spec). Scalars give a bool, arrays a boolean array; a NaN coordinate is
    never within. ``branches``: as for :func:`target_point`."""
    circle = _circle(rule_or_target)
    t_lat, t_lon = target_point(circle, branches)
    distance = places.distance_km(lat, lon, t_lat, t_lon)
    inside = np.asarray(distance <= circle.km, dtype=bool) & ~np.isnan(distance)
    return bool(inside) if inside.ndim == 0 else inside


def _by_city(cities: pd.Series) -> tuple[np.ndarray, list]:
    """Each row's position among the distinct cities (-1 where missing) and those cities: work per city, not
    per customer (a million customers live in a few dozen cities)."""
    column = cities if isinstance(cities.dtype, pd.CategoricalDtype) else cities.astype("category")
    return column.cat.codes.to_numpy(np.int64), list(column.cat.categories)


def _centres(names: list) -> np.ndarray:
    """``(lat, lon)`` rows of the catalogue's city centres for ``names``, then one NaN row (a missing city)."""
    lookup = {c.name: (c.lat, c.lon) for c in places.CITIES}
    rows = [
        lookup.get(name, (np.nan, np.nan)) if isinstance(name, str) else (np.nan, np.nan) for name in names
    ]
    return np.array([*rows, (np.nan, np.nan)], dtype=np.float64)


def home_points(cities: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of each customer's home city centre; NaN for a missing or unknown city."""
    codes, names = _by_city(cities)
    points = _centres(names)[codes]  # code -1 (missing) takes the NaN row
    return points[:, 0], points[:, 1]


def home_distances(rule: WithinKmRule, cities: pd.Series, branches: pd.DataFrame | None = None) -> np.ndarray:
    """Km from each customer's home city centre to the rule's point; NaN for a missing or unknown city."""
    codes, names = _by_city(cities)
    centres = _centres(names)
    t_lat, t_lon = target_point(rule, branches)
    per_city = np.asarray(places.distance_km(centres[:, 0], centres[:, 1], t_lat, t_lon), dtype=np.float64)
    return per_city.reshape(-1)[codes]


def rule_passes(rule: WithinKmRule, cities: pd.Series, branches: pd.DataFrame | None = None) -> np.ndarray:
    """Rows whose home city centre lies within the rule's circle; a missing or unknown city fails."""
    distance = home_distances(rule, cities, branches)
    return ~np.isnan(distance) & (distance <= rule.within_km.km)


def exclusion_detail(
    rule: WithinKmRule, cities: pd.Series, rows: np.ndarray, branches: pd.DataFrame | None = None
) -> np.ndarray:
    """Why each of ``rows`` (a boolean mask over ``cities``) failed the rule: ``city = Leeds, 272.3 km from
    BR012``, ``city is missing`` or ``city = Atlantis has no known location``."""
    picked = cities.iloc[np.flatnonzero(rows)]
    distance = home_distances(rule, picked, branches)
    out = []
    for city, km in zip(picked.astype("object"), distance, strict=True):
        if not isinstance(city, str):
            out.append("city is missing")
        elif np.isnan(km):
            out.append(f"city = {city} has no known location")
        else:
            out.append(f"city = {city}, {km:.1f} km from {rule.within_km.target}")
    return np.array(out, dtype=object)


__all__ = [
    "BRANCH_ID",
    "WithinKm",
    "WithinKmRule",
    "exclusion_detail",
    "home_distances",
    "home_points",
    "lake_branches",
    "rule_passes",
    "target_point",
    "within_km",
]
