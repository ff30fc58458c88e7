"""Namespaces and API keys."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..core.security import generate_key, hash_key, key_display_prefix
from ..errors import NotFound, ValidationFailed
from ..models import ROLES, ApiKey, Namespace

__all__ = [
    "NewKey",
    "create_key",
    "get_namespace",
    "get_or_create_namespace",
    "list_keys",
    "revoke_key",
]


@dataclass(frozen=True)
class NewKey:
    """A freshly created key; ``key`` is the secret, shown once."""

    id: int
    key: str
    role: str
    namespace: str


def get_namespace(session: Session, name: str) -> Namespace | None:
    """The namespace called ``name``, or None."""
    return session.scalars(select(Namespace).where(Namespace.name == name)).first()


def get_or_create_namespace(session: Session, name: str) -> tuple[Namespace, bool]:
    """The namespace ``name`` and whether it was created now."""
    if not name or name != name.strip():
        raise ValidationFailed(
            "namespace name must be non-empty, no surrounding spaces", field="name"
        )
    existing = get_namespace(session, name)
    if existing is not None:
        return existing, False
    namespace = Namespace(name=name)
    session.add(namespace)
    session.flush()
    return namespace, True


def create_key(session: Session, namespace: Namespace, role: str) -> NewKey:
    """Create a key with ``role`` in ``namespace``; only its hash is stored."""
    if role not in ROLES:
        raise ValidationFailed(f"role must be one of {', '.join(ROLES)}", field="role")
    secret = generate_key()
    row = ApiKey(
        namespace_id=namespace.id,
        role=role,
        key_hash=hash_key(secret),
        prefix=key_display_prefix(secret),
    )
    session.add(row)
    session.flush()
    return NewKey(id=row.id, key=secret, role=role, namespace=namespace.name)


def list_keys(
    session: Session, namespace_id: int, *, limit: int, offset: int
) -> tuple[list[ApiKey], int]:
    """The namespace's keys (never their secrets), newest first, and the total."""
    where = ApiKey.namespace_id == namespace_id
    total = session.scalar(select(func.count()).select_from(ApiKey).where(where)) or 0
    rows = session.scalars(
        select(ApiKey).where(where).order_by(ApiKey.id.desc()).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def revoke_key(session: Session, namespace_id: int, key_id: int) -> ApiKey:
    """Revoke a key of the namespace (404 if it is not one of its keys)."""
    row = session.get(ApiKey, key_id)
    if row is None or row.namespace_id != namespace_id:
        raise NotFound(f"key {key_id} not found", field="key_id")
    if row.revoked_at is None:
        row.revoked_at = session.scalar(select(func.now()))
        session.flush()
    return row
