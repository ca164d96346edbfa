"""The decision engine: one event of one customer in, one decision out, with the batch path's models and rules.

For an event (:class:`pipelines.features.online.Event`) of a customer, :meth:`Decider.decide`:

1. reads the customer's row of the online snapshot (the wide table of the latest batch run, with segment columns
   and consent flags) and updates it with the event's own facts (:func:`pipelines.features.online.apply_event`,
   the batch features' definition);
2. keeps the real-time campaigns whose trigger the event meets (event type, amount, place);
3. for each, applies the campaign's contact policy and audience rules as a batch run does: the batch path's own
   :func:`pipelines.campaigns.policy.apply_policy`, run once per day over the whole snapshot base (consent flags,
   dead accounts, the contact history of the lake and the campaign database plus this service's own offers, and
   the audience rules on columns no triggering event changes), and the audience rules on columns the event may
   change (:func:`pipelines.features.online.event_columns`) on the customer's updated row; then scores the
   customer with the campaign model's champion (the same calibrated probability as the batch score), and keeps
   the campaign when the score reaches the spec's ``selection.score_threshold`` and the expected value ``score x
   value_per_response - cost_per_contact`` is positive;
4. picks the campaign with the highest expected value (ties: the campaign name) and draws the customer's group
   from the campaign's own salted hash (:func:`pipelines.campaigns.score.online_holdout`): a customer in the holdout
   gets no offer and is logged as held out, so the campaign reads out like a batch one;
5. at most one offer per customer per day across real-time campaigns: later events that day get no offer.

Nothing here touches the network or the database: the caller passes the loaded pieces in and logs the decisions.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from pipelines.campaigns.policy import HISTORY_COLUMNS, apply_policy, audience_rule_passes, empty_history
from pipelines.campaigns.score import HOLDOUT, TREATMENT, online_holdout
from pipelines.features.online import Event, apply_event, event_columns

ID = "customer_id"
FLAGS = ("do_not_contact", "marketing_opt_out")


@dataclass(frozen=True)
class Decision:
    """What the service answers (and logs) for one event."""

    decision_id: str
    customer_id: int
    offer: str | None  # the campaign whose offer to show now; None for no offer
    campaign: str | None  # the campaign the decision is about (also when the customer is held out of it)
    channel: str | None
    group: str | None  # treatment or holdout; None when no campaign applied
    score: float | None
    expected_value: float | None
    reason: str
    model_name: str | None = None
    model_version: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Candidate:
    spec: Any
    score: float
    expected_value: float


class Decider:
    """Decides events for the real-time campaigns ``specs`` (specs with a ``trigger``).

    ``models`` maps a model name to its loaded :class:`~pipelines.campaigns.score.ScoringModel`; ``snapshot`` is an
    open online snapshot (``.row(customer_id)``, ``.as_of``); ``base`` the snapshot's customers with the columns
    the campaigns' audience rules read (``customer_id`` first) and ``customers`` their consent flags
    (``customer_id``, ``do_not_contact``, ``marketing_opt_out``), as a batch run reads them; ``history`` the contact
    history
    (:data:`~pipelines.campaigns.policy.HISTORY_COLUMNS`, treatment contacts) the campaigns' policies look back
    over; ``invalid`` maps a campaign to the ids its ``invalid_customer`` rule excludes; ``branches`` the places a
    trigger's ``within_km`` may name; ``log`` receives one row per decision (a callable, e.g.
    ``DecisionLog.add``); ``clock`` gives the decision time (UTC).
    """

    def __init__(
        self,
        specs: Sequence[Any],
        models: Mapping[str, Any],
        snapshot: Any,
        base: pd.DataFrame,
        customers: pd.DataFrame,
        history: pd.DataFrame | None = None,
        invalid: Mapping[str, pd.Index] | None = None,
        branches: pd.DataFrame | None = None,
        log: Callable[[dict], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        realtime = [s for s in specs if getattr(s, "trigger", None) is not None]
        if not realtime:
            raise ValueError(
                "no real-time campaign: a spec needs a `trigger:` block to be decided in real time"
            )
        absent = sorted({s.model for s in realtime} - set(models))
        if absent:
            raise ValueError(f"no model loaded for {', '.join(absent)}")
        self.specs = sorted(realtime, key=lambda s: s.name)
        self.models = dict(models)
        self.snapshot = snapshot
        self.base = base
        self.customers = customers
        self.invalid = {k: pd.Index(v, dtype=np.int64) for k, v in (invalid or {}).items()}
        self.branches = branches
        self.log = log
        self.clock = clock
        self._features = {name: list(m.model.features) for name, m in self.models.items()}
        self._history: dict[int, list[tuple[str, np.datetime64]]] = {}
        if history is not None and len(history):
            frame = history[list(HISTORY_COLUMNS)]
            days = pd.to_datetime(frame["contact_date"]).dt.normalize().to_numpy("datetime64[us]")
            ids, campaigns = frame[ID].to_numpy(np.int64), frame["campaign"].astype(str)
            for cid, campaign, day in zip(ids, campaigns, days, strict=True):
                self._history.setdefault(int(cid), []).append((campaign, day))
        self._offered_today: dict[int, date] = {}
        self._lock = threading.Lock()
        # Audience rules an event may change are checked on the updated row; the rest with the daily policy.
        self._dynamic: dict[str, tuple] = {}
        self._static: dict[str, Any] = {}
        for spec in self.specs:
            changed = {c for t in spec.trigger.events for c in event_columns(t)}
            self._dynamic[spec.name] = tuple(r for r in spec.audience if r.column in changed)
            static = tuple(r for r in spec.audience if r.column not in changed)
            self._static[spec.name] = spec.model_copy(update={"audience": static})
        self._exclusions: dict[tuple[str, date], dict[int, str]] = {}
        # Triggers near a branch get the branch's point once, here: an unknown branch id stops the start, and an
        # event is not checked against the branches table.
        self._triggers = {s.name: s.trigger.resolved(branches) for s in self.specs}

    # ---------------------------------------------------------------------------------------------------------

    def decide(self, customer_id: int, event: Event) -> Decision:
        """The decision for ``event`` of ``customer_id``. When the decider has a log, the decision is logged
        first: an offer counts as a contact (once a day, the campaigns' contact policy) only once its log row was
        taken, so a log that refuses it (raising) leaves the customer as if nothing had been offered."""
        started = time.perf_counter()
        decided_at = self.clock()
        decision = self._decide(int(customer_id), event)
        if self.log is not None:
            self.log(self._log_row(decision, event, decided_at, time.perf_counter() - started))
        if decision.offer is not None:
            with self._lock:
                self._offered_today[decision.customer_id] = event.ts.date()
                self._history.setdefault(decision.customer_id, []).append(
                    (decision.offer, np.datetime64(event.ts.date(), "us"))
                )
        return decision

    def _decide(self, cid: int, event: Event) -> Decision:
        row = self.snapshot.row(cid)
        if row is None:
            return self._none(cid, f"customer not in the online snapshot of {self.snapshot.as_of}")
        triggered = [s for s in self.specs if self._triggers[s.name].matches(event) is None]
        if not triggered:
            return self._none(cid, f"no real-time campaign is triggered by a {event.type} event")
        day = event.ts.date()
        if day < self.snapshot.as_of:
            return self._none(
                cid,
                f"the event ({event.ts:%Y-%m-%d %H:%M}) is older than the online snapshot of "
                f"{self.snapshot.as_of}: a late event is not decided",
            )
        with self._lock:
            if self._offered_today.get(cid) == day:
                return self._none(cid, "already offered a real-time campaign today")
        row = apply_event(row, event, self.snapshot.as_of)
        candidates, reasons = [], []
        for spec in triggered:
            excluded = self._excluded(spec, row, cid, day)
            if excluded:
                reasons.append(f"{spec.name}: {excluded}")
                continue
            score = self.score(spec.model, row)
            threshold = spec.selection.score_threshold
            if score < threshold:
                reasons.append(f"{spec.name}: score {score:.3f} below {threshold:g}")
                continue
            value = score * spec.value_per_response - spec.cost_per_contact
            if value <= 0:
                reasons.append(f"{spec.name}: expected value {value:.2f} <= 0")
                continue
            candidates.append(_Candidate(spec, score, value))
        if not candidates:
            return self._none(cid, "; ".join(reasons))
        best = max(candidates, key=lambda c: (c.expected_value, c.spec.name))
        spec, model = best.spec, self.models[best.spec.model]
        others = [c.spec.name for c in candidates if c is not best]
        runner_up = f" (over {', '.join(others)})" if others else ""
        common = {
            "decision_id": uuid.uuid4().hex,
            "customer_id": cid,
            "campaign": spec.name,
            "channel": spec.channel,
            "score": best.score,
            "expected_value": best.expected_value,
            "model_name": model.name,
            "model_version": model.version,
        }
        if online_holdout(np.array([cid]), spec.salt, spec.holdout_fraction)[0]:
            return Decision(
                offer=None, group=HOLDOUT, reason=f"holdout of {spec.name}: no offer{runner_up}", **common
            )
        return Decision(
            offer=spec.name,
            group=TREATMENT,
            reason=f"expected value {best.expected_value:.2f} = {best.score:.3f} x {spec.value_per_response:g} "
            f"- {spec.cost_per_contact:g}{runner_up}",
            **common,
        )

    def score(self, model: str, row: dict) -> float:
        """The calibrated score of ``model`` for one customer's row (column -> value): the batch path's
        ``predict_proba``, one row encoded without a DataFrame when the model can (``predict_row``)."""
        scorer = self.models[model].model
        if hasattr(scorer, "predict_row"):
            return scorer.predict_row(row)
        return float(scorer.predict_proba(pd.DataFrame([{f: row[f] for f in self._features[model]}]))[0])

    def _excluded(self, spec: Any, row: dict, cid: int, day: date) -> str | None:
        """Why the spec's contact policy or audience excludes the customer on ``day`` (first reason), or None."""
        reason = self.exclusions(spec, day).get(cid)
        if reason is not None:
            return reason
        for rule in self._dynamic[spec.name]:
            if not audience_rule_passes(pd.Series([row.get(rule.column)]), rule, self.branches)[0]:
                return f"audience:{rule.label}"
        return None

    def exclusions(self, spec: Any, day: date) -> dict[int, str]:
        """``{customer_id: "reason (detail)"}`` of the customers the spec's policy and event-independent audience
        rules exclude on ``day``: :func:`apply_policy` over the whole base with the contact history so far, run
        once a day (the first decision of a day pays for it; offers made that day count from the next day on, as
        in a batch run, and the once-a-day rule covers the day itself)."""
        key = (spec.name, day)
        with self._lock:
            found = self._exclusions.get(key)
            if found is not None:
                return found
            contacts = [(c, campaign, d) for c, rows in self._history.items() for campaign, d in rows]
        history = (
            pd.DataFrame(
                {
                    ID: np.array([c for c, _, _ in contacts], dtype=np.int64),
                    "campaign": [campaign for _, campaign, _ in contacts],
                    "contact_date": np.array([d for _, _, d in contacts], dtype="datetime64[us]"),
                }
            )
            if contacts
            else empty_history()
        )
        invalid = self.invalid.get(spec.name, pd.Index([], dtype=np.int64))
        _, excluded = apply_policy(
            self.base,
            self.customers,
            history,
            invalid,
            self._static[spec.name],
            pd.Timestamp(day),
            branches=self.branches,
        )
        detail = excluded["detail"].fillna("").astype(str)
        text = np.where(
            detail != "", excluded["exclusion_reason"] + " (" + detail + ")", excluded["exclusion_reason"]
        )
        found = dict(zip(excluded[ID].to_numpy(np.int64).tolist(), text.tolist(), strict=True))
        with self._lock:
            self._exclusions = {k: v for k, v in self._exclusions.items() if k[1] == day}
            self._exclusions[key] = found
        return found

    @staticmethod
    def _none(cid: int, reason: str) -> Decision:
        return Decision(uuid.uuid4().hex, cid, None, None, None, None, None, None, reason)

    def _log_row(self, d: Decision, event: Event, decided_at: datetime, seconds: float) -> dict:
        return {
            "decision_id": d.decision_id,
            "decided_at": decided_at,
            "customer_id": d.customer_id,
            "event_type": event.type,
            "event_ts": event.ts if event.ts.tzinfo else event.ts.replace(tzinfo=UTC),
            "campaign": d.campaign,
            "offer": d.offer,
            "channel": d.channel,
            "target_group": d.group,
            "score": d.score,
            "expected_value": d.expected_value,
            "reason": d.reason,
            "model_name": d.model_name,
            "model_version": d.model_version,
            "snapshot_as_of": self.snapshot.as_of,
            "latency_ms": seconds * 1000.0,
        }
