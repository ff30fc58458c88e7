"""The relational schema (SQLAlchemy 2 typed ORM). Alembic migrations build it.

Design decisions (documented in docs/api.md, "Data model"):

- **Namespaces** own concepts, concept sets and tasks. Models and recipes are global
  (shared by every namespace): they describe public facts, and atoms are keyed by them.
- **Stimuli are immutable rows.** Editing a concept's stimuli adds rows or *retires*
  rows (``retired_at``); rows are never updated or deleted while a concept exists.
  Identical text is stored once per concept (``text_sha256`` unique per concept).
- **Versions.** A draft version follows its concepts' live stimuli. Publishing freezes
  a snapshot: ``version_concepts.stimulus_ids`` lists exactly which stimulus rows each
  member had (an array per member: a 40,000-concept version publishes 40,000 rows,
  not 1.2 million).
  Database triggers (migration 0001) refuse any change to a published version, its
  membership or its snapshot, whoever asks; a concept that is a member of a published
  version therefore cannot be deleted.
- **Atoms** are ``halfvec`` without a fixed dimension (any hidden size up to
  pgvector's 16,000 storage limit); primary key (model, layer, recipe, concept).
- **Dictionaries** are content-addressed rows (sha256 ``hash``); their bytes are a
  file under ``<data dir>/blobs`` (atomic write, then rename), not a bytea: one
  dictionary for 32 layers of a 7B model is 2.6 GB, above bytea's 1 GB limit, and a
  file is served with sendfile at disk speed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pgvector.sqlalchemy import HALFVEC
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import ARRAY, BIT, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "MAX_HIDDEN_SIZE",
    "ROLES",
    "ApiKey",
    "Atom",
    "Base",
    "Concept",
    "ConceptSet",
    "ConceptSetVersion",
    "Dictionary",
    "Label",
    "Model",
    "Namespace",
    "Partition",
    "Recipe",
    "Stimulus",
    "Task",
    "VersionConcept",
]

MAX_HIDDEN_SIZE = 16000
"""pgvector's storage limit for ``vector``/``halfvec``."""

