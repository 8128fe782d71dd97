"""Export date ranges in the user's time zone: DST days, month and quarter ends, leap years."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from shared.errors import PermanentError
from shared.jobs.payloads.exports import DateRange
from workers.exports.ranges import local_days, resolve


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "today", "first", "last"),
    [
        ("today", date(2026, 3, 31), date(2026, 3, 31), date(2026, 3, 31)),
        ("last_7_days", date(2026, 3, 2), date(2026, 2, 24), date(2026, 3, 2)),
        ("last_week", date(2026, 3, 4), date(2026, 2, 23), date(2026, 3, 1)),  # a Wednesday
        ("last_week", date(2026, 3, 2), date(2026, 2, 23), date(2026, 3, 1)),  # a Monday
        ("last_month", date(2026, 3, 31), date(2026, 2, 1), date(2026, 2, 28)),
        ("last_month", date(2024, 3, 1), date(2024, 2, 1), date(2024, 2, 29)),  # leap year
        ("last_month", date(2026, 1, 15), date(2025, 12, 1), date(2025, 12, 31)),
        ("last_quarter", date(2026, 1, 1), date(2025, 10, 1), date(2025, 12, 31)),
        ("last_quarter", date(2026, 6, 30), date(2026, 1, 1), date(2026, 3, 31)),
        ("year_to_date", date(2026, 12, 31), date(2026, 1, 1), date(2026, 12, 31)),
    ],
)
def test_relative_ranges_are_whole_local_days(
    kind: str, today: date, first: date, last: date
) -> None:
    assert local_days(DateRange(kind=kind), today) == (first, last)  # type: ignore[arg-type]


def test_today_is_the_users_today_not_utcs() -> None:
    # 23:30 UTC on March 31 is already April 1 in Oslo (CEST, UTC+2).
    resolved = resolve(DateRange(kind="today"), "Europe/Oslo", at("2026-03-31T23:30:00"))
    assert resolved.first_day == date(2026, 4, 1)
    assert resolved.start == at("2026-03-31T22:00:00")
    # ...and still March 31 in Los Angeles.
    la = resolve(DateRange(kind="today"), "America/Los_Angeles", at("2026-03-31T23:30:00"))
    assert la.first_day == date(2026, 3, 31)


def test_spring_forward_day_has_23_hours_and_fall_back_25() -> None:
    spring = DateRange.model_validate({"kind": "custom", "from": "2026-03-29", "to": "2026-03-29"})
    resolved = resolve(spring, "Europe/Oslo", at("2026-04-10T12:00:00"))
    assert resolved.end - resolved.start == timedelta(hours=23)
    assert resolved.start == at("2026-03-28T23:00:00")  # midnight CET
    autumn = DateRange.model_validate({"kind": "custom", "from": "2026-10-25", "to": "2026-10-25"})
    resolved = resolve(autumn, "Europe/Oslo", at("2026-11-10T12:00:00"))
    assert resolved.end - resolved.start == timedelta(hours=25)


def test_month_across_dst_starts_in_winter_time_and_ends_in_summer_time() -> None:
    march = DateRange.model_validate({"kind": "custom", "from": "2026-03-01", "to": "2026-03-31"})
    resolved = resolve(march, "Europe/Oslo", at("2026-04-10T12:00:00"))
    assert resolved.start == at("2026-02-28T23:00:00")  # UTC+1
    assert resolved.end == at("2026-03-31T22:00:00")  # UTC+2


def test_midnight_in_a_dst_gap_starts_the_day_at_the_jump() -> None:
    # Chile springs forward at 24:00 on 2026-09-05: local midnight of Sept 6 does not exist.
    day = DateRange.model_validate({"kind": "custom", "from": "2026-09-06", "to": "2026-09-06"})
    resolved = resolve(day, "America/Santiago", at("2026-09-10T12:00:00"))
    assert resolved.start == at("2026-09-06T04:00:00")  # the instant clocks jump to 01:00
    assert resolved.end - resolved.start == timedelta(hours=23)


def test_unknown_zone_and_bad_custom_ranges_are_refused() -> None:
    with pytest.raises(PermanentError) as caught:
        resolve(DateRange(kind="today"), "Mars/Olympus", at("2026-01-01T00:00:00"))
    assert caught.value.code == "invalid_timezone"
    for bad in (
        {"kind": "custom", "from": "2026-02-01"},
        {"kind": "custom", "from": "2026-02-01", "to": "2026-01-01"},
        {"kind": "today", "from": "2026-02-01"},
        {"kind": "custom", "from": "9999-12-30", "to": "9999-12-31"},
    ):
        with pytest.raises(ValueError):
            DateRange.model_validate(bad)
