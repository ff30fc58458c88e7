"""Concept-set versions: drafts, membership, publishing, diffs and lineage.

A draft follows its members' live stimuli; publishing freezes which stimulus rows
each member had (``version_concepts.stimulus_ids``). After that, the version row, its membership
and its snapshot never change: these functions refuse with 409 ``immutable``, and
the database triggers of migration 0001 refuse whatever gets past them.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, delete, func, insert, literal, select, text
from sqlalchemy.orm import Session

from ..errors import Immutable, NotFound, ValidationFailed
from ..models import (
    Concept,
    ConceptSet,
    ConceptSetVersion,
    Namespace,
    Stimulus,
    VersionConcept,
)
from ..schemas.concept_sets import (
    ConceptRef,
    LineageEntry,
    StimuliChange,
    VersionDiff,
    VersionPublic,
    VersionSummary,
)
from .access import concept_readable_clause, owned_version, readable_version
from .revisions import IfMatch, check

__all__ = [
    "add_members",
    "create_version",
    "delete_version",
    "diff_versions",
    "lineage",
    "list_versions",
    "member_ids",
    "publish_version",
    "remove_members",
    "version_by_ref",
    "version_public",
    "version_summaries",
]

MAX_LINEAGE = 100


def member_ids(session: Session, version_id: int) -> list[int]:
    """The version's concept ids, ascending."""
    return list(
        session.scalars(
            select(VersionConcept.concept_id)
            .where(VersionConcept.version_id == version_id)
            .order_by(VersionConcept.concept_id)
        )
    )


def _counts(session: Session, version_ids: Sequence[int]) -> dict[int, int]:
    if not version_ids:
        return {}
    rows = session.execute(
        select(VersionConcept.version_id, func.count())
        .where(VersionConcept.version_id.in_(version_ids))
        .group_by(VersionConcept.version_id)
    ).all()
    return {vid: n for vid, n in rows}


def _summary(version: ConceptSetVersion, n_concepts: int) -> VersionSummary:
    return VersionSummary(
        id=version.id,
        set_id=version.set_id,
        number=version.number,
        status=version.status,  # type: ignore[arg-type]
        parent_version_id=version.parent_version_id,
        n_concepts=n_concepts,
        created_at=version.created_at,
        published_at=version.published_at,
        revision=version.revision,
    )


def version_summaries(
    session: Session, versions: Sequence[ConceptSetVersion]
) -> list[VersionSummary]:
    """Summaries of ``versions`` (with member counts), in the given order."""
    counts = _counts(session, [v.id for v in versions])
    return [_summary(v, counts.get(v.id, 0)) for v in versions]


def version_public(session: Session, version: ConceptSetVersion) -> VersionPublic:
    """The full public form of a version (with member ids)."""
    concept_set = session.get(ConceptSet, version.set_id)
    assert concept_set is not None
    namespace = session.get(Namespace, concept_set.namespace_id)
    assert namespace is not None
    ids = member_ids(session, version.id)
    summary = _summary(version, len(ids))
    return VersionPublic(
        **summary.model_dump(),
        set_name=concept_set.name,
        namespace=namespace.name,
        concept_ids=ids,
    )


def list_versions(
    session: Session, concept_set: ConceptSet, *, limit: int, offset: int
) -> tuple[list[VersionSummary], int]:
    """A set's versions by ascending number, and the total."""
    where = ConceptSetVersion.set_id == concept_set.id
    total = session.scalar(select(func.count()).select_from(ConceptSetVersion).where(where)) or 0
    rows = list(
        session.scalars(
            select(ConceptSetVersion)
            .where(where)
            .order_by(ConceptSetVersion.number)
            .limit(limit)
            .offset(offset)
        )
    )
    return version_summaries(session, rows), total


def _by_number(session: Session, set_id: int, number: int, field: str) -> ConceptSetVersion:
    version = session.scalars(
        select(ConceptSetVersion).where(
            ConceptSetVersion.set_id == set_id, ConceptSetVersion.number == number
        )
    ).first()
    if version is None:
        raise NotFound(f"set {set_id} has no version {number}", field=field)
    return version


def version_by_ref(session: Session, set_id: int, ref: str) -> ConceptSetVersion:
    """Version ``ref`` of a set: a number, ``latest`` or ``published`` (latest published)."""
    query = select(ConceptSetVersion).where(ConceptSetVersion.set_id == set_id)
    if ref.isdigit():
        return _by_number(session, set_id, int(ref), "ref")
    if ref == "published":
        query = query.where(ConceptSetVersion.status == "published")
    elif ref != "latest":
        raise ValidationFailed(
            "a version reference is a number, 'latest' or 'published'", field="ref"
        )
    version = session.scalars(query.order_by(ConceptSetVersion.number.desc()).limit(1)).first()
    if version is None:
        raise NotFound(f"set {set_id} has no {ref} version", field="ref")
    return version


