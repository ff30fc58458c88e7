"""Request dependencies: one database transaction per request, and authentication.

``SessionDep`` opens a session, commits after the route returns (before the response
is sent, so a failed commit is an error response, never a lost write) and rolls back
on any exception. ``AuthDep``/``WriteDep``/``AdminDep`` resolve the bearer key to a
:class:`Principal` and check its role; a key verified in the last
``PACE_AUTH_CACHE_SECONDS`` is answered from the app's :class:`KeyCache` without a query.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core.config import Settings
from ..core.security import hash_key
from ..errors import Forbidden, Unauthenticated
from ..models import ApiKey, Namespace
from .key_cache import KeyCache

__all__ = [
    "AdminDep",
    "AuthDep",
    "Principal",
    "SessionDep",
    "SettingsDep",
    "WriteDep",
    "bearer",
    "get_session",
    "key_cache",
    "resolve_principal",
]

_ROLE_RANK = {"read": 0, "write": 1, "admin": 2}


@dataclass(frozen=True)
class Principal:
    """The caller: the key's id, its namespace and its role."""

    key_id: int
    namespace_id: int
    namespace: str
    role: str

    def allows(self, role: str) -> bool:
        """Whether this principal has at least ``role``."""
        return _ROLE_RANK[self.role] >= _ROLE_RANK[role]

    def require(self, role: str) -> None:
        """Raise 403 ``forbidden`` unless this principal has at least ``role``."""
        if not self.allows(role):
            raise Forbidden(f"this needs a {role} key; this key is {self.role}")


def get_session(request: Request) -> Iterator[Session]:
    """One session (one transaction) per request, committed when the route succeeds."""
    factory = request.app.state.session_factory
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]

bearer = HTTPBearer(auto_error=False, description="An API key: `Bearer pace_...`")


def resolve_principal(
    session: Session, secret: str | None, cache: KeyCache[Principal] | None = None
) -> Principal:
    """The principal of API key ``secret`` (401 ``unauthenticated`` if absent/unknown).

    ``cache`` (the app's :class:`KeyCache`) answers a key seen in the last few seconds
    without a query; unknown and revoked keys are never cached.
    """
    if not secret:
        raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
    key_hash = hash_key(secret)
    if cache is not None and (hit := cache.get(key_hash)) is not None:
        return hit
    row = session.execute(
        select(ApiKey.id, ApiKey.role, Namespace.id, Namespace.name)
        .join(Namespace, Namespace.id == ApiKey.namespace_id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    ).first()
    if row is None:
        raise Unauthenticated("unknown or revoked API key")
    principal = Principal(key_id=row[0], role=row[1], namespace_id=row[2], namespace=row[3])
    if cache is not None:
        cache.put(key_hash, principal)
    return principal


def key_cache(request: Request) -> KeyCache[Principal] | None:
    """The app's key cache (None for an app built without one)."""
    cache: KeyCache[Principal] | None = getattr(request.app.state, "key_cache", None)
    return cache


def authenticate(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Resolve ``Authorization: Bearer <key>`` (401 ``unauthenticated`` if absent/unknown)."""
    secret = credentials.credentials if credentials is not None else None
    return resolve_principal(session, secret, key_cache(request))


AuthDep = Annotated[Principal, Depends(authenticate)]


def require_write(principal: AuthDep) -> Principal:
    """A principal with a write or admin key (403 otherwise)."""
    principal.require("write")
    return principal


def require_admin(principal: AuthDep) -> Principal:
    """A principal with an admin key (403 otherwise)."""
    principal.require("admin")
    return principal


WriteDep = Annotated[Principal, Depends(require_write)]
AdminDep = Annotated[Principal, Depends(require_admin)]
