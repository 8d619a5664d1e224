from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from omnify.files.sniffing import FileCategory


class FileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    client_id: uuid.UUID
    category: FileCategory
    kind: str = Field(description="Type decided from the content (magic bytes), e.g. png, pdf.")
    content_type: str
    filename: str = Field(description="The original name, sanitised; display only.")
    size: int
    sha256: str
    width: int | None
    height: int | None
    has_thumbnail: bool
    uploaded_by_id: uuid.UUID | None
    created_at: datetime


class DownloadOut(BaseModel):
    url: str = Field(description="Short-lived signed URL; fetch it without the Authorization header.")
    expires_at: datetime
    filename: str
    content_type: str
