"""Schemas for /v1/me and /v1/keys."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel

from .bounds import RequestModel
from .common import Page, PublicModel

__all__ = ["KeyCreate", "KeyCreated", "KeyPublic", "KeysPublic", "MePublic", "Role"]

Role = Literal["read", "write", "admin"]


class MePublic(BaseModel):
    """Who the caller is."""

    namespace: str
    role: Role


class KeyCreate(RequestModel):
    """A new key in the caller's namespace."""

    role: Role


class KeyCreated(BaseModel):
    """A created key: ``key`` is the secret and is shown only in this response."""

    id: int
    key: str
    role: Role
    namespace: str


class KeyPublic(PublicModel):
    """A key as listed (never its secret)."""

    id: int
    role: Role
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


KeysPublic = Page[KeyPublic]
