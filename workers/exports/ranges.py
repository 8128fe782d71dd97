"""Date ranges in the user's time zone, as half-open UTC instants [start, end).

Boundaries are local midnights, so a range over a DST change is 23 or 25 hours per day
and "last month" is always whole calendar days, whatever the month's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.errors import PermanentError
from shared.jobs.payloads.exports import DateRange


@dataclass(frozen=True)
class Resolved:
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    first_day: date  # local, inclusive
    last_day: date  # local, inclusive
    timezone: str

    @property
    def label(self) -> str:
        return f"{self.first_day.isoformat()} to {self.last_day.isoformat()} ({self.timezone})"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PermanentError(f"unknown time zone {name!r}", code="invalid_timezone") from None


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of `day` in `tz`, in UTC.

    Where midnight falls in a DST gap (e.g. America/Santiago) zoneinfo's fold=0 reading
    maps it to the instant of the jump, which is the day's first existing instant.
    """
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _previous_month_start(first: date) -> date:
    return date(first.year - 1, 12, 1) if first.month == 1 else date(first.year, first.month - 1, 1)


def local_days(spec: DateRange, today: date) -> tuple[date, date]:
    """First and last local day (both inclusive) of `spec`, relative to `today`."""
    if spec.kind == "custom":
        assert spec.start is not None and spec.end is not None  # validated by the model
        return spec.start, spec.end
    if spec.kind == "today":
        return today, today
    if spec.kind == "last_7_days":
        return today - timedelta(days=6), today
    if spec.kind == "last_week":  # the previous ISO week, Monday to Sunday
        monday = today - timedelta(days=today.weekday())
        return monday - timedelta(days=7), monday - timedelta(days=1)
    if spec.kind == "last_month":
        this_month = today.replace(day=1)
        return _previous_month_start(this_month), this_month - timedelta(days=1)
    if spec.kind == "last_quarter":
        this_quarter = _quarter_start(today)
        start = _quarter_start(this_quarter - timedelta(days=1))
        return start, this_quarter - timedelta(days=1)
    return today.replace(month=1, day=1), today  # year_to_date


def resolve(spec: DateRange, timezone: str, now: datetime) -> Resolved:
    tz = zone(timezone)
    today = now.astimezone(tz).date()
    first, last = local_days(spec, today)
    return Resolved(
        start=local_midnight(first, tz),
        end=local_midnight(last + timedelta(days=1), tz),
        first_day=first,
        last_day=last,
        timezone=timezone,
    )
