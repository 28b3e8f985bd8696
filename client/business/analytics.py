"""Analytics from an allow-list: counts per transport and day, and response times.

Only :data:`ANALYTICS_FIELDS` ever leave this module, computed from the store's timeline
(transport, conversation, direction, time; :meth:`~client.business.store.InboxStore.timeline`)
and nothing else: no text, name, file or peer is read, so none can be reported. A response time
runs from the first customer message a conversation has not had an answer to, to the next
message sent to the customer (by an agent here or another device of the business); it counts on
the day the customer wrote. Days are UTC.
"""

from __future__ import annotations

import datetime
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True, slots=True)
class DayFigures:
    """One transport's figures for one day (the allow-list: these fields and no others)."""

    day: str
    """``YYYY-MM-DD`` (UTC)."""
    transport: str
    received: int
    """Messages from customers."""
    sent: int
    """Messages to customers."""
    answered: int
    """Customer messages that started a wait which an answer ended."""
    median_response_seconds: float | None
    """The median of those waits (None when there were none)."""


ANALYTICS_FIELDS = tuple(field.name for field in fields(DayFigures))


def _day(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d")


def daily_figures(timeline: Iterable[tuple[str, int, bool, float]]) -> list[DayFigures]:
    """The figures per day and transport of a timeline (``transport, conversation, incoming,
    at``, in time order), newest day first."""
    counts: dict[tuple[str, str], list[int]] = {}
    waits: dict[tuple[str, str], list[float]] = {}
    waiting: dict[int, tuple[str, float]] = {}  # conversation -> (day key, since)
    for transport, conversation, incoming, at in timeline:
        key = (_day(at), transport)
        counts.setdefault(key, [0, 0])[0 if incoming else 1] += 1
        if incoming:
            waiting.setdefault(conversation, (key[0], at))
        elif conversation in waiting:
            day, since = waiting.pop(conversation)
            waits.setdefault((day, transport), []).append(max(0.0, at - since))
    figures = []
    for day, transport in sorted(set(counts) | set(waits), reverse=True):
        received, sent = counts.get((day, transport), [0, 0])
        times = waits.get((day, transport), [])
        figures.append(DayFigures(day, transport, received, sent, len(times),
                                  statistics.median(times) if times else None))
    return figures


def as_records(figures: Iterable[DayFigures]) -> list[dict[str, object]]:
    """The figures as JSON objects, with exactly :data:`ANALYTICS_FIELDS`."""
    return [asdict(figure) for figure in figures]
