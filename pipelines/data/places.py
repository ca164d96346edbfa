"""Places: the synthetic bank's geography (regions, cities, branches) and geodesic distance.

The synthetic bank is British (its phone numbers are ``+44 7...``): customers live in one of :data:`CITIES`, each in
one of the twelve ITL1 regions (:data:`REGIONS`) and of a city tier (1 = the largest cities) matching the
customers table's ``city_tier``. The bank has :data:`BRANCHES` in those cities (three in a tier-1 city, two in a
tier-2 city, one elsewhere), at fixed coordinates near the city centre. The generator draws each customer's home
city from the cities of the customer's tier and writes the branches table from this catalogue; place rules
(``region``, ``city``, ``within_km``) and the real-time triggers measure distances with :func:`distance_km`.

A city's coordinates are its centre; a customer's home location is known only to the city (coarse on purpose: an
address never reaches the lake's feature side).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGIONS = (
    "North East",
    "North West",
    "Yorkshire and The Humber",
    "East Midlands",
    "West Midlands",
    "East of England",
    "London",
    "South East",
    "South West",
    "Wales",
    "Scotland",
    "Northern Ireland",
)


@dataclass(frozen=True)
class City:
    name: str
    region: str
    tier: int
    lat: float
    lon: float


CITIES: tuple[City, ...] = (
    City("London", "London", 1, 51.5074, -0.1278),
    City("Birmingham", "West Midlands", 1, 52.4862, -1.8904),
    City("Manchester", "North West", 1, 53.4808, -2.2426),
    City("Glasgow", "Scotland", 1, 55.8642, -4.2518),
    City("Leeds", "Yorkshire and The Humber", 2, 53.8008, -1.5491),
    City("Liverpool", "North West", 2, 53.4084, -2.9916),
    City("Bristol", "South West", 2, 51.4545, -2.5879),
    City("Sheffield", "Yorkshire and The Humber", 2, 53.3811, -1.4701),
    City("Edinburgh", "Scotland", 2, 55.9533, -3.1883),
    City("Newcastle upon Tyne", "North East", 2, 54.9783, -1.6178),
    City("Cardiff", "Wales", 2, 51.4816, -3.1791),
    City("Belfast", "Northern Ireland", 2, 54.5973, -5.9301),
    City("Nottingham", "East Midlands", 2, 52.9548, -1.1581),
    City("Leicester", "East Midlands", 2, 52.6369, -1.1398),
    City("Southampton", "South East", 3, 50.9097, -1.4044),
    City("Brighton", "South East", 3, 50.8225, -0.1372),
    City("Plymouth", "South West", 3, 50.3755, -4.1427),
    City("Aberdeen", "Scotland", 3, 57.1497, -2.0943),
    City("Norwich", "East of England", 3, 52.6309, 1.2974),
    City("Exeter", "South West", 3, 50.7184, -3.5339),
    City("Derby", "East Midlands", 3, 52.9225, -1.4746),
    City("Coventry", "West Midlands", 3, 52.4068, -1.5197),
    City("Swansea", "Wales", 3, 51.6214, -3.9436),
    City("York", "Yorkshire and The Humber", 3, 53.9600, -1.0873),
    City("Oxford", "South East", 3, 51.7520, -1.2577),
    City("Cambridge", "East of England", 3, 52.2053, 0.1218),
    City("Inverness", "Scotland", 4, 57.4778, -4.2247),
    City("Carlisle", "North West", 4, 54.8925, -2.9329),
    City("Lincoln", "East Midlands", 4, 53.2307, -0.5406),
    City("Truro", "South West", 4, 50.2632, -5.0510),
    City("Hereford", "West Midlands", 4, 52.0565, -2.7160),
    City("Bangor", "Wales", 4, 53.2274, -4.1293),
    City("Dundee", "Scotland", 4, 56.4620, -2.9707),
    City("Lancaster", "North West", 4, 54.0466, -2.8007),
    City("Durham", "North East", 4, 54.7761, -1.5733),
    City("Ipswich", "East of England", 4, 52.0567, 1.1482),
    City("Canterbury", "South East", 4, 51.2802, 1.0789),
    City("Derry", "Northern Ireland", 4, 54.9966, -7.3086),
)
CITY_NAMES = tuple(c.name for c in CITIES)
CITY_BY_NAME = {c.name: c for c in CITIES}


@dataclass(frozen=True)
class Branch:
    branch_id: str
    name: str
    city: str
    region: str
    lat: float
    lon: float


# Branch k of a city sits at a fixed offset from its centre (about 1.5-2.5 km apart within the city).
_OFFSETS = ((0.0, 0.0), (0.018, -0.021), (-0.016, 0.024))
_PER_TIER = {1: 3, 2: 2, 3: 1, 4: 1}


def _branches() -> tuple[Branch, ...]:
    out = []
    for city in CITIES:
        for k in range(_PER_TIER[city.tier]):
            d_lat, d_lon = _OFFSETS[k]
            suffix = ("Central", "North", "South")[k]
            out.append(
                Branch(
                    f"BR{len(out) + 1:03d}",
                    f"{city.name} {suffix}",
                    city.name,
                    city.region,
                    round(city.lat + d_lat, 4),
                    round(city.lon + d_lon, 4),
                )
            )
    return tuple(out)


BRANCHES: tuple[Branch, ...] = _branches()
BRANCH_BY_ID = {b.branch_id: b for b in BRANCHES}


def cities_of_tier(tier: int) -> tuple[City, ...]:
    """The cities of one city tier (1-4), in catalogue order."""
    found = tuple(c for c in CITIES if c.tier == tier)
    if not found:
        raise ValueError(f"no city of tier {tier!r}; tiers are 1-4")
    return found


def _check(lat, lon, what: str) -> None:
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        raise ValueError(f"{what}: latitude and longitude must be finite numbers")
    if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 180):
        raise ValueError(f"{what}: latitude must be within [-90, 90] and longitude within [-180, 180]")


def distance_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Geodesic distance in km on the WGS84 ellipsoid (Karney's algorithm, geographiclib), elementwise over arrays
    that broadcast together; a NaN coordinate gives a NaN distance."""
    from geographiclib.geodesic import Geodesic

    a, b, c, d = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (lat1, lon1, lat2, lon2)))
    out = np.full(a.shape, np.nan)
    flat = out.reshape(-1)
    known = ~(np.isnan(a) | np.isnan(b) | np.isnan(c) | np.isnan(d)).reshape(-1)
    pts = np.column_stack([x.reshape(-1) for x in (a, b, c, d)])[known]
    _check(pts[:, [0, 2]], pts[:, [1, 3]], "distance_km")
    # Many rows share a pair of points (customers share their city's centre): solve each distinct pair once.
    unique, inverse = np.unique(pts, axis=0, return_inverse=True)
    geod = Geodesic.WGS84
    solved = (
        np.array([geod.Inverse(p[0], p[1], p[2], p[3], Geodesic.DISTANCE)["s12"] for p in unique]) / 1000.0
    )
    flat[known] = solved[inverse.reshape(-1)] if unique.size else np.empty(0)
    return out


__all__ = [
    "BRANCHES",
    "BRANCH_BY_ID",
    "CITIES",
    "CITY_BY_NAME",
    "CITY_NAMES",
    "REGIONS",
    "Branch",
    "City",
    "cities_of_tier",
    "distance_km",
]
