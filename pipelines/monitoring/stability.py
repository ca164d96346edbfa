"""Population stability of a model's score and input features against a reference profile stored at training.

At training, :func:`reference_profile` summarises the score and each monitored feature of the training rows as a
JSON-serialisable dict (plain floats, strings and lists), logged with the model. At scoring, :func:`stability`
compares the rows scored now with that profile and returns one row per (subject, metric) with a level ``ok`` <
``warn`` < ``alert`` (:class:`Thresholds`).

Bins. A numeric column is cut at interior points taken from the reference's quantiles at 1/bins, ..., (bins-1)/bins
(numpy's linear interpolation over the non-missing values), deduplicated, so tied and constant columns give fewer
bins instead of empty or duplicate ones. Bins are right-closed and open at both ends:
``(-inf, e1], (e1, e2], ..., (ek, +inf)``, so a value equal to a cut point falls in the bin below it and values
beyond the reference's range fall in the outer bins. A categorical column (pandas Categorical, object or string
dtype, bool, or any column named in ``categorical``) has one bin per value the reference saw; values are keyed by
their text (an integral float 3.0 keys as "3", so a column that gained NaN and turned float still matches).
Missing means NaN, None, NA or +/-inf.

PSI. The population stability index of reference shares e_i and current shares a_i is
``sum_i (a_i - e_i) * ln(a_i / e_i)``, each share first floored at ``floor`` (1e-4) so empty bins stay finite.
The bins are the numeric bins or categories above (each share over all rows, i.e. non-missing share x (1 - missing
share)), plus one bin for the missing share, so a column that turns all-missing shows in PSI, plus for a
categorical column one bin for values the reference never saw (reference share 0). Rules of thumb: < 0.1 stable,
0.1-0.25 a shift worth a look, > 0.25 a shift that changes the model's inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

PROFILE_VERSION = 1
LEVELS = ("ok", "warn", "alert")
ROW_COLUMNS = ("subject", "metric", "value", "reference", "level")
SCORE = "score"


@dataclass(frozen=True)
class Thresholds:
    """Where a metric turns ``warn`` and ``alert`` (a value at or above the threshold reaches the level).

    ``missing_*`` apply to the rise of the missing share over the reference's own (absolute, in share points);
    ``unseen_*`` to the share of non-missing values in categories the reference never saw."""

    psi_warn: float = 0.1
    psi_alert: float = 0.25
    missing_warn: float = 0.05
    missing_alert: float = 0.2
    unseen_warn: float = 0.01
    unseen_alert: float = 0.05

    def __post_init__(self) -> None:
        for name in ("psi", "missing", "unseen"):
            warn, alert = getattr(self, f"{name}_warn"), getattr(self, f"{name}_alert")
            if not 0.0 <= warn <= alert:
                raise ValueError(f"Thresholds: need 0 <= {name}_warn <= {name}_alert, got {warn} and {alert}")


DEFAULT_THRESHOLDS = Thresholds()


# --------------------------------------------------------------------------------------------------------------
# the reference profile


def _is_categorical(series: pd.Series) -> bool:
    dtype = series.dtype
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def _numeric(values, name: str) -> np.ndarray:
    """Float values with every non-finite one (NaN, None, NA, +/-inf) as NaN; a clear error for text."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
    if _is_categorical(series) and not pd.api.types.is_bool_dtype(series.dtype):
        try:
            series = pd.to_numeric(series.astype(object))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"column {name!r} is profiled as numeric but holds non-numeric values") from exc
    if not pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        raise ValueError(f"column {name!r} has dtype {series.dtype}, neither numeric nor categorical")
    x = series.to_numpy(dtype=float, na_value=np.nan, copy=True)
    x[~np.isfinite(x)] = np.nan
    return x


def _key(value) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _category_counts(series: pd.Series) -> tuple[dict[str, int], int]:
    """Counts of non-missing values keyed by :func:`_key`, and the number of missing rows."""
    counts = series.value_counts(dropna=True, sort=False)
    keyed: dict[str, int] = {}
    for value, count in counts.items():
        if count:
            keyed[_key(value)] = keyed.get(_key(value), 0) + int(count)
    return keyed, int(series.isna().sum())


def _numeric_entry(x: np.ndarray, bins: int) -> dict:
    present = x[~np.isnan(x)]
    n = x.size
    if present.size:
        cuts = np.quantile(present, np.arange(1, bins) / bins)
        edges = [float(e) for e in np.unique(cuts)]
        counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
        shares = [float(c) / present.size for c in counts]
    else:
        edges, shares = [], [0.0]
    return {"kind": "numeric", "edges": edges, "shares": shares, "missing": (n - present.size) / n}


