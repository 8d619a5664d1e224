"""Uploaded brand files: metadata rows for objects held by the storage backend."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, TenantMixin, TimestampMixin

LIVE_FILE = text("deleted_at IS NULL")


class UploadedFile(IdMixin, TimestampMixin, TenantMixin, Base):
    """One stored object (plus its thumbnail, for raster images).

    A row exists exactly as long as its objects do: it is inserted after the upload
    succeeded and removed only after the purge deleted the objects. That is what keeps
    the organization's storage accounting (the sum of ``size + thumbnail_size``) exact.
    ``deleted_at`` marks a file the user deleted and the purge job has not reached yet.
    """

    __tablename__ = "uploaded_files"
    __table_args__ = (
        # Dedupe: one live copy of given content per client.
        Index("uq_uploaded_files_client_id_sha256_live", "client_id", "sha256", unique=True,
              postgresql_where=LIVE_FILE, sqlite_where=LIVE_FILE),
        Index("ix_uploaded_files_org_id_client_id_created_at", "org_id", "client_id", "created_at"),
        Index("ix_uploaded_files_org_id_client_id_category", "org_id", "client_id", "category"),
        Index("ix_uploaded_files_org_id_deleted_at", "org_id", "deleted_at"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)
    category: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # sniffed FileKind: png, pdf, ...
    content_type: Mapped[str] = mapped_column(String(127))  # from the sniffed kind, never the client's
    filename: Mapped[str] = mapped_column(String(255))  # sanitised; display/download name only
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_backend: Mapped[str] = mapped_column(String(16))
    storage_key: Mapped[str] = mapped_column(String(1024), unique=True)
    width: Mapped[int | None]
    height: Mapped[int | None]
    thumbnail_key: Mapped[str | None] = mapped_column(String(1024))
    thumbnail_size: Mapped[int] = mapped_column(BigInteger, default=0)
    uploaded_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"),
                                                             index=True)
    deleted_at: Mapped[datetime | None]

    @property
    def stored_bytes(self) -> int:
        return self.size + (self.thumbnail_size or 0)