ROLES = ("read", "write", "admin")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention (stable constraint names)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _created_at() -> Mapped[dt.datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def _revision() -> Mapped[int]:
    """The optimistic-concurrency counter (migration 0003): the API's ``ETag``."""
    return mapped_column(Integer, server_default="1", nullable=False)


class Namespace(Base):
    """A team: owns concepts, concept sets and tasks, and holds API keys."""

    __tablename__ = "namespaces"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[dt.datetime] = _created_at()


class ApiKey(Base):
    """An API key, stored only as the sha256 of the secret."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('read', 'write', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(
        ForeignKey("namespaces.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = _created_at()
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Concept(Base):
    """A concept: a case-sensitive name unique in its namespace, description, tags."""

    __tablename__ = "concepts"
    __table_args__ = (
        UniqueConstraint("namespace_id", "name"),
        Index("ix_concepts_tags", "tags", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default="")
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=sql_text("'{}'"))
    created_at: Mapped[dt.datetime] = _created_at()
    updated_at: Mapped[dt.datetime] = _created_at()
    revision: Mapped[int] = _revision()


class Stimulus(Base):
    """One stimulus text of a concept, with provenance. Immutable; retired, not deleted."""

    __tablename__ = "stimuli"
    __table_args__ = (
        UniqueConstraint("concept_id", "text_sha256"),
        CheckConstraint("source IN ('generated', 'imported', 'human')", name="source"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    concept_id: Mapped[int] = mapped_column(ForeignKey("concepts.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(16))
    provenance: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sql_text("'{}'"))
    created_at: Mapped[dt.datetime] = _created_at()
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ConceptSet(Base):
    """A named, versioned set of concepts; private to its namespace unless public."""

    __tablename__ = "concept_sets"
    __table_args__ = (UniqueConstraint("namespace_id", "name"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default="")
    public: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("false"))
    forked_from_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("concept_sets.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = _created_at()
    revision: Mapped[int] = _revision()


class ConceptSetVersion(Base):
    """A numbered version of a set: ``draft`` (editable) or ``published`` (frozen)."""

    __tablename__ = "concept_set_versions"
    __table_args__ = (
        UniqueConstraint("set_id", "number"),
        CheckConstraint("status IN ('draft', 'published')", name="status"),
        CheckConstraint("(status = 'published') = (published_at IS NOT NULL)", name="published_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("concept_sets.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), server_default="draft")
    parent_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("concept_set_versions.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = _created_at()
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revision: Mapped[int] = _revision()


class VersionConcept(Base):
    """Membership of a concept in a version.

    ``stimulus_ids`` is the publish-time snapshot (ascending ids of the concept's live
    stimuli); NULL while the version is a draft. Stimulus rows are never deleted while
    their concept exists, and a concept held by a published version cannot be deleted,
    so the ids stay valid without a foreign key per element.
    """

    __tablename__ = "version_concepts"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("concept_set_versions.id", ondelete="CASCADE"), primary_key=True
    )
    concept_id: Mapped[int] = mapped_column(
        ForeignKey("concepts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    stimulus_ids: Mapped[list[int] | None] = mapped_column(ARRAY(BigInteger))


class Model(Base):
    """A language model (Hugging Face id + revision). Global."""

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("hf_id", "revision"),
        CheckConstraint(f"hidden_size BETWEEN 1 AND {MAX_HIDDEN_SIZE}", name="hidden_size"),
        CheckConstraint("num_layers >= 1", name="num_layers"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hf_id: Mapped[str] = mapped_column(Text)
    revision: Mapped[str] = mapped_column(Text)
    hidden_size: Mapped[int] = mapped_column(Integer)
    num_layers: Mapped[int] = mapped_column(Integer)
    architecture: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created_at()


class Recipe(Base):
    """How atoms were made. Unique by content (``content_hash``). Global."""

    __tablename__ = "recipes"
    __table_args__ = (
        CheckConstraint("token_position IN ('last', 'mean')", name="token_position"),
        CheckConstraint("reduction IN ('mean', 'pc1')", name="reduction"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    token_position: Mapped[str] = mapped_column(String(16))
    reduction: Mapped[str] = mapped_column(String(16))
    prompt_template: Mapped[str] = mapped_column(Text)
    code_version: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = _created_at()


class Atom(Base):
    """One concept vector per (model, layer, recipe, concept), stored as halfvec."""

    __tablename__ = "atoms"
    __table_args__ = (
        CheckConstraint("layer >= 0", name="layer"),
        Index("ix_atoms_concept_id", "concept_id"),
    )

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    layer: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipe_id: Mapped[int] = mapped_column(
        ForeignKey("recipes.id", ondelete="CASCADE"), primary_key=True
    )
    concept_id: Mapped[int] = mapped_column(
        ForeignKey("concepts.id", ondelete="CASCADE"), primary_key=True
    )
    vector: Mapped[Any] = mapped_column(HALFVEC())
    code: Mapped[str] = mapped_column(
        BIT(varying=True),
        Computed("binary_quantize(vector)::varbit", persisted=True),
        deferred=True,
    )
    """The atom's binary quantization, which the search indexes are built on (migration
    0005: an index over an expression makes every scanned row recompute it)."""


class Task(Base):
    """An alignment task: a name and a description of the goal."""

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("namespace_id", "name"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[dt.datetime] = _created_at()
    revision: Mapped[int] = _revision()


class Partition(Base):
    """A version of the labels of one task over one concept-set version. Immutable."""

    __tablename__ = "partitions"
    __table_args__ = (UniqueConstraint("task_id", "concept_set_version_id", "version"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    concept_set_version_id: Mapped[int] = mapped_column(
        ForeignKey("concept_set_versions.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("partitions.id", ondelete="SET NULL"))
    provenance: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sql_text("'{}'"))
    created_at: Mapped[dt.datetime] = _created_at()


class Label(Base):
    """A concept's label in a partition."""

    __tablename__ = "labels"
    __table_args__ = (CheckConstraint("label IN ('benign', 'undesirable')", name="label"),)

    partition_id: Mapped[int] = mapped_column(
        ForeignKey("partitions.id", ondelete="CASCADE"), primary_key=True
    )
    concept_id: Mapped[int] = mapped_column(
        ForeignKey("concepts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    label: Mapped[str] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Double)
    rationale: Mapped[str] = mapped_column(Text, server_default="")
    labeler: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sql_text("'{}'"))


class Dictionary(Base):
    """A materialized dictionary: content-addressed; bytes in ``<data dir>/blobs``."""

    __tablename__ = "dictionaries"
    __table_args__ = (
        CheckConstraint("status IN ('ready')", name="status"),
        Index("ix_dictionaries_inputs_hash", "inputs_hash"),
    )

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    inputs_hash: Mapped[str] = mapped_column(String(64))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONB)
    concept_set_version_id: Mapped[int] = mapped_column(
        ForeignKey("concept_set_versions.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    recipe_id: Mapped[int] = mapped_column(ForeignKey("recipes.id", ondelete="CASCADE"))
    partition_id: Mapped[int | None] = mapped_column(
        ForeignKey("partitions.id", ondelete="CASCADE")
    )
    layers: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    n_concepts: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), server_default="ready")
    created_at: Mapped[dt.datetime] = _created_at()
