"""Mounts every domain router under ``/api/v1``; a new domain adds its router here."""

from __future__ import annotations

from fastapi import APIRouter

from omnify.actions.router import router as actions_router
from omnify.analytics.router import router as analytics_router
from omnify.audit.router import router as audit_router
from omnify.auth.router import router as auth_router
from omnify.brain_runs.router import router as brain_runs_router
from omnify.campaigns.router import router as campaigns_router
from omnify.chat.router import router as chat_router
from omnify.clients.router import router as clients_router
from omnify.connections.router import router as connections_router
from omnify.credentials.router import router as credentials_router
from omnify.files.router import router as files_router
from omnify.jobs.router import build_router as build_jobs_router
from omnify.onboarding.router import router as onboarding_router
from omnify.orgs.router import router as orgs_router
from omnify.privacy.router import router as privacy_router
from omnify.recommendations.router import router as recommendations_router
from omnify.reports.router import router as reports_router
from omnify.rules.router import router as rules_router
from omnify.sync.router import router as sync_router
from omnify.webhooks.router import router as webhooks_router

api_router = APIRouter()
# Routes are matched in order, one pattern after another (FastAPI's included routers are
# not indexed): the busiest read - dashboards polling analytics - comes first, which saves
# it a hundred pattern matches per request (issue 16).
for domain_router in (
    analytics_router,
    auth_router,
    orgs_router,
    audit_router,
    clients_router,
    files_router,
    credentials_router,
    campaigns_router,
    onboarding_router,
    connections_router,
    sync_router,
    privacy_router,
    build_jobs_router(),
    webhooks_router,
    brain_runs_router,
    recommendations_router,
    actions_router,
    rules_router,
    chat_router,
    reports_router,
):
    api_router.include_router(domain_router)
