"""The client's calendar: public holidays and retail events, the days a market moves.

Ad markets move together on a few days a year: Black Friday to Cyber Monday, the
Christmas run-up, Prime Day, national holidays. The anomaly detector lets its shared
market effect move freely on these days and keeps them out of later baselines; the
fatigue detector does the same for its shared CTR factor. Which days they are depends on
the client's country, so the calendar is built per country:

* public holidays from the ``holidays`` package (the maintained "Open World Holidays
  Framework", 200+ countries), each with the day before and after when the holiday
  closes shops (the days around Christmas and New Year, Thanksgiving);
* retail events computed from their rules: Black Friday (the day after the fourth
  Thursday of November, observed worldwide) through Cyber Monday, the two weeks before
  Christmas, Valentine's Day, Mother's and Father's Day where the country keeps them on
  a known Sunday, Halloween, Singles' Day (11 November) in China, and Amazon Prime Day on
  the dates Amazon announced (there is no rule for it; add future ones per client).

A client can add days (a sale of its own, a launch) and remove days (a holiday that
does not matter to it); :func:`client_calendar` applies those edits, which the API
stores per client.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import holidays as _holidays

from omnify.brain.types import BrainInputError

#: Prime Day dates as Amazon announced them (US and most Amazon marketplaces).
PRIME_DAYS: dict[int, tuple[date, date]] = {
    2019: (date(2019, 7, 15), date(2019, 7, 16)),
    2020: (date(2020, 10, 13), date(2020, 10, 14)),
    2021: (date(2021, 6, 21), date(2021, 6, 22)),
    2022: (date(2022, 7, 12), date(2022, 7, 13)),
    2023: (date(2023, 7, 11), date(2023, 7, 12)),
    2024: (date(2024, 7, 16), date(2024, 7, 17)),
    2025: (date(2025, 7, 8), date(2025, 7, 11)),
}
_PRIME_COUNTRIES = {"US", "CA", "GB", "DE", "FR", "IT", "ES", "NL", "JP", "AU", "MX", "BR", "IN", "SE", "PL", "BE"}
_MOTHERS_DAY_SECOND_SUNDAY_MAY = {"US", "CA", "AU", "DE", "IT", "NL", "BE", "JP", "CN", "BR", "CH", "AT", "DK", "FI"}
_FATHERS_DAY_THIRD_SUNDAY_JUNE = {"US", "CA", "GB", "FR", "NL", "JP", "CN", "IN", "IE", "MX"}
_SHOP_CLOSING = ("christmas", "thanksgiving", "new year")


@dataclass(frozen=True)
class CalendarEvent:
    start: date
    end: date  # inclusive
    name: str
    kind: str  # "holiday" | "retail" | "custom"
    core: date | None = None
    """The holiday itself when ``start``..``end`` widens it to the shop-closing days around it."""

    def days(self) -> list[date]:
        return [self.start + timedelta(days=k) for k in range((self.end - self.start).days + 1)]


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    d = date(year, month, 1)
    d += timedelta(days=(weekday - d.weekday()) % 7)
    return d + timedelta(weeks=n - 1)


def retail_events(country: str, year: int) -> list[CalendarEvent]:
    """Retail events of one year in one country (rules, not a lookup service)."""
    cc = country.upper()
    thanksgiving = _nth_weekday(year, 11, 3, 4)  # the fourth Thursday of November
    black_friday = thanksgiving + timedelta(days=1)
    out = [
        CalendarEvent(black_friday - timedelta(days=7), thanksgiving, "Black Friday week", "retail"),
        CalendarEvent(black_friday, black_friday + timedelta(days=3), "Black Friday to Cyber Monday", "retail"),
        CalendarEvent(date(year, 12, 8), date(year, 12, 23), "Christmas shopping", "retail"),
        CalendarEvent(date(year, 2, 13), date(year, 2, 14), "Valentine's Day", "retail"),
        CalendarEvent(date(year, 10, 31), date(year, 10, 31), "Halloween", "retail"),
        CalendarEvent(date(year, 12, 26), date(year, 12, 31), "After Christmas", "retail"),
    ]
    if cc in _MOTHERS_DAY_SECOND_SUNDAY_MAY:
        md = _nth_weekday(year, 5, 6, 2)
        out.append(CalendarEvent(md - timedelta(days=3), md, "Mother's Day", "retail"))
    if cc in _FATHERS_DAY_THIRD_SUNDAY_JUNE:
        fd = _nth_weekday(year, 6, 6, 3)
        out.append(CalendarEvent(fd - timedelta(days=3), fd, "Father's Day", "retail"))
    if cc == "CN":
        out.append(CalendarEvent(date(year, 11, 11), date(year, 11, 11), "Singles' Day", "retail"))
    if cc in _PRIME_COUNTRIES and year in PRIME_DAYS:
        a, b = PRIME_DAYS[year]
        out.append(CalendarEvent(a, b, "Prime Day", "retail"))
    return out


def public_holidays(country: str, year: int) -> list[CalendarEvent]:
    try:
        table = _holidays.country_holidays(country.upper(), years=[year])
    except NotImplementedError as exc:
        raise BrainInputError(f"no holiday calendar for country {country!r}") from exc
    out = []
    for day, name in sorted(table.items()):
        start = end = day
        if any(word in name.lower() for word in _SHOP_CLOSING):
            start, end = day - timedelta(days=1), day + timedelta(days=1)
        out.append(CalendarEvent(start, end, str(name), "holiday", day))
    return out


def supported_countries() -> frozenset[str]:
    """ISO codes the holiday tables cover."""
    return frozenset(str(c) for c in _holidays.list_supported_countries())


def calendar_days(country: str | None, start: date, end: date, *, added: Iterable[CalendarEvent] = (),
                  removed: Sequence[date] = ()) -> list[tuple[date, str, str]]:
    """(day, name, kind) of every market day in ``start``..``end`` after the client's edits, sorted."""
    named: dict[date, tuple[int, str, str]] = {}
    for e in [*country_calendar(country, start, end), *added]:
        for d in e.days():
            # a day's name: the client's own event, then a holiday on its own day, then a retail
            # event, then the shop-closing days around a holiday
            rank = (1 if e.core in (None, d) else 3) if e.kind == "holiday" else 0 if e.kind == "custom" else 2
            if start <= d <= end and (d not in named or rank < named[d][0]):
                named[d] = (rank, e.name, e.kind)
    gone = set(removed)
    return [(d, n, k) for d, (_r, n, k) in sorted(named.items()) if d not in gone]


def country_calendar(country: str | None, start: date, end: date) -> list[CalendarEvent]:
    """Holidays and retail events overlapping ``start``..``end``; empty without a country."""
    if not country:
        return []
    out: list[CalendarEvent] = []
    for year in range(start.year, end.year + 1):
        out += public_holidays(country, year) + retail_events(country, year)
    return sorted((e for e in out if e.end >= start and e.start <= end), key=lambda e: (e.start, e.name))


def client_calendar(
    country: str | None,
    start: date,
    end: date,
    *,
    added: Iterable[CalendarEvent] = (),
    removed: Sequence[date] = (),
) -> list[date]:
    """The calendar days the brain treats as market days: the country's, plus and minus the client's edits."""
    return [d for d, _name, _kind in calendar_days(country, start, end, added=added, removed=removed)]
