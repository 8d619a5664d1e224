"""`omnify keys ...`: master-key rotation for the envelope-encrypted credentials.

Mounted by the main CLI with ``app.add_typer(keys_app, name="keys")``. Commands connect
with the migration (owner) URL like the other maintenance commands, and walk each
organization with its tenant bound, so they also work under row-level security.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from omnify.core.db import Database
from omnify.core.secrets import MasterKeyError
from omnify.credentials import keys
from omnify.settings import Settings, get_settings

keys_app = typer.Typer(help="Master keys of the encrypted platform credentials: rotate, re-wrap, retire.",
                       no_args_is_help=True)

T = TypeVar("T")


def _run(fn: Callable[[Settings, Database], Awaitable[T]]) -> T:
    settings = get_settings()

    async def main() -> T:
        db = Database(settings, settings.resolved_migration_database_url)
        try:
            return await fn(settings, db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except (MasterKeyError, keys.RetireRefused) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


def _print_report(report: keys.RewrapReport) -> None:
    typer.echo(f"active key {report.active_key_id}: {report.rewrapped} data key(s) re-wrapped, "
               f"{report.changed_meanwhile} changed meanwhile (already fresh), {len(report.failed)} failed")
    for failure in report.failed:
        typer.secho(f"  failed: {failure}", fg=typer.colors.RED, err=True)


@keys_app.command("rotate")
def rotate() -> None:
    """Add a new active master key and re-wrap every data key under it.

    Old keys stay readable; retire them with `omnify keys retire` once every process
    has picked up the new key (5 minutes, the key-ring cache TTL).
    """
    result = _run(keys.rotate)
    typer.echo(f"new active master key: {result.new_key_id} ({result.backend} backend)")
    if result.env_value is not None:
        typer.echo("The env backend cannot change the running environment. Deploy this value as "
                   "OMNIFY_MASTER_KEYS to every process, then run `omnify keys rewrap`:")
        typer.echo(result.env_value.get_secret_value())
        return
    assert result.report is not None
    _print_report(result.report)
    if result.report.failed:
        raise typer.Exit(1)


@keys_app.command("rewrap")
def rewrap_cmd() -> None:
    """Re-wrap every data key under the currently active master key (idempotent)."""
    report = _run(keys.rewrap)
    _print_report(report)
    if report.failed:
        raise typer.Exit(1)


@keys_app.command("retire")
def retire(
    key_id: Annotated[str, typer.Argument(help="The old master key id to remove.")],
    force: Annotated[bool, typer.Option(help="Skip the wait for other processes' key-ring caches.")] = False,
) -> None:
    """Remove an old master key after checking no stored data key still needs it."""

    async def run(settings: Settings, db: Database) -> keys.RetireResult:
        return await keys.retire(settings, db, key_id, force=force)

    result = _run(run)
    _print_report(result.report)
    typer.echo(f"master key {result.key_id} retired")
    if result.env_value is not None:
        typer.echo("Deploy this value as OMNIFY_MASTER_KEYS:")
        typer.echo(result.env_value.get_secret_value())


@keys_app.command("status")
def status() -> None:
    """Show the active key and how many credentials each master key wraps."""

    async def run(settings: Settings, db: Database) -> tuple[str, dict[str, int]]:
        ring = await keys.keyrings_for(settings).refresh()
        return ring.active_key_id, await keys.key_usage(db)

    active, usage = _run(run)
    typer.echo(f"active: {active}")
    for key_id, count in sorted(usage.items()):
        marker = " (active)" if key_id == active else ""
        typer.echo(f"{key_id}: {count} credential(s){marker}")
