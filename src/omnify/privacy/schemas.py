from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from omnify.privacy.models import PrivacyStatus, PrivacyTopic


class PrivacyRequestOut(BaseModel):
    """One privacy request a shop sent; never the shopper's personal data itself."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    client_id: uuid.UUID
    connection_id: uuid.UUID
    topic: PrivacyTopic
    shop_domain: str
    customer_external_id: str | None = Field(description="Shopify's customer id (absent for shop/redact).")
    shopify_request_id: str | None = Field(description="`data_request.id` from Shopify, when it sent one.")
    status: PrivacyStatus
    rows_affected: int = Field(description="Rows exported (data request) or erased (redaction).")
    has_export: bool = Field(description="A stored export can be fetched from `/export`.")
    created_at: datetime
    completed_at: datetime | None

