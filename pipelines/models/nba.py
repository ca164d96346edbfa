"""Next-best-action arbitration: at most one offer per customer per window, chosen by expected value, under
campaign priorities, per-channel capacity, campaign quotas and a total contact budget (docs/next-best-action.md).

**Candidates** are one row per option a campaign may use for a customer who passed its audience rules and the
contact policy (:data:`CANDIDATE_COLUMNS`): ``customer_id``, ``campaign``, ``channel``, ``p_incremental`` (the
estimated incremental probability that this offer on this channel converts the customer, against no contact),
``value`` (of a conversion), ``cost`` (of the contact) and ``priority`` (a weight, 1 by default). Its expected value
is ``ev = p_incremental * value - cost``; options are ranked by ``priority * ev``.

**Arbitration** (:func:`arbitrate`) is greedy by that score, best first: an option is taken when its score is
positive, its customer has no offer yet, and its channel, campaign and the budget have room left. Greedy is the
usual NBA rule (each customer's best offer, the scarce channels going to the customers they move most); on the
synthetic bank it stays within a few per cent of the optimum of the same problem as a linear programme
(tests/unit/models/test_nba.py). Ties fall by a hash of (customer, campaign, channel), so the result does not depend
on the candidates' row order.

**First come** (:func:`first_come`) is what running the same campaigns independently does: campaigns in their
order (the one due first takes first), each selecting by its own ranking score on its own channel among the
customers no earlier campaign took, up to its quota and the channel's capacity.

Both return one row per chosen contact (:data:`CHOICE_COLUMNS`); :func:`decision_audit` says, for every customer
with a candidate, what was chosen, the runner-up and why.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

CANDIDATE_COLUMNS = ("customer_id", "campaign", "channel", "p_incremental", "value", "cost", "priority")
CHOICE_COLUMNS = ("customer_id", "campaign", "channel", "p_incremental", "ev", "score")
AUDIT_COLUMNS = (
    "customer_id",
    "campaign",
    "channel",
    "ev",
    "runner_up",
    "runner_up_channel",
    "runner_up_ev",
    "reason",
)


def expected_values(candidates: pd.DataFrame) -> pd.DataFrame:
    """``candidates`` checked, with ``ev`` and ``score`` (``priority * ev``) added; a clear error naming what is
    wrong (a missing column, a negative or non-finite number, a probability outside [-1, 1], a repeated option)."""
    missing = [c for c in CANDIDATE_COLUMNS if c not in candidates.columns and c != "priority"]
    if missing:
        raise ValueError(
            f"candidates lack column(s) {', '.join(missing)}; need {', '.join(CANDIDATE_COLUMNS)}"
        )
    out = candidates.copy()
    if "priority" not in out.columns:
        out["priority"] = 1.0
    for column in ("p_incremental", "value", "cost", "priority"):
        values = pd.to_numeric(out[column], errors="coerce").astype(float)
        if not np.isfinite(values).all():
            raise ValueError(f"candidates column {column!r} has missing or non-finite values")
        out[column] = values
    for column in ("value", "cost", "priority"):
        if (out[column] < 0).any():
            raise ValueError(f"candidates column {column!r} has negative values")
    if (out["p_incremental"].abs() > 1).any():
        raise ValueError(
            "candidates column 'p_incremental' must lie in [-1, 1] (a difference of probabilities)"
        )
    key = ["customer_id", "campaign", "channel"]
    repeated = out.duplicated(key)
    if repeated.any():
        first = out.loc[repeated, key].iloc[0].tolist()
        raise ValueError(f"candidates repeat an option (customer, campaign, channel), e.g. {first}")
    out["ev"] = out["p_incremental"] * out["value"] - out["cost"]
    out["score"] = out["priority"] * out["ev"]
    return out


def _tiebreak(frame: pd.DataFrame) -> np.ndarray:
    """A stable pseudo-random key per option, from its (customer, campaign, channel) text."""
    text = (
        frame["customer_id"].astype(str)
        + "|"
        + frame["campaign"].astype(str)
        + "|"
        + frame["channel"].astype(str)
    )
    return np.fromiter((zlib.crc32(t.encode()) for t in text), dtype=np.int64, count=len(text))


def _limit(limits: Mapping[str, int] | None, key: str) -> float:
    if limits is None or key not in limits or limits[key] is None:
        return np.inf
    return float(limits[key])


def _check_limits(name: str, limits: Mapping[str, int] | None) -> None:
    for key, value in (limits or {}).items():
        if value is not None and (not float(value).is_integer() or value < 0):
            raise ValueError(f"{name} of {key!r} must be a whole number >= 0, got {value!r}")


def arbitrate(
    candidates: pd.DataFrame,
    *,
    capacity: Mapping[str, int] | None = None,
    quotas: Mapping[str, int] | None = None,
    budget: int | None = None,
) -> pd.DataFrame:
    """At most one option per customer, greedy by ``priority * ev`` (module docstring).

    ``capacity``: contacts per channel (absent: unlimited); ``quotas``: contacts per campaign; ``budget``: contacts
    in all. Returns :data:`CHOICE_COLUMNS`, best score first."""
    _check_limits("capacity", capacity)
    _check_limits("quota", quotas)
    ranked = expected_values(candidates)
    ranked = ranked.loc[ranked["score"] > 0]
    ranked = ranked.assign(_tie=_tiebreak(ranked)).sort_values(
        ["score", "_tie", "customer_id"], ascending=[False, True, True], kind="mergesort"
    )
    left_channel = {c: _limit(capacity, c) for c in ranked["channel"].unique()}
    left_campaign = {c: _limit(quotas, c) for c in ranked["campaign"].unique()}
    left = np.inf if budget is None else float(budget)
    taken: set = set()
    keep = np.zeros(len(ranked), dtype=bool)
    rows = zip(
        ranked["customer_id"].tolist(), ranked["campaign"].tolist(), ranked["channel"].tolist(), strict=True
    )
    for i, (customer, campaign, channel) in enumerate(rows):
        if left <= 0:
            break
        if customer in taken or left_channel[channel] <= 0 or left_campaign[campaign] <= 0:
            continue
        keep[i] = True
        taken.add(customer)
        left_channel[channel] -= 1
        left_campaign[campaign] -= 1
        left -= 1
    return ranked.loc[keep, list(CHOICE_COLUMNS)].reset_index(drop=True)


def first_come(
    candidates: pd.DataFrame,
    order: Sequence[str],
    *,
    channels: Mapping[str, str],
    rank_by: str,
    quotas: Mapping[str, int] | None = None,
    capacity: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """The same campaigns run independently, first come first served: campaign by campaign in ``order``, each on
    its fixed channel (``channels[campaign]``) takes its best customers by its own ``rank_by`` column (its model's
    score), highest first, among those no earlier campaign took, up to its quota and the channel's capacity, and
    only where its own expected value is positive (the same rule a campaign run's expected-value selection uses).
    Returns :data:`CHOICE_COLUMNS` (``score`` is the campaign's own ranking score)."""
    _check_limits("capacity", capacity)
    _check_limits("quota", quotas)
    unknown = [c for c in order if c not in channels]
    if unknown:
        raise ValueError(f"first_come: no channel given for campaign(s) {', '.join(unknown)}")
    frame = expected_values(candidates)
    if rank_by not in frame.columns:
        raise ValueError(f"first_come: candidates have no ranking column {rank_by!r}")
    left_channel: dict[str, float] = {}
    taken: set = set()
    chosen = []
    for campaign in order:
        channel = channels[campaign]
        pool = frame.loc[(frame["campaign"] == campaign) & (frame["channel"] == channel) & (frame["ev"] > 0)]
        pool = pool.loc[~pool["customer_id"].isin(taken)]
        pool = pool.assign(_tie=_tiebreak(pool)).sort_values(
            [rank_by, "_tie", "customer_id"], ascending=[False, True, True], kind="mergesort"
        )
        room = min(_limit(quotas, campaign), left_channel.setdefault(channel, _limit(capacity, channel)))
        picked = pool.head(int(room) if np.isfinite(room) else len(pool))
        left_channel[channel] -= len(picked)
        taken.update(picked["customer_id"].tolist())
        chosen.append(picked.assign(score=picked[rank_by]))
    columns = list(CHOICE_COLUMNS)
    if not chosen:
        return pd.DataFrame(columns=columns)
    return pd.concat(chosen, ignore_index=True)[columns]


def decision_audit(candidates: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """For every customer with a candidate: the chosen offer (or none), the runner-up and why (:data:`AUDIT_COLUMNS`).

    The runner-up is the best-scoring option of another campaign (the same campaign on another channel is not an
    alternative offer); with no offer chosen, it is the customer's best option. ``reason`` says in words why the
    customer got what they got."""
    ranked = expected_values(candidates)
    ranked = ranked.assign(_tie=_tiebreak(ranked)).sort_values(
        ["customer_id", "score", "_tie"], ascending=[True, False, True], kind="mergesort"
    )
    picked = chosen.set_index("customer_id")
    ranked["_chosen"] = ranked["customer_id"].map(picked["campaign"])
    audit = ranked.groupby("customer_id", sort=True).head(1)[
        ["customer_id", "campaign", "channel", "ev", "score"]
    ]
    audit = audit.rename(columns={c: f"best_{c}" for c in ("campaign", "channel", "ev", "score")})
    audit = audit.set_index("customer_id")
    audit["campaign"] = picked["campaign"]
    audit["channel"] = picked["channel"]
    audit["ev"] = picked["ev"].astype(float)
    # The runner-up of a chosen customer: the best option of another campaign; of the others: their best option.
    others = ranked.loc[ranked["_chosen"].notna() & (ranked["campaign"] != ranked["_chosen"])]
    runner = others.groupby("customer_id", sort=True).head(1).set_index("customer_id")
    chosen_mask = audit["campaign"].notna()
    audit["runner_up"] = np.where(
        chosen_mask, runner["campaign"].reindex(audit.index), audit["best_campaign"]
    )
    audit["runner_up_channel"] = np.where(
        chosen_mask, runner["channel"].reindex(audit.index), audit["best_channel"]
    )
    audit["runner_up_ev"] = np.where(chosen_mask, runner["ev"].reindex(audit.index), audit["best_ev"])
    runner_score = runner["score"].reindex(audit.index)
    own_best = ranked.loc[ranked["campaign"] == ranked["_chosen"]].groupby("customer_id")["score"].max()
    reasons = np.select(
        [
            chosen_mask & runner_score.isna(),
            chosen_mask & (runner_score > own_best.reindex(audit.index)),
            chosen_mask,
            audit["best_score"] <= 0,
        ],
        [
            "the only campaign with an offer for this customer",
            "runner-up scored higher, but its channel, quota or the budget was full",
            "highest expected value",
            "no offer: no option has a positive expected value",
        ],
        "no offer: every positive option found its channel, campaign or the budget full",
    )
    audit["reason"] = reasons
    audit["runner_up"] = audit["runner_up"].where(pd.notna(audit["runner_up"]), None)
    audit["runner_up_channel"] = audit["runner_up_channel"].where(pd.notna(audit["runner_up_channel"]), None)
    return audit.reset_index()[list(AUDIT_COLUMNS)]
