"""One row per privacy request a shop sent us (Shopify's mandatory GDPR webhooks).

Why a table and not only the audit log: the merchant must be able to *fetch* what a
``customers/data_request`` produced (Shopify forwards nothing; the merchant answers the
customer), and the processor needs a natural key to recognise the same request sent
again under a new webhook id. ``request_key`` is that key: a hash of Shopify's request id
where the payload has one (``data_request.id``), else of the canonical payload (the
redact topics carry no id, but a re-sent request has the same body). The unique
constraint makes the second processor lose (its transaction rolls back, the retry sees
the first row and does nothing).

The export itself lives in object storage (``storage_key``); the row is the index to it.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, TenantMixin, utcnow


class PrivacyTopic(enum.StrEnum):
    CUSTOMERS_DATA_REQUEST = "customers/data_request"
    CUSTOMERS_REDACT = "customers/redact"
    SHOP_REDACT = "shop/redact"


class PrivacyStatus(enum.StrEnum):
    #: Done: the export is stored, or the data is erased.
    COMPLETED = "completed"
    #: A data request whose export was later erased by customers/redact or shop/redact.
    EXPORT_ERASED = "export_erased"


class ShopPrivacyRequest(IdMixin, TenantMixin, Base):
    __tablename__ = "shop_privacy_requests"
    __table_args__ = (
        UniqueConstraint("connection_id", "topic", "request_key"),
        Index("ix_shop_privacy_requests_org_id_client_id_created_at", "org_id", "client_id", "created_at"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    topic: Mapped[str] = mapped_column(String(40))
    shop_domain: Mapped[str] = mapped_column(String(255))
    customer_external_id: Mapped[str | None] = mapped_column(String(64))
    shopify_request_id: Mapped[str | None] = mapped_column(String(64))
    #: SHA-256 hex of the request's identity (see the module docstring): the de-duplication key.
    request_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=PrivacyStatus.COMPLETED.value)
    #: Object-storage key of the JSON export (customers/data_request only; cleared by shop/redact).
    storage_key: Mapped[str | None] = mapped_column(String(1024))
    rows_affected: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