def create_version(
    session: Session,
    concept_set: ConceptSet,
    *,
    from_version: int | None,
    empty: bool,
    parent: ConceptSetVersion | None = None,
) -> ConceptSetVersion:
    """A new draft of ``concept_set`` numbered after its latest version.

    Members are copied from ``parent`` if given (a fork: any readable version), else
    from version number ``from_version`` of this set, else from the latest version,
    unless ``empty``.
    """
    # serialize version numbering per set
    session.execute(select(ConceptSet.id).where(ConceptSet.id == concept_set.id).with_for_update())
    latest = session.scalars(
        select(ConceptSetVersion)
        .where(ConceptSetVersion.set_id == concept_set.id)
        .order_by(ConceptSetVersion.number.desc())
        .limit(1)
    ).first()
    if parent is None:
        if from_version is not None:
            parent = _by_number(session, concept_set.id, from_version, "from_version")
        else:
            parent = latest
    version = ConceptSetVersion(
        set_id=concept_set.id,
        number=(latest.number + 1) if latest is not None else 1,
        status="draft",
        parent_version_id=parent.id if parent is not None else None,
    )
    session.add(version)
    session.flush()
    if parent is not None and not empty:
        session.execute(
            insert(VersionConcept).from_select(
                ["version_id", "concept_id"],
                select(literal(version.id, BigInteger()), VersionConcept.concept_id).where(
                    VersionConcept.version_id == parent.id
                ),
            )
        )
    session.refresh(version)
    return version