def _categorical_entry(series: pd.Series) -> dict:
    counts, missing = _category_counts(series)
    present = sum(counts.values())
    shares = {k: counts[k] / present for k in sorted(counts)} if present else {}
    return {"kind": "categorical", "shares": shares, "missing": missing / len(series)}


def reference_profile(
    frame: pd.DataFrame,
    scores,
    features: Sequence[str],
    categorical: Sequence[str] = (),
    bins: int = 10,
) -> dict:
    """The reference distribution of ``scores`` and each of ``features`` in ``frame``, for :func:`stability`.

    Returns ``{"version", "rows", "bins", "score": entry, "features": {name: entry}}`` (features in the order
    given) where a numeric entry is ``{"kind": "numeric", "edges", "shares", "missing"}`` (interior cut points,
    the share of non-missing values per bin, ``len(edges) + 1`` of them, and the share of missing rows) and a
    categorical entry ``{"kind": "categorical", "shares": {value: share}, "missing"}``. Scores are numeric.
    Everything is a plain float, str, list or dict, so ``json.dumps`` takes it as is.
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    n = len(frame)
    if n == 0:
        raise ValueError("reference frame has no rows to profile")
    score_values = _numeric(scores, SCORE)
    if score_values.size != n:
        raise ValueError(f"scores and frame differ in length: {score_values.size} vs {n}")
    absent = [f for f in features if f not in frame.columns]
    if absent:
        raise ValueError(f"reference frame lacks the features {absent}")
    unknown = [c for c in categorical if c not in features]
    if unknown:
        raise ValueError(f"categorical columns {unknown} are not among the features")
    if len(set(features)) != len(features):
        raise ValueError(f"features repeat a name: {list(features)}")
    entries = {}
    for name in features:
        column = frame[name]
        if name in categorical or _is_categorical(column):
            entries[name] = _categorical_entry(column)
        else:
            entries[name] = _numeric_entry(_numeric(column, name), bins)
    return {
        "version": PROFILE_VERSION,
        "rows": int(n),
        "bins": int(bins),
        "score": _numeric_entry(score_values, bins),
        "features": entries,
    }


# --------------------------------------------------------------------------------------------------------------
# comparing with it


def psi(expected: Sequence[float], actual: Sequence[float], floor: float = 1e-4) -> float:
    """Population stability index ``sum (a - e) ln(a / e)`` over bins, each share floored at ``floor``.

    0 when the shares agree; never negative. Shares are taken as given (each list should sum to 1)."""
    e = np.asarray(expected, dtype=float).ravel()
    a = np.asarray(actual, dtype=float).ravel()
    if e.shape != a.shape:
        raise ValueError(f"expected and actual shares differ in length: {e.size} vs {a.size}")
    if e.size == 0:
        raise ValueError("no bins to compare")
    if not (np.isfinite(e).all() and np.isfinite(a).all()) or (e < 0).any() or (a < 0).any():
        raise ValueError("shares must be finite and non-negative")
    if floor <= 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    e, a = np.maximum(e, floor), np.maximum(a, floor)
    return float(np.sum((a - e) * np.log(a / e)))


def level(value: float, warn: float, alert: float) -> str:
    """``"alert"`` when ``value >= alert``, ``"warn"`` when ``value >= warn``, else ``"ok"``."""
    if math.isnan(value):
        raise ValueError("cannot grade a NaN value")
    if not warn <= alert:
        raise ValueError(f"warn threshold {warn} is above alert threshold {alert}")
    if value >= alert:
        return "alert"
    return "warn" if value >= warn else "ok"


def _numeric_rows(name: str, entry: dict, values, t: Thresholds) -> list[tuple]:
    x = _numeric(values, name)
    present = x[~np.isnan(x)]
    missing = 1.0 - present.size / x.size
    edges = np.asarray(entry["edges"], dtype=float)
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=edges.size + 1)
    current = counts / present.size if present.size else np.zeros(edges.size + 1)
    ref_missing = float(entry["missing"])
    expected = [*(np.asarray(entry["shares"], dtype=float) * (1.0 - ref_missing)), ref_missing]
    actual = [*(current * (1.0 - missing)), missing]
    value = psi(expected, actual)
    return [
        (name, "psi", value, math.nan, level(value, t.psi_warn, t.psi_alert)),
        _missing_row(name, missing, ref_missing, t),
    ]


def _categorical_rows(name: str, entry: dict, values: pd.Series, t: Thresholds) -> list[tuple]:
    counts, n_missing = _category_counts(values)
    present = sum(counts.values())
    missing = n_missing / len(values)
    ref_shares: dict[str, float] = entry["shares"]
    ref_missing = float(entry["missing"])
    unseen = sum(c for k, c in counts.items() if k not in ref_shares) / present if present else 0.0
    seen = [counts.get(k, 0) / present if present else 0.0 for k in ref_shares]
    expected = [*(s * (1.0 - ref_missing) for s in ref_shares.values()), 0.0, ref_missing]
    actual = [*(s * (1.0 - missing) for s in seen), unseen * (1.0 - missing), missing]
    value = psi(expected, actual)
    return [
        (name, "psi", value, math.nan, level(value, t.psi_warn, t.psi_alert)),
        _missing_row(name, missing, ref_missing, t),
        (name, "unseen_share", unseen, 0.0, level(unseen, t.unseen_warn, t.unseen_alert)),
    ]


def _missing_row(name: str, missing: float, ref_missing: float, t: Thresholds) -> tuple:
    return (
        name,
        "missing_share",
        missing,
        ref_missing,
        level(missing - ref_missing, t.missing_warn, t.missing_alert),
    )


def _rows(name: str, entry: dict, values, t: Thresholds) -> list[tuple]:
    kind = entry.get("kind")
    if kind == "numeric":
        return _numeric_rows(name, entry, values, t)
    if kind == "categorical":
        series = values if isinstance(values, pd.Series) else pd.Series(values)
        return _categorical_rows(name, entry, series, t)
    raise ValueError(f"profile entry {name!r} has unknown kind {kind!r}")


def stability(
    profile: dict,
    frame: pd.DataFrame,
    scores,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    aged: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row per (subject, metric) comparing ``frame`` and ``scores`` with a :func:`reference_profile`.

    Columns ``subject`` ("score" or a feature name), ``metric`` ("psi", "missing_share", and "unseen_share" for a
    categorical), ``value``, ``reference`` (the reference's missing share for missing_share, 0.0 for
    unseen_share, NaN for psi) and ``level``. Rows come score first (skipped when ``scores`` is None), then the
    features in profile order. A profiled feature absent from ``frame`` is one row, missing_share 1.0, "alert".

    ``aged`` moves the bin edges of numeric features that grow with the calendar by construction (``{"tenure_days":
    92}``: the reference's customers are 92 days older now), so the same customers a season later are not drift;
    a change in who the customers are still is.
    """
    t = thresholds
    if profile.get("version") != PROFILE_VERSION:
        raise ValueError(f"profile version {profile.get('version')!r} is not {PROFILE_VERSION}")
    if len(frame) == 0:
        raise ValueError("frame has no rows to compare with the reference")
    rows: list[tuple] = []
    if scores is not None:
        score_values = _numeric(scores, SCORE)
        if score_values.size != len(frame):
            raise ValueError(f"scores and frame differ in length: {score_values.size} vs {len(frame)}")
        rows += _rows(SCORE, profile["score"], score_values, t)
    for name, entry in profile["features"].items():
        if aged and name in aged and entry.get("kind") == "numeric":
            entry = {**entry, "edges": [e + float(aged[name]) for e in entry["edges"]]}
        if name not in frame.columns:
            rows.append((name, "missing_share", 1.0, float(entry["missing"]), "alert"))
        else:
            rows += _rows(name, entry, frame[name], t)
    out = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    return out.astype({"subject": str, "metric": str, "value": float, "reference": float, "level": str})


