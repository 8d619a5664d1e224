"""Page routers, in the order they are mounted."""

from __future__ import annotations

from omnify.web.views import (
    account,
    admin_jobs,
    audit,
    clients,
    connections,
    dashboard,
    onboarding,
    orgs,
    privacy,
    recommendations,
    rules,
    settings,
    webhooks,
)

ROUTERS = [account.router, orgs.router, clients.router, dashboard.router, connections.router, onboarding.router,
           settings.router, rules.router, audit.router, recommendations.router,
           webhooks.router, privacy.router, admin_jobs.router]
