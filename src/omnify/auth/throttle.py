"""Failed-login throttling that neither reveals accounts nor lets strangers lock them.

The lockout it replaces counted failures on the user row: an existing account answered
``429 account-locked`` after five guesses while an unknown address kept answering 401
(account enumeration), and anyone could lock anyone out for fifteen minutes.

What is counted, and why:

* **per (e-mail, client address)**: ``OMNIFY_LOGIN_MAX_FAILURES`` free failures within
  ``OMNIFY_LOGIN_LOCKOUT_SECONDS``; each further failure doubles a wait (30 s, 60 s, ...
  capped at that window). A guesser is slowed on *their* address only; the owner, from
  theirs, is not affected.
* **per e-mail, across addresses**: past ``OMNIFY_LOGIN_ACCOUNT_MAX_FAILURES`` failures
  in the window, addresses that have not signed in to this e-mail within
  :data:`KNOWN_FOR` get the same doubling wait. This slows a distributed attack on one
  account; an address the owner signed in from keeps working, and a password reset
  clears everything.
* per client address over all e-mails: the ``ip`` rate limit (``OMNIFY_RATE_LIMIT_AUTH``)
  on every /auth endpoint, which sees the real address through the trusted proxies.

Everything is keyed on what was typed (HMAC under the secret key), never on whether an
account exists, so an unknown e-mail is throttled exactly like a real one and both get
the same ``429 too-many-attempts``. The check runs before the password hash is
verified, and a refused attempt is not counted (a user retrying does not extend it).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.auth import repository
from omnify.core.errors import RateLimited
from omnify.settings import Settings

#: First wait once the free failures are spent; doubles with each further failure.
FIRST_DELAY_SECONDS = 30
#: How long a successful sign-in keeps an address "known" for its e-mail.
KNOWN_FOR = timedelta(days=30)


class TooManyAttempts(RateLimited):
    code, title = "too-many-attempts", "Too many failed sign-ins"


@dataclass(frozen=True, slots=True)
class LoginKeys:
    account: str  # the e-mail
    pair: str  # the e-mail from this client address
    whole: str  # the e-mail from anywhere (the account-wide row)


def _mac(settings: Settings, text: str) -> str:
    return hmac.new(settings.secret_key.get_secret_value().encode(), text.encode(), hashlib.sha256).hexdigest()


def keys_for(settings: Settings, email: str, ip: str | None) -> LoginKeys:
    email = email.strip().lower()
    return LoginKeys(account=_mac(settings, f"account\0{email}"), pair=_mac(settings, f"pair\0{email}\0{ip or '-'}"),
                     whole=_mac(settings, f"whole\0{email}"))


def delay_seconds(settings: Settings, over: int) -> int:
    """Wait after the ``over``-th failure beyond the free ones (0 = the first such)."""
    return int(min(settings.login_lockout_seconds, FIRST_DELAY_SECONDS * 2 ** min(over, 32)))


async def check(session: AsyncSession, settings: Settings, keys: LoginKeys, now: datetime) -> None:
    """Raise :class:`TooManyAttempts` while this attempt must wait."""
    rows = await repository.get_throttles(session, [keys.pair, keys.whole])
    pair, whole = rows.get(keys.pair), rows.get(keys.whole)
    if pair is not None and pair.blocked_until is not None and pair.blocked_until > now:
        _refuse(pair.blocked_until, now, "from your network")
    known = pair is not None and pair.known_until is not None and pair.known_until > now
    if not known and whole is not None and whole.blocked_until is not None and whole.blocked_until > now:
        _refuse(whole.blocked_until, now, "from new devices")


def _refuse(until: datetime, now: datetime, where: str) -> None:
    retry = max(1, math.ceil((until - now).total_seconds()))
    raise TooManyAttempts(
        f"Too many failed sign-ins for this e-mail address {where}; try again in {retry} s, "
        "or reset your password.",
        headers={"Retry-After": str(retry)},
        retry_after=retry,
    )


async def failed(session: AsyncSession, settings: Settings, keys: LoginKeys, now: datetime) -> None:
    """Count a wrong password (or an unknown e-mail: the same thing from outside)."""
    window_start = now - timedelta(seconds=settings.login_lockout_seconds)
    for key, free in ((keys.pair, settings.login_max_failures), (keys.whole, settings.login_account_max_failures)):
        failures = await repository.count_failure(session, key, keys.account, now, window_start)
        if failures >= free:
            wait = timedelta(seconds=delay_seconds(settings, failures - free))
            await repository.block_until(session, key, now + wait)


async def succeeded(session: AsyncSession, keys: LoginKeys, now: datetime) -> None:
    """The right password: this address is known now, and the e-mail's count starts over."""
    await repository.mark_known(session, keys.pair, keys.account, now, now + KNOWN_FOR)
    await repository.clear_failures(session, keys.account, now, keys=[keys.whole])


async def forget(session: AsyncSession, settings: Settings, email: str, now: datetime) -> None:
    """Clear every failure of an e-mail (after a password reset proved who is asking)."""
    await repository.clear_failures(session, keys_for(settings, email, None).account, now)
