"""Demo data for `omnify up`: an organization and a user to log in with.

The password is random per data directory and kept in ``<data_dir>/demo-credentials.json``
(mode 0600) so a laptop demo never ships a well-known password.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from omnify.auth import repository as auth_repo
from omnify.auth import service as auth_service
from omnify.core.context import Actor
from omnify.core.db import Database
from omnify.core.private_files import replace_private
from omnify.settings import Settings

DEMO_EMAIL = "demo@example.com"
DEMO_ORG = "Demo Agency"


@dataclass(frozen=True, slots=True)
class DemoLogin:
    email: str
    password: str
    created: bool


def _credentials_file(settings: Settings) -> Path:
    return settings.data_dir / "demo-credentials.json"


async def ensure_demo(settings: Settings, db: Database, email: str = DEMO_EMAIL) -> DemoLogin:
    path = _credentials_file(settings)
    async with db.sessionmaker() as session:
        existing = await auth_repo.get_user_by_email(session, email)
        saved = json.loads(path.read_text()) if path.exists() else {}
        if existing is not None and saved.get("email") == email:
            return DemoLogin(saved["email"], saved["password"], created=False)
        if existing is not None:
            return DemoLogin(email, "(unknown: delete the data directory to re-seed)", created=False)
        password = "demo-" + secrets.token_urlsafe(12)
        await auth_service.register(
            session, settings, Actor.system("omnify up"), email=email, password=password,
            name="Demo Marketer", organization_name=DEMO_ORG,
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Private from the first byte (a write then chmod leaves the password readable for a moment).
    replace_private(path, json.dumps({"email": email, "password": password}))
    return DemoLogin(email, password, created=True)
