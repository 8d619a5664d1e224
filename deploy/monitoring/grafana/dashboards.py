"""Omnify's Grafana dashboards as code (grafanalib).

Why code rather than exported JSON: panels are reviewed in diffs, every query uses the metric names
fixed in METRICS.md from one place, and the layout cannot drift between environments. The JSON in
``dashboards/`` is generated and committed so Grafana's file provisioning can load it without
Python; ``--check`` fails when the committed JSON is stale (run by scripts/validate-deploy.sh).

    python deploy/monitoring/grafana/dashboards.py            # (re)write dashboards/*.json
    python deploy/monitoring/grafana/dashboards.py --check    # exit 1 if any file is stale
    python deploy/monitoring/grafana/dashboards.py --promql-rules X.yml
        # every panel query as a recording rule, so `promtool check rules X.yml` proves each parses
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grafanalib._gen import DashboardEncoder
from grafanalib.core import (
    BarGauge,
    Dashboard,
    DashboardLink,
    GridPos,
    Panel,
    RowPanel,
    Stat,
    Table,
    Target,
    Template,
    Templating,
    Time,
    TimeSeries,
)

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DS = "${datasource}"
NS = 'namespace=~"$namespace"'
# Probe and scrape endpoints are not user traffic; every API panel excludes them like the SLO rules.
USER_ROUTES = 'route!~"/healthz|/readyz|/metrics"'
FULL_WIDTH = 24


def t(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> Target:
    return Target(expr=expr, legendFormat=legend, refId=ref, datasource=DS, instant=instant)


def grid(rows: Sequence[Sequence[tuple[Panel, int, int]]]) -> list[Panel]:
    """Place panels left to right, row by row: each entry is (panel, width, height)."""
    placed: list[Panel] = []
    y = 0
    for row in rows:
        x = 0
        height = 0
        for panel, w, h in row:
            panel.gridPos = GridPos(h=h, w=w, x=x, y=y)
            placed.append(panel)
            x += w
            height = max(height, h)
        y += height
    return placed


def section(title: str) -> tuple[Panel, int, int]:
    return (RowPanel(title=title), FULL_WIDTH, 1)


def templating(extra: Sequence[Template] = ()) -> Templating:
    return Templating(
        list=[
            Template(name="datasource", label="Data source", query="prometheus", type="datasource"),
            Template(
                name="namespace",
                label="Environment",
                dataSource=DS,
                query="label_values(omnify_up, namespace)",
                includeAll=True,
                multi=True,
                default="omnify-production",
                refresh=2,
            ),
            *extra,
        ]
    )


def dashboard(
    uid: str, title: str, description: str, panels: list[Panel], extra_vars: Sequence[Template] = ()
) -> Dashboard:
    return Dashboard(
        uid=uid,
        title=title,
        description=description,
        tags=["omnify"],
        timezone="utc",
        time=Time("now-6h", "now"),
        refresh="1m",
        templating=templating(extra_vars),
        links=[DashboardLink(title="Omnify", type="dashboards", tags=["omnify"], asDropdown=True)],
        panels=panels,
    ).auto_panel_ids()


def system() -> Dashboard:
    return dashboard(
        "omnify-system",
        "Omnify / System",
        "Processes, dependencies, pools, queues, backups: is the platform healthy?",
        grid(
            [
                [
                    (
                        Stat(
                            title="API instances up",
                            targets=[t(f'sum(up{{job="omnify-api",{NS}}})', instant=True)],
                            thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
                        ),
                        6,
                        4,
                    ),
                    (
                        Stat(
                            title="Workers up",
                            targets=[t(f'sum(up{{job="omnify-worker",{NS}}})', instant=True)],
                            thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
                        ),
                        6,
                        4,
                    ),
                    (
                        Stat(
                            title="PostgreSQL",
                            targets=[t(f"min(pg_up{{{NS}}})", instant=True)],
                            mappings=[
                                {
                                    "type": "value",
                                    "options": {
                                        "0": {"text": "DOWN", "color": "red"},
                                        "1": {"text": "UP", "color": "green"},
                                    },
                                }
                            ],
                        ),
                        6,
                        4,
                    ),
                    (
                        Stat(
                            title="Redis",
                            targets=[t(f"min(redis_up{{{NS}}})", instant=True)],
                            mappings=[
                                {
                                    "type": "value",
                                    "options": {
                                        "0": {"text": "DOWN", "color": "red"},
                                        "1": {"text": "UP", "color": "green"},
                                    },
                                }
                            ],
                        ),
                        6,
                        4,
                    ),
                ],
                [section("Database pool")],
                [
                    (
                        TimeSeries(
                            title="Connections checked out vs pool size",
                            unit="short",
                            targets=[
                                t(f"sum by (pod) (omnify_db_pool_checked_out{{{NS}}})", "{{pod}} checked out"),
                                t(f"sum by (pod) (omnify_db_pool_size{{{NS}}})", "{{pod}} pool size", "B"),
                            ],
                        ),
                        12,
                        8,
                    ),
                    (
                        TimeSeries(
                            title="Overflow connections",
                            unit="short",
                            targets=[
                                t(f"sum by (pod) (omnify_db_pool_overflow{{{NS}}})", "{{pod}}"),
                            ],
                        ),
                        12,
                        8,
                    ),
                ],
                [section("Background jobs")],
                [
                    (
                        TimeSeries(
                            title="Queue depth",
                            unit="short",
                            targets=[
                                t(f"max by (queue) (omnify_celery_queue_depth{{{NS}}})", "{{queue}}"),
                            ],
                        ),
                        12,
                        8,
                    ),
                    (
                        TimeSeries(
                            title="Tasks per second by state",
                            unit="ops",
                            stacking={"mode": "normal"},
                            targets=[
                                t(f"sum by (state) (rate(omnify_celery_tasks_total{{{NS}}}[5m]))", "{{state}}"),
                            ],
                        ),
                        12,
                        8,
                    ),
                ],
                [
                    (
                        TimeSeries(
                            title="Task p95 duration",
                            unit="s",
                            targets=[
                                t(
                                    "histogram_quantile(0.95, sum by (task, le) "
                                    f"(rate(omnify_celery_task_duration_seconds_bucket{{{NS}}}[5m])))",
                                    "{{task}}",
                                ),
                            ],
                        ),
                        12,
                        8,
                    ),
                    (
                        TimeSeries(
                            title="Sync lag (worst connection)",
                            unit="s",
                            targets=[
                                t(f"max by (platform) (omnify_sync_lag_seconds{{{NS}}})", "{{platform}}"),
                            ],
                        ),
                        12,
                        8,
                    ),
                ],
                [section("Backups and certificates")],
                [
                    (
                        Stat(
                            title="Age of last backup",
                            format="s",
                            targets=[
                                t(
                                    f"time() - max by (kind) (omnify_backup_last_success_timestamp_seconds{{{NS}}})",
                                    "{{kind}}",
                                    instant=True,
                                ),
                            ],
                            thresholds=[
                                {"color": "green", "value": None},
                                {"color": "orange", "value": 86400},
                                {"color": "red", "value": 93600},
                            ],
                        ),
                        12,
                        5,
                    ),
                    (
                        Stat(
                            title="TLS certificate expires in",
                            format="s",
                            targets=[
                                t(
                                    f'probe_ssl_earliest_cert_expiry{{job="blackbox",{NS}}} - time()',
                                    "{{instance}}",
                                    instant=True,
                                ),
                            ],
                            thresholds=[
                                {"color": "red", "value": None},
                                {"color": "orange", "value": 259200},
                                {"color": "green", "value": 1209600},
                            ],
                        ),
                        12,
                        5,
                    ),
                ],
            ]
        ),
    )


def api() -> Dashboard:
    by_route = Template(
        name="route",
        label="Route",
        dataSource=DS,
        query=f"label_values(omnify_http_requests_total{{{NS},{USER_ROUTES}}}, route)",
        includeAll=True,
        multi=True,
        refresh=2,
    )
    sel = f'{NS},{USER_ROUTES},route=~"$route"'
    return dashboard(
        "omnify-api",
        "Omnify / API",
        "RED metrics per route and the two API SLOs (availability 99.9 %, p95 < 200 ms).",
        grid(
            [
                [
                    (
                        Stat(
                            title="Availability (30 d)",
                            format="percentunit",
                            decimals=3,
                            targets=[
                                t(
                                    "1 - (sum(increase(omnify_http_requests_total"
                                    f'{{{NS},{USER_ROUTES},status=~"5.."}}[30d]))'
                                    f" / sum(increase(omnify_http_requests_total{{{NS},{USER_ROUTES}}}[30d])))",
                                    instant=True,
                                ),
                            ],
                            thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 0.999}],
                        ),
                        6,
                        4,
                    ),
                    (
                        Stat(
                            title="Error budget burn (1 h)",
                            format="none",
                            decimals=1,
                            targets=[
                                t(f"max(omnify:sli_http_errors:ratio_rate1h{{{NS}}}) / 0.001", instant=True),
                            ],
                            thresholds=[
                                {"color": "green", "value": None},
                                {"color": "orange", "value": 1},
                                {"color": "red", "value": 14.4},
                            ],
                        ),
                        6,
                        4,
                    ),
                    (
                        Stat(
                            title="p95 latency (5 m)",
                            format="s",
                            targets=[
                                t(f"max(omnify:http_request_duration_seconds:p95_rate5m{{{NS}}})", instant=True),
                            ],
                            thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 0.2}],
                        ),
                        6,
                        4,
                    ),
                    (
                        Stat(
                            title="Requests in flight",
                            targets=[
                                t(f"sum(omnify_http_requests_in_flight{{{NS}}})", instant=True),
                            ],
                        ),
                        6,
                        4,
                    ),
                ],
                [
                    (
                        TimeSeries(
                            title="Requests per second by route",
                            unit="reqps",
                            targets=[
                                t(
                                    f"sum by (method, route) (rate(omnify_http_requests_total{{{sel}}}[5m]))",
                                    "{{method}} {{route}}",
                                ),
                            ],
                        ),
                        12,
                        9,
                    ),
                    (
                        TimeSeries(
                            title="Requests per second by status",
                            unit="reqps",
                            stacking={"mode": "normal"},
                            targets=[
                                t(f"sum by (status) (rate(omnify_http_requests_total{{{sel}}}[5m]))", "{{status}}")
                            ],
                        ),
                        12,
                        9,
                    ),
                ],
                [
                    (
                        TimeSeries(
                            title="Latency p50 / p95 / p99",
                            unit="s",
                            targets=[
                                t(
                                    f"histogram_quantile({q}, sum by (le) "
                                    f"(rate(omnify_http_request_duration_seconds_bucket{{{sel}}}[5m])))",
                                    f"p{int(q * 100)}",
                                    ref,
                                )
                                for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
                            ],
                            thresholds=[{"color": "red", "value": 0.2}],
                            thresholdsStyleMode="line",
                        ),
                        12,
                        9,
                    ),
                    (
                        TimeSeries(
                            title="p95 latency by route",
                            unit="s",
                            targets=[
                                t(
                                    "histogram_quantile(0.95, sum by (route, le) "
                                    f"(rate(omnify_http_request_duration_seconds_bucket{{{sel}}}[5m])))",
                                    "{{route}}",
                                ),
                            ],
                        ),
                        12,
                        9,
                    ),
                ],
                [
                    (
                        TimeSeries(
                            title="Rate-limited requests by scope",
                            unit="reqps",
                            targets=[
                                t(f"sum by (scope) (rate(omnify_rate_limited_total{{{NS}}}[5m]))", "{{scope}}"),
                            ],
                        ),
                        12,
                        8,
                    ),
                    (
                        TimeSeries(
                            title="Cache hit ratio",
                            unit="percentunit",
                            targets=[
                                t(
                                    f'sum by (cache) (rate(omnify_cache_requests_total{{{NS},result="hit"}}[5m])) / '
                                    f"sum by (cache) (rate(omnify_cache_requests_total{{{NS}}}[5m]))",
                                    "{{cache}}",
                                ),
                            ],
                        ),
                        12,
                        8,
                    ),
                ],
            ]
        ),
        extra_vars=[by_route],
    )


def business() -> Dashboard:
    return dashboard(
        "omnify-business",
        "Omnify / Business",
        "Organisations, onboarded clients, spend under management and what the brain does with it.",
        grid(
            [
                [
                    (
                        Stat(title="Organisations", targets=[t(f"max(omnify_organizations{{{NS}}})", instant=True)]),
                        6,
                        5,
                    ),
                    (
                        Stat(
                            title="Clients onboarded",
                            targets=[t(f"max(omnify_clients_onboarded{{{NS}}})", instant=True)],
                        ),
                        6,
                        5,
                    ),
                    (
                        Stat(
                            title="Actions applied (24 h)",
                            targets=[t(f"sum(increase(omnify_actions_applied_total{{{NS}}}[24h]))", instant=True)],
                        ),
                        6,
                        5,
                    ),
                    (
                        Stat(
                            title="Emails sent (24 h)",
                            targets=[
                                t(f'sum(increase(omnify_emails_total{{{NS},result="sent"}}[24h]))', instant=True)
                            ],
                        ),
                        6,
                        5,
                    ),
                ],
                [
                    (
                        TimeSeries(
                            title="Spend under management by currency (major units)",
                            unit="short",
                            targets=[
                                t(
                                    f"max by (currency) (omnify_spend_under_management_minor{{{NS}}}) / 100",
                                    "{{currency}}",
                                ),
                            ],
                        ),
                        12,
                        8,
                    ),
                    (
                        TimeSeries(
                            title="Organisations and onboarded clients",
                            unit="short",
                            targets=[
                                t(f"max(omnify_organizations{{{NS}}})", "organisations"),
                                t(f"max(omnify_clients_onboarded{{{NS}}})", "clients onboarded", "B"),
                            ],
                        ),
                        12,
                        8,
                    ),
                ],
                [
                    (
                        TimeSeries(
                            title="Actions applied per hour by module",
                            unit="short",
                            stacking={"mode": "normal"},
                            drawStyle="bars",
                            targets=[
                                t(
                                    f"sum by (module) (increase(omnify_actions_applied_total{{{NS}}}[1h]))",
                                    "{{module}}",
                                ),
                            ],
                        ),
                        12,
                        8,
                    ),
                    (
                        TimeSeries(
                            title="Rows synced per hour by platform",
                            unit="short",
                            targets=[
                                t(f"sum by (platform) (increase(omnify_sync_rows_total{{{NS}}}[1h]))", "{{platform}}"),
                            ],
                        ),
                        12,
                        8,
                    ),
                ],
            ]
        ),
    )


def errors() -> Dashboard:
    return dashboard(
        "omnify-errors",
        "Omnify / Errors",
        "Everything that failed: 5xx by route, failed and dead-lettered jobs, sync errors, webhooks.",
        grid(
            [
                [
                    (
                        TimeSeries(
                            title="5xx per second by route",
                            unit="reqps",
                            targets=[
                                t(
                                    f'sum by (route) (rate(omnify_http_requests_total{{{NS},status=~"5.."}}[5m]))',
                                    "{{route}}",
                                ),
                            ],
                        ),
                        12,
                        8,
                    ),
                    (
                        TimeSeries(
                            title="4xx per second by status",
                            unit="reqps",
                            targets=[
                                t(
                                    f'sum by (status) (rate(omnify_http_requests_total{{{NS},status=~"4.."}}[5m]))',
                                    "{{status}}",
                                ),
                            ],
                        ),
                        12,
                        8,
                    ),
                ],
                [
                    (
                        TimeSeries(
                            title="Failed task runs per second",
                            unit="ops",
                            targets=[
                                t(
                                    f'sum by (task) (rate(omnify_celery_tasks_total{{{NS},state="failed"}}[5m]))',
                                    "{{task}}",
                                ),
                            ],
                        ),
                        12,
                        8,
                    ),
                    (
                        TimeSeries(
                            title="Dead-lettered jobs (per hour)",
                            unit="short",
                            drawStyle="bars",
                            targets=[
                                t(f"sum by (task) (increase(omnify_job_failures_total{{{NS}}}[1h]))", "{{task}}"),
                            ],
                        ),
                        12,
                        8,
                    ),
                ],
                [
                    (
                        TimeSeries(
                            title="Sync errors per hour by platform",
                            unit="short",
                            targets=[
                                t(
                                    f"sum by (platform) (increase(omnify_sync_errors_total{{{NS}}}[1h]))",
                                    "{{platform}}",
                                ),
                            ],
                        ),
                        8,
                        8,
                    ),
                    (
                        TimeSeries(
                            title="Webhook delivery failure ratio",
                            unit="percentunit",
                            targets=[
                                t(
                                    f'sum(rate(omnify_webhook_deliveries_total{{{NS},result="failure"}}[15m])) / '
                                    f"sum(rate(omnify_webhook_deliveries_total{{{NS}}}[15m]))",
                                    "failure ratio",
                                ),
                            ],
                        ),
                        8,
                        8,
                    ),
                    (
                        Stat(
                            title="Webhook dead letters",
                            targets=[t(f"max(omnify_webhook_dead_letters{{{NS}}})", instant=True)],
                            thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
                        ),
                        8,
                        8,
                    ),
                ],
                [
                    (
                        Table(
                            title="Top failing routes (1 h)",
                            targets=[
                                t(
                                    f"topk(10, sum by (method, route, status) "
                                    f'(increase(omnify_http_requests_total{{{NS},status=~"5.."}}[1h])))',
                                    instant=True,
                                ),
                            ],
                            transformations=[{"id": "labelsToFields", "options": {}}],
                        ),
                        12,
                        8,
                    ),
                    (
                        TimeSeries(
                            title="Emails failed per hour",
                            unit="short",
                            targets=[
                                t(f'sum(increase(omnify_emails_total{{{NS},result="failed"}}[1h]))', "failed"),
                            ],
                        ),
                        12,
                        8,
                    ),
                ],
            ]
        ),
    )


def onboarding() -> Dashboard:
    """The funnel from sign-up to a client whose data flows.

    Stages are counted from the HTTP counter on the route templates of each step (POST only, 2xx),
    then from the business gauges. Route patterns are regexes over route *templates*; the metrics
    contract test (tests/integration/sync/test_sync_metrics_contract.py) checks each matches a route
    the app really reports.
    """
    window = "$__range"

    def posted(route_regex: str, status: str = "2..", method: str = 'method="POST",') -> str:
        return (
            f"sum(increase(omnify_http_requests_total"
            f'{{{NS},{method}route=~"{route_regex}",status=~"{status}"}}[{window}]))'
        )

    funnel = [
        ("1. Sign-ups", posted(".*/(auth/register|signup)")),
        ("2. Organisations created", posted(".*/orgs")),
        ("3. Clients created", posted(".*/clients")),
        # The OAuth callback's route template: /api/v1/connections/{platform}/callback.
        ("4. Platforms connected", posted(".*/connections/[^/]+/callback", "2..|3..", method="")),
        ("5. Clients onboarded (now)", f"max(omnify_clients_onboarded{{{NS}}})"),
    ]
    targets = [t(expr, legend, chr(ord("A") + i), instant=True) for i, (legend, expr) in enumerate(funnel)]
    return dashboard(
        "omnify-onboarding",
        "Omnify / Onboarding funnel",
        "From sign-up to a client whose ad data syncs: where do new customers stall?",
        grid(
            [
                [
                    (
                        BarGauge(
                            title="Onboarding funnel (selected time range)",
                            targets=targets,
                            orientation="horizontal",
                            displayMode="gradient",
                            calc="lastNotNull",
                        ),
                        24,
                        10,
                    ),
                ],
                [
                    (
                        TimeSeries(
                            title="Sign-ups and organisations per day",
                            unit="short",
                            drawStyle="bars",
                            targets=[
                                t(funnel[0][1].replace(window, "1d"), "sign-ups"),
                                t(funnel[1][1].replace(window, "1d"), "organisations", "B"),
                            ],
                        ),
                        12,
                        8,
                    ),
                    (
                        TimeSeries(
                            title="Platforms connected per day",
                            unit="short",
                            drawStyle="bars",
                            targets=[
                                t(funnel[3][1].replace(window, "1d"), "connections"),
                            ],
                        ),
                        12,
                        8,
                    ),
                ],
                [
                    (
                        TimeSeries(
                            title="First data: rows synced per platform",
                            unit="short",
                            targets=[
                                t(f"sum by (platform) (increase(omnify_sync_rows_total{{{NS}}}[1h]))", "{{platform}}"),
                            ],
                        ),
                        12,
                        8,
                    ),
                    (
                        TimeSeries(
                            title="Onboarding emails (invitations, welcome) per hour",
                            unit="short",
                            targets=[
                                t(f"sum by (result) (increase(omnify_emails_total{{{NS}}}[1h]))", "{{result}}"),
                            ],
                        ),
                        12,
                        8,
                    ),
                ],
            ]
        ),
    )


DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "omnify-system": system,
    "omnify-api": api,
    "omnify-business": business,
    "omnify-errors": errors,
    "omnify-onboarding": onboarding,
}


def render(build: Callable[[], Dashboard]) -> str:
    data: dict[str, Any] = build().to_json_data()
    return json.dumps(data, cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"


def queries(data: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a rendered dashboard, nested rows included."""
    found: list[str] = []
    stack: list[Any] = list(data.get("panels", []))
    while stack:
        panel = stack.pop()
        stack.extend(panel.get("panels", []))
        found.extend(str(target["expr"]) for target in panel.get("targets", []) if target.get("expr"))
    return found


