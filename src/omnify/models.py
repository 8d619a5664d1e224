"""Imports every model module so ``Base.metadata`` is complete (Alembic, create_all).

A new domain with tables adds its ``models`` module to the import list below.
"""

from __future__ import annotations

from omnify.actions import models as action_models
from omnify.audit import models as audit_models
from omnify.auth import models as auth_models
from omnify.brain_runs import models as brain_run_models
from omnify.campaigns import models as campaign_models
from omnify.chat import models as chat_models
from omnify.clients import models as client_models
from omnify.connections import models as connection_models
from omnify.core.db import Base, TenantMixin
from omnify.credentials import models as credential_models
from omnify.events import models as event_models
from omnify.files import models as file_models
from omnify.jobs import models as job_models
from omnify.notifications import models as notification_models
from omnify.onboarding import models as onboarding_models
from omnify.orgs import models as org_models
from omnify.privacy import models as privacy_models
from omnify.recommendations import models as recommendation_models
from omnify.reports import models as report_models
from omnify.rules import models as rule_models
from omnify.sync import models as sync_models
from omnify.webhooks import models as webhook_models

MODEL_MODULES = (
    action_models,
    audit_models,
    auth_models,
    brain_run_models,
    campaign_models,
    chat_models,
    client_models,
    connection_models,
    credential_models,
    event_models,
    file_models,
    job_models,
    notification_models,
    onboarding_models,
    org_models,
    privacy_models,
    recommendation_models,
    report_models,
    rule_models,
    sync_models,
    webhook_models,
)

__all__ = ["MODEL_MODULES", "Base", "tenant_tables"]


def tenant_tables() -> list[str]:
    """Tables that carry ``org_id`` from TenantMixin: each must have an RLS policy."""
    return sorted(
        table.name
        for table in Base.metadata.sorted_tables
        if "org_id" in table.c
        and any(m.local_table is table and issubclass(m.class_, TenantMixin) for m in Base.registry.mappers)
    )
