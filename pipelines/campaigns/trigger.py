"""The ``trigger:`` block of a real-time campaign: which events put the campaign's offer on the table.

```yaml
trigger:
  events: [login, bill_view]        # app event types, "transaction" or "location"
  min_amount: 200                   # transactions only: at least this amount
  within_km: {of: BR012, km: 2}     # the event's location within 2 km of a branch (or of [lat, lon])
```

A campaign with a trigger is decided one event at a time by the decision service (``pmp decide serve``,
docs/realtime.md) with its model, audience rules, contact policy and holdout; it has no batch scoring DAG. Its
selection is a ``score_threshold`` (there is no population to take a top-k of) and its holdout a fixed fraction.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.campaigns.place_rules import WithinKm, target_point, within_km
from pipelines.data.schema import APP_EVENT_TYPES

TRIGGER_EVENTS = (*APP_EVENT_TYPES, "transaction", "location")


class Trigger(BaseModel):
    """When a real-time campaign is considered (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: Annotated[tuple[str, ...], Field(min_length=1)]
    min_amount: Annotated[float, Field(gt=0.0)] | None = None
    within_km: WithinKm | None = None

    @field_validator("events")
    @classmethod
    def _known_events(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [e for e in v if e not in TRIGGER_EVENTS]
        if unknown:
            raise ValueError(f"unknown event type(s) {unknown}; use {', '.join(TRIGGER_EVENTS)}")
        if len(set(v)) != len(v):
            raise ValueError(f"events repeat a type: {list(v)}")
        return v

    @model_validator(mode="after")
    def _amount_needs_transactions(self) -> Trigger:
        if self.min_amount is not None and "transaction" not in self.events:
            raise ValueError("min_amount applies to transaction events: add 'transaction' to events")
        return self

    def resolved(self, branches: Any = None) -> Trigger:
        """This trigger with a ``within_km`` branch id replaced by the branch's ``[lat, lon]`` (from ``branches``,
        a lake's branches table, or the places catalogue); ValueError naming the id when it is unknown."""
        if self.within_km is None or not isinstance(self.within_km.of, str):
            return self
        point = target_point(self.within_km, branches)
        return self.model_copy(update={"within_km": self.within_km.model_copy(update={"of": point})})

    def matches(self, event: Any, branches: Any = None) -> str | None:
        """None when ``event`` (a :class:`pipelines.features.online.Event`) meets the trigger, else why not."""
        if event.type not in self.events:
            return f"a {event.type} event does not trigger it"
        if self.min_amount is not None and event.type == "transaction" and event.amount < self.min_amount:
            return f"amount {event.amount:g} below {self.min_amount:g}"
        if self.within_km is not None:
            if event.lat is None or event.lon is None:
                return "the event has no location"
            if not within_km(self.within_km, event.lat, event.lon, branches=branches):
                return f"the event is not {self.within_km.label}"
        return None