def promql_rules(rendered: dict[str, str]) -> str:
    """A Prometheus rule file holding every panel query, with Grafana's variables substituted.

    promtool has no standalone PromQL parser in the Debian build; recording rules are parsed by
    `promtool check rules`, which is exactly the check we want.
    """
    lines = ["groups:"]
    for name, text in rendered.items():
        lines.append(f"  - name: {name}\n    rules:")
        for i, expr in enumerate(queries(json.loads(text))):
            concrete = expr.replace("$__range", "1h").replace("$namespace", "omnify-production")
            concrete = concrete.replace("$route", ".*")
            lines.append(f"      - record: dashboard_query:{name.replace('-', '_')}:{i}")
            lines.append(f"        expr: {json.dumps(concrete)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate Omnify's Grafana dashboards.")
    parser.add_argument("--check", action="store_true", help="fail if committed JSON differs from the code")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--promql-rules", type=Path, help="write every panel query as a rule file")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stale: list[str] = []
    rendered: dict[str, str] = {}
    for name, build in DASHBOARDS.items():
        text = render(build)
        rendered[name] = text
        json.loads(text)  # the generated document must be valid JSON
        path = args.out / f"{name}.json"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if args.promql_rules:
        args.promql_rules.write_text(promql_rules(rendered), encoding="utf-8")
    if stale:
        print("stale dashboards (run deploy/monitoring/grafana/dashboards.py):\n  " + "\n  ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
