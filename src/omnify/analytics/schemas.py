from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from pydantic import BaseModel, Field

from omnify.analytics.kpis import Dimension, Granularity


class KpisOut(BaseModel):
    spend_minor: int
    impressions: int
    clicks: int
    conversions: float
    revenue_minor: int
    ctr: float | None = Field(description="clicks / impressions")
    cpc_minor: float | None = Field(description="spend / clicks, minor units")
    cpm_minor: float | None = Field(description="spend per 1000 impressions, minor units")
    cpa_minor: float | None = Field(description="spend / conversions, minor units")
    roas: float | None = Field(description="revenue / spend")


class CurrencyReportOut(BaseModel):
    currency: str
    totals: KpisOut
    previous: KpisOut | None = Field(description="The same number of days just before `since`.")
    change: dict[str, float | None] | None = Field(description="Relative change per KPI (0.25 = +25 %).")
    rows: list[dict[str, Any]] = Field(description="One row per period (and key): `period`, `key`, `label`, "
                                                   "`platform` and the KPIs.")
    keys_total: int
    keys_omitted: int


class AnalyticsOut(BaseModel):
    client_id: uuid.UUID
    since: date
    until: date
    granularity: Granularity
    group_by: Dimension
    previous_since: date | None
    previous_until: date | None
    currencies: list[CurrencyReportOut] = Field(description="One report per currency; never summed across.")
