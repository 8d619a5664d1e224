"""Which API version each connector calls, and when the platform stops serving it.

Why this exists: every ad platform switches old API versions off on a published date, and a
connector pinned to a switched-off version fails in production all at once (Meta answers
error 2635, Google ``UNSUPPORTED_VERSION`` then 404, Shopify silently serves a newer schema).
So each platform keeps, in one module (``integrations/<platform>/version.py``, attribute
``POLICY``), the version its connector pins and the platform's published version table, with
the source of every date. Everything else reads from there: the connector's default, the
settings default, the sandbox (which serves only versions live on the table and answers an
expired one the way the platform does) and the gate test, which fails when the pinned version
is within :data:`WARN_DAYS` of its sunset, so the suite goes red two months before production
would.

``today`` is always a parameter (never read inside), so the gate can be exercised with any
date; the sandboxes default to the date the table was last checked (``reviewed``), which keeps
their behaviour independent of the wall clock. A version whose end date the platform has not
published yet ("TBD") carries an *assumed* sunset with the reason for it, so the gate still
fires if nobody comes back to update the table.

A new platform adds ``integrations/<name>/version.py`` with a ``POLICY``; :func:`policies`
finds it without any registry edit here.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

#: The gate's warning window: a pinned version this close to its sunset fails the suite.
WARN_DAYS = 60


@dataclass(frozen=True, slots=True)
class ApiVersion:
    """One row of a platform's version table."""

    name: str
    released: date
    sunset: date  # the first day the platform no longer serves it
    published: bool = True  # False: the platform says TBD; ``sunset`` is our assumption
    note: str = ""  # why an assumed date is what it is

    def served_on(self, today: date) -> bool:
        return self.released <= today < self.sunset


class VersionExpired(Exception):
    """The version asked for is past its sunset (or too close to it, for the gate)."""

    def __init__(self, platform: str, version: str, message: str) -> None:
        super().__init__(message)
        self.platform = platform
        self.version = version


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """A platform's version table and the version its connector pins."""

    platform: str
    pinned: str
    reviewed: date  # when the table was last checked against the platform's pages
    versions: tuple[ApiVersion, ...]
    sources: tuple[str, ...]  # the platform pages the dates come from
    upgrade_doc: str = "docs/integrations.md#api-versions"
    _by_name: dict[str, ApiVersion] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {v.name: v for v in self.versions}
        if len(by_name) != len(self.versions):
            raise ValueError(f"{self.platform}: duplicate version in the table")
        if self.pinned not in by_name:
            raise ValueError(f"{self.platform}: pinned version {self.pinned} is not in the table")
        object.__setattr__(self, "_by_name", by_name)

    def get(self, name: str) -> ApiVersion | None:
        return self._by_name.get(name)

    @property
    def current(self) -> ApiVersion:
        return self._by_name[self.pinned]

    def served(self, today: date | None = None) -> list[str]:
        """Versions the platform serves on ``today`` (default: the review date), newest first."""
        when = today or self.reviewed
        live = [v for v in self.versions if v.served_on(when)]
        return [v.name for v in sorted(live, key=lambda v: v.released, reverse=True)]

    def is_served(self, name: str, today: date | None = None) -> bool:
        version = self.get(name)
        return version is not None and version.served_on(today or self.reviewed)

    def is_expired(self, name: str, today: date | None = None) -> bool:
        """Past its sunset; a name older than every row (``v19.0`` when the table starts at
        v21.0) was switched off long ago. A newer unknown name is neither served nor expired."""
        version = self.get(name)
        if version is None:
            key, oldest = _order(name), min(_order(v.name) for v in self.versions)
            return bool(key) and key < oldest
        return (today or self.reviewed) >= version.sunset

    def oldest_served(self, today: date | None = None) -> str | None:
        live = self.served(today)
        return live[-1] if live else None

    def days_left(self, name: str, today: date) -> int:
        version = self.get(name)
        if version is None:
            raise VersionExpired(self.platform, name, f"{self.platform}: {name} is not in the version table")
        return (version.sunset - today).days

    def check(self, today: date, version: str | None = None, *, warn_days: int = WARN_DAYS) -> int:
        """Raise :class:`VersionExpired` when ``version`` (default: the pinned one) is unknown,
        not yet released, or within ``warn_days`` of its sunset on ``today``; else return the
        days left."""
        name = version or self.pinned
        row = self.get(name)
        if row is None:
            raise VersionExpired(self.platform, name, f"{self.platform}: {name} is not in the version table "
                                 f"({', '.join(v.name for v in self.versions)})")
        if today < row.released:
            raise VersionExpired(self.platform, name, f"{self.platform}: {name} is not released until {row.released}")
        left = (row.sunset - today).days
        if left < warn_days:
            kind = "sunsets" if row.published else "is assumed to sunset"
            raise VersionExpired(
                self.platform, name,
                f"{self.platform} API {name} {kind} on {row.sunset} ({left} days from {today}; the gate wants "
                f"{warn_days}). Move to one of {', '.join(self.served(today)) or 'the newer versions'} "
                f"(see {self.upgrade_doc}; sources: {', '.join(self.sources)})",
            )
        return left


def _order(name: str) -> tuple[int, ...]:
    """``v26.0`` -> (26, 0), ``2026-10`` -> (2026, 10): every platform's names sort this way."""
    return tuple(int(part) for part in re.findall(r"\d+", name))


def policies() -> dict[str, VersionPolicy]:
    """Every platform's policy, found by importing ``omnify.integrations.<pkg>.version``."""
    import omnify.integrations as package

    found: dict[str, VersionPolicy] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            continue
        try:
            module = importlib.import_module(f"{package.__name__}.{info.name}.version")
        except ModuleNotFoundError as exc:
            if exc.name == f"{package.__name__}.{info.name}.version":
                continue
            raise
        policy = getattr(module, "POLICY", None)
        if isinstance(policy, VersionPolicy):
            found[policy.platform] = policy
    return found


def check_all(today: date, configured: Iterable[tuple[str, str]] = (), *,
              warn_days: int = WARN_DAYS) -> dict[str, int]:
    """The gate over every platform: pinned versions plus any ``(platform, version)`` configured
    on top (settings). Raises on the first problem with every problem in the message."""
    table = policies()
    problems: list[str] = []
    left: dict[str, int] = {}
    checks = [(p, pol.pinned) for p, pol in table.items()] + list(configured)
    for platform, version in checks:
        policy = table.get(platform)
        if policy is None:
            problems.append(f"{platform}: no version policy")
            continue
        try:
            left[f"{platform}:{version}"] = policy.check(today, version, warn_days=warn_days)
        except VersionExpired as exc:
            problems.append(str(exc))
    if problems:
        raise VersionExpired("*", "*", "\n".join(problems))
    return left


def pinned_version(platform: str) -> str:
    """The version a platform's connector pins (settings use it when none is configured)."""
    return policies()[platform].pinned


def expired_versions(configured: Iterable[tuple[str, str]], today: date | None = None) -> list[str]:
    """``platform version (sunset ...)`` for each configured version the platform no longer
    serves on ``today`` (default: the wall-clock date; production start-up refuses these)."""
    when = today or date.today()
    table = policies()
    out = []
    for platform, version in configured:
        policy = table.get(platform)
        row = policy.get(version) if policy else None
        if row is not None and when >= row.sunset:
            out.append(f"{platform} {version} (sunset {row.sunset})")
    return out
