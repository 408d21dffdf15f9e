"""Fixed quota windows and the calendar day usage is billed to.

A MINUTE window is a UTC epoch minute. A DAY window is a calendar day in
settings.TIME_ZONE (midnight to midnight, local time): partners read their
daily quota and their usage page in the platform's time zone, so "today's
quota" and "today's usage" are the same day. Every minute window lies inside
one local day because real time-zone offsets are whole minutes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.db import models
from django.utils import timezone

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Window(models.TextChoices):
    MINUTE = "minute", "minute"
    DAY = "day", "day"

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """The [start, end) of the window containing `now`, both aware and in UTC."""
        if self is Window.MINUTE:
            minute = timedelta(minutes=1)
            start = EPOCH + (now - EPOCH) // minute * minute
            return start, start + minute
        return day_bounds(usage_day(now))


def usage_day(now: datetime) -> date:
    """The calendar day (in settings.TIME_ZONE) that usage at `now` is counted for."""
    return now.astimezone(timezone.get_default_timezone()).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """Local midnight to the next local midnight, in UTC (23 or 25 hours long across a DST change)."""
    zone = timezone.get_default_timezone()
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)
