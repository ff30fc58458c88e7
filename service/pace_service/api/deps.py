"""Request dependencies: one database transaction per request, and authentication.

``SessionDep`` opens a session, commits after the route returns (before the response
is sent, so a failed commit is an error response, never a lost write) and rolls back
on any exception. ``AuthDep``/``WriteDep``/``AdminDep`` resolve the bearer key to a
:class:`Principal` and check its role.
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

__all__ = [
    "AdminDep",
    "AuthDep",
    "Principal",
    "SessionDep",
    "SettingsDep",
    "WriteDep",
    "get_session",
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

_bearer = HTTPBearer(auto_error=False, description="An API key: `Bearer pace_...`")


def authenticate(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Resolve ``Authorization: Bearer <key>`` (401 ``unauthenticated`` if absent/unknown)."""
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
    row = session.execute(
        select(ApiKey.id, ApiKey.role, Namespace.id, Namespace.name)
        .join(Namespace, Namespace.id == ApiKey.namespace_id)
        .where(ApiKey.key_hash == hash_key(credentials.credentials), ApiKey.revoked_at.is_(None))
    ).first()
    if row is None:
        raise Unauthenticated("unknown or revoked API key")
    return Principal(key_id=row[0], role=row[1], namespace_id=row[2], namespace=row[3])


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