def worst(rows: pd.DataFrame) -> str:
    """The highest level among ``rows`` (``"ok"`` when there are none)."""
    present = set(rows["level"])
    unknown = present - set(LEVELS)
    if unknown:
        raise ValueError(f"rows hold unknown levels {sorted(unknown)}")
    return max(present, key=LEVELS.index, default="ok")


def summary_lines(rows: pd.DataFrame, top: int = 5) -> list[str]:
    """Up to ``top`` readable lines, worst level first, then the larger move (a PSI, or a share's rise over the
    reference's), e.g. ``"psi score 0.031 ok"`` or ``"missing_share income 0.300 (reference 0.000) ALERT"``;
    WARN and ALERT are written in capitals."""
    if rows.empty or top <= 0:
        return []
    rank = rows["level"].map(LEVELS.index)
    if rank.isna().any():
        raise ValueError(f"rows hold unknown levels {sorted(set(rows['level']) - set(LEVELS))}")
    moved = rows["value"] - rows["reference"].where(rows["metric"] != "psi", 0.0).fillna(0.0)
    ordered = rows.assign(_rank=rank, _moved=moved).sort_values(
        ["_rank", "_moved"], ascending=[False, False], kind="stable"
    )
    lines = []
    for r in ordered.head(top).itertuples(index=False):
        word = r.level if r.level == "ok" else r.level.upper()
        ref = f" (reference {r.reference:.3f})" if r.metric == "missing_share" else ""
        lines.append(f"{r.metric} {r.subject} {r.value:.3f}{ref} {word}")
    return lines


__all__ = [
    "DEFAULT_THRESHOLDS",
    "LEVELS",
    "ROW_COLUMNS",
    "Thresholds",
    "level",
    "psi",
    "reference_profile",
    "stability",
    "summary_lines",
    "worst",
]
