"""``/v1/me`` and ``/v1/keys``: who am I, and key management (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from ...schemas.keys import KeyCreate, KeyCreated, KeyPublic, KeysPublic, MePublic
from ...store import keys as store
from ...store.keys import get_namespace
from ..deps import AdminDep, AuthDep, SessionDep, key_cache
from ..pagination import PageDep
from ..params import IdPath

__all__ = ["router"]

router = APIRouter(tags=["keys"])


@router.get("/me", response_model=MePublic)
def me(principal: AuthDep) -> MePublic:
    """The caller's namespace and role."""
    return MePublic(namespace=principal.namespace, role=principal.role)  # type: ignore[arg-type]


@router.post("/keys", response_model=KeyCreated, status_code=status.HTTP_201_CREATED)
def create_key(body: KeyCreate, principal: AdminDep, session: SessionDep) -> KeyCreated:
    """Create a key in the caller's namespace (admin). The secret is shown once."""
    namespace = get_namespace(session, principal.namespace)
    assert namespace is not None  # the principal's own namespace exists
    new = store.create_key(session, namespace, body.role)
    return KeyCreated(id=new.id, key=new.key, role=body.role, namespace=new.namespace)


@router.get("/keys", response_model=KeysPublic)
def list_keys(principal: AdminDep, session: SessionDep, page: PageDep) -> KeysPublic:
    """The namespace's keys (admin), without secrets."""
    rows, total = store.list_keys(
        session, principal.namespace_id, limit=page.limit, offset=page.offset
    )
    return KeysPublic(
        items=[KeyPublic.model_validate(r) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.delete("/keys/{key_id}", response_model=KeyPublic)
def revoke_key(
    key_id: IdPath, principal: AdminDep, session: SessionDep, request: Request
) -> KeyPublic:
    """Revoke a key of the namespace (admin); it stops working at once."""
    revoked = KeyPublic.model_validate(store.revoke_key(session, principal.namespace_id, key_id))
    cache = key_cache(request)
    if cache is not None:
        cache.clear()
    return revoked
