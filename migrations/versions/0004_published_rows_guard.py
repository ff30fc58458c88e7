"""Guard the rest of what a published version comprises: names, stimuli, labels, atoms.

Migration 0001 makes a published concept-set version, its membership and its stimuli
snapshot (ids) immutable. What those rows point to lives in other tables: its members'
names, the stimulus texts of the snapshot, the partitions over it with their labels,
and its members' atoms. The API refuses to change them (409); these triggers refuse
direct SQL too, with the same SQLSTATE ``PC409``. Creating rows stays free (a new
partition version, atoms at a new layer), and so do the live parts of a concept:
description, tags, and retiring or reviving stimuli.

Statement-level triggers over transition tables: one check per statement.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IMMUTABLE_SQLSTATE = "PC409"

_PUBLISHED_MEMBER = """EXISTS (SELECT 1 FROM version_concepts vc
        JOIN concept_set_versions v ON v.id = vc.version_id
        WHERE vc.concept_id = {concept} AND v.status = 'published'{extra})"""


def _member(concept: str, extra: str = "") -> str:
    return _PUBLISHED_MEMBER.format(concept=concept, extra=extra)


_IN_SNAPSHOT = _member("o.concept_id", " AND o.id = ANY(vc.stimulus_ids)")

# table -> (the rows an UPDATE may not change, those a DELETE may not remove), as
# queries over the transition tables ``old_rows`` (alias o) and ``new_rows`` (n);
# None: that operation is not guarded
_GUARDS: dict[str, tuple[str, str | None]] = {
    "concepts": (
        "FROM old_rows o JOIN new_rows n ON n.id = o.id "
        "WHERE (o.name, o.namespace_id) IS DISTINCT FROM (n.name, n.namespace_id) "
        f"AND {_member('o.id')}",
        None,  # deleting a member is refused by the version_concepts guard (0001)
    ),
    "stimuli": (
        "FROM old_rows o JOIN new_rows n ON n.id = o.id "
        "WHERE (o.concept_id, o.text, o.text_sha256, o.source, o.provenance) "
        "IS DISTINCT FROM (n.concept_id, n.text, n.text_sha256, n.source, n.provenance) "
        f"AND {_IN_SNAPSHOT}",
        f"FROM old_rows o WHERE {_IN_SNAPSHOT}",
    ),
    "partitions": (
        "FROM old_rows o JOIN concept_set_versions v ON v.id = o.concept_set_version_id "
        "WHERE v.status = 'published'",
        "FROM old_rows o JOIN concept_set_versions v ON v.id = o.concept_set_version_id "
        "WHERE v.status = 'published'",
    ),
    # a label whose partition is gone went with it, and the partitions guard judged that
    "labels": (
        "FROM old_rows o JOIN partitions p ON p.id = o.partition_id "
        "JOIN concept_set_versions v ON v.id = p.concept_set_version_id "
        "WHERE v.status = 'published'",
        "FROM old_rows o JOIN partitions p ON p.id = o.partition_id "
        "JOIN concept_set_versions v ON v.id = p.concept_set_version_id "
        "WHERE v.status = 'published'",
    ),
    "atoms": (
        f"FROM old_rows o WHERE {_member('o.concept_id')}",
        f"FROM old_rows o WHERE {_member('o.concept_id')}",
    ),
}


def _refuse(query: str) -> str:
    return f"""IF EXISTS (SELECT 1 {query}) THEN
            RAISE EXCEPTION '% of a published concept-set version are immutable',
                TG_TABLE_NAME USING ERRCODE = '{IMMUTABLE_SQLSTATE}';
        END IF;"""


def _create(table: str, on_update: str, on_delete: str | None) -> str:
    delete_branch = f"ELSE\n        {_refuse(on_delete)}" if on_delete is not None else ""
    statements = f"""
CREATE FUNCTION pace_guard_published_{table}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        {_refuse(on_update)}
    {delete_branch}
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER guard_published_{table}_update AFTER UPDATE ON {table}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pace_guard_published_{table}();
"""
    if on_delete is not None:
        statements += f"""
CREATE TRIGGER guard_published_{table}_delete AFTER DELETE ON {table}
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pace_guard_published_{table}();
"""
    return statements


def upgrade() -> None:
    for table, (on_update, on_delete) in _GUARDS.items():
        op.execute(_create(table, on_update, on_delete))


def downgrade() -> None:
    for table, (_, on_delete) in reversed(_GUARDS.items()):
        if on_delete is not None:
            op.execute(f"DROP TRIGGER guard_published_{table}_delete ON {table}")
        op.execute(f"DROP TRIGGER guard_published_{table}_update ON {table}")
        op.execute(f"DROP FUNCTION pace_guard_published_{table}()")