def _draft_for_update(
    session: Session, namespace_id: int, version_id: int, if_match: IfMatch | None
) -> ConceptSetVersion:
    """The draft, locked (writers of one draft queue here), its revision checked.

    Published wins over a stale ETag: a published version answers 409 ``immutable``.
    """
    owned_version(session, namespace_id, version_id)
    version = session.scalars(
        select(ConceptSetVersion)
        .where(ConceptSetVersion.id == version_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if version is None:  # deleted by a writer that held the lock before us
        raise NotFound(f"concept-set version {version_id} was deleted", field="version_id")
    if version.status == "published":
        raise Immutable(
            f"concept-set version {version_id} is published and immutable; "
            "create a new draft version to change it"
        )
    check(version.revision, if_match, f"concept-set version {version_id}")
    return version


def _bump(version: ConceptSetVersion) -> None:
    version.revision = version.revision + 1


def add_members(
    session: Session,
    namespace_id: int,
    version_id: int,
    concept_ids: Sequence[int],
    *,
    if_match: IfMatch | None = None,
) -> ConceptSetVersion:
    """Add concepts to a draft (idempotent). Each must be readable by the caller."""
    version = _draft_for_update(session, namespace_id, version_id, if_match)
    wanted = sorted(set(concept_ids))
    found: set[int] = set()
    for start in range(0, len(wanted), 10_000):
        chunk = wanted[start : start + 10_000]
        found.update(
            session.scalars(
                select(Concept.id).where(
                    Concept.id.in_(chunk), concept_readable_clause(namespace_id)
                )
            )
        )
    missing = [cid for cid in wanted if cid not in found]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise NotFound(f"{len(missing)} unknown concept ids: {shown}", field="concept_ids")
    session.execute(
        text(
            "INSERT INTO version_concepts (version_id, concept_id) "
            "SELECT :v, unnest(CAST(:ids AS bigint[])) ON CONFLICT DO NOTHING"
        ),
        {"v": version.id, "ids": wanted},
    )
    _bump(version)
    session.flush()
    return version


def remove_members(
    session: Session,
    namespace_id: int,
    version_id: int,
    concept_ids: Sequence[int],
    *,
    if_match: IfMatch | None = None,
) -> ConceptSetVersion:
    """Remove concepts from a draft (ids that are not members are ignored)."""
    version = _draft_for_update(session, namespace_id, version_id, if_match)
    session.execute(
        delete(VersionConcept).where(
            VersionConcept.version_id == version.id,
            VersionConcept.concept_id.in_(sorted(set(concept_ids))),
        )
    )
    _bump(version)
    session.flush()
    return version


_SNAPSHOT_STIMULI = text(
    """
    UPDATE version_concepts AS vc
    SET stimulus_ids = coalesce(
        (SELECT array_agg(s.id ORDER BY s.id) FROM stimuli AS s
         WHERE s.concept_id = vc.concept_id AND s.retired_at IS NULL),
        '{}'
    )
    WHERE vc.version_id = :v
    """
)


def publish_version(
    session: Session, namespace_id: int, version_id: int, *, if_match: IfMatch | None = None
) -> ConceptSetVersion:
    """Freeze a draft: snapshot its members' live stimuli, then mark it published.

    Concurrent publishes of one draft queue on its row lock: the first publishes, the
    others then find it published (409 ``immutable``).
    """
    version = _draft_for_update(session, namespace_id, version_id, if_match)
    session.execute(_SNAPSHOT_STIMULI, {"v": version.id})
    now = session.scalar(select(func.now()))  # before the change: a query autoflushes
    version.status = "published"
    version.published_at = now
    _bump(version)
    session.flush()
    return version


def delete_version(
    session: Session, namespace_id: int, version_id: int, *, if_match: IfMatch | None = None
) -> None:
    """Delete a draft (409 ``immutable`` for a published version)."""
    version = _draft_for_update(session, namespace_id, version_id, if_match)
    session.delete(version)
    session.flush()


def _stimulus_texts(session: Session, version: ConceptSetVersion) -> dict[int, set[str]]:
    """Per member concept, the stimulus texts the version holds (snapshot or live)."""
    if version.status == "published":
        snapshot = (
            select(
                VersionConcept.concept_id.label("concept_id"),
                func.unnest(VersionConcept.stimulus_ids).label("stimulus_id"),
            )
            .where(VersionConcept.version_id == version.id)
            .subquery()
        )
        query = select(snapshot.c.concept_id, Stimulus.text).join(
            Stimulus, Stimulus.id == snapshot.c.stimulus_id
        )
    else:
        query = (
            select(Stimulus.concept_id, Stimulus.text)
            .join(VersionConcept, VersionConcept.concept_id == Stimulus.concept_id)
            .where(VersionConcept.version_id == version.id, Stimulus.retired_at.is_(None))
        )
    out: dict[int, set[str]] = {}
    for concept_id, stimulus_text in session.execute(query).all():
        out.setdefault(concept_id, set()).add(stimulus_text)
    return out


def _names(session: Session, ids: Sequence[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(select(Concept.id, Concept.name).where(Concept.id.in_(ids))).all()
    return {cid: name for cid, name in rows}


def diff_versions(session: Session, namespace_id: int, from_id: int, to_id: int) -> VersionDiff:
    """Concepts added and removed from ``from_id`` to ``to_id``, and stimuli changed.

    Any two readable versions can be compared, of the same set or not.
    """
    a = readable_version(session, namespace_id, from_id, field="a")
    b = readable_version(session, namespace_id, to_id, field="b")
    members_a, members_b = set(member_ids(session, a.id)), set(member_ids(session, b.id))
    added, removed = sorted(members_b - members_a), sorted(members_a - members_b)
    common = members_a & members_b
    texts_a, texts_b = _stimulus_texts(session, a), _stimulus_texts(session, b)
    changed = [cid for cid in sorted(common) if texts_a.get(cid, set()) != texts_b.get(cid, set())]
    names = _names(session, added + removed + changed)
    return VersionDiff(
        from_version_id=a.id,
        to_version_id=b.id,
        added=[ConceptRef(id=c, name=names.get(c, "")) for c in added],
        removed=[ConceptRef(id=c, name=names.get(c, "")) for c in removed],
        stimuli_changed=[
            StimuliChange(
                concept_id=c,
                name=names.get(c, ""),
                added=sorted(texts_b.get(c, set()) - texts_a.get(c, set())),
                removed=sorted(texts_a.get(c, set()) - texts_b.get(c, set())),
            )
            for c in changed
        ],
    )


def lineage(session: Session, namespace_id: int, version_id: int) -> list[LineageEntry]:
    """The version's ancestors, nearest first, across forks (unreadable ones masked)."""
    version = readable_version(session, namespace_id, version_id, field="version_id")
    out: list[LineageEntry] = []
    seen = {version.id}
    parent_id = version.parent_version_id
    while parent_id is not None and len(out) < MAX_LINEAGE and parent_id not in seen:
        seen.add(parent_id)
        parent = session.get(ConceptSetVersion, parent_id)
        if parent is None:
            break
        concept_set = session.get(ConceptSet, parent.set_id)
        assert concept_set is not None
        if concept_set.public or concept_set.namespace_id == namespace_id:
            namespace = session.get(Namespace, concept_set.namespace_id)
            out.append(
                LineageEntry(
                    version_id=parent.id,
                    set_id=concept_set.id,
                    set_name=concept_set.name,
                    namespace=namespace.name if namespace else None,
                    number=parent.number,
                    status=parent.status,
                )
            )
        else:
            out.append(
                LineageEntry(
                    version_id=parent.id,
                    set_id=None,
                    set_name=None,
                    namespace=None,
                    number=None,
                    status=None,
                )
            )
        parent_id = parent.parent_version_id
    return out
