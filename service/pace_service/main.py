"""The application factory. Nothing is built at import time.

>>> app = create_app(Settings(database_url="postgresql://..."))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine

from . import __version__
from .api.deps import Principal
from .api.errors import install_error_handlers
from .api.key_cache import KeyCache
from .api.limits import BodyLimitMiddleware
from .api.nearest_fast import NearestFastPath
from .core.async_db import AsyncConnections, libpq_url
from .core.config import Settings
from .core.db import create_engine, create_session_factory
from .schemas.common import ErrorPublic
from .store.blob_files import sweep_temp_files

__all__ = ["API_PREFIX", "ROUTE_MODULES", "create_app"]

API_PREFIX = "/v1"

ROUTE_MODULES = (
    "search",  # first: routes are matched in order, and this is the hot path
    "keys",
    "models",
    "recipes",
    "concepts",
    "concept_sets",
    "tasks",
    "partitions",
    "vectors",
    "dictionaries",
)
"""Modules under ``pace_service.api.routes``, each exporting ``router``."""


def _routers() -> list[APIRouter]:
    routers: list[APIRouter] = []
    for name in ROUTE_MODULES:
        qualified = f"{__package__}.api.routes.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name == qualified:  # not written yet (built in parallel)
                continue
            raise
        routers.append(module.router)
    return routers


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    on_shutdown: Sequence[Callable[[], None]] = (),
) -> FastAPI:
    """Build the FastAPI app for ``settings`` (default: from the environment).

    ``settings.database_url`` must be set (``python -m pace_service serve`` starts the
    embedded server and sets it). The engine is disposed at shutdown unless given;
    ``on_shutdown`` callbacks run after that (``serve`` stops the embedded server there,
    since uvicorn re-raises SIGTERM after shutdown and atexit hooks would not run).
    """
    settings = settings or Settings()
    own_engine = engine is None
    if engine is None:
        if not settings.database_url:
            raise ValueError("settings.database_url is not set")
        engine = create_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
    # The read-only search hot path has its own pool: autocommit (no BEGIN/COMMIT round
    # trips) and no pre-ping (a dropped connection fails the search, which is retried
    # once on a fresh one; see api/routes/search.py).
    search_engine = create_engine(
        engine.url.render_as_string(hide_password=False),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=False,
        isolation_level="AUTOCOMMIT",
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sweep_temp_files(settings.blob_dir)  # what builds killed earlier left behind
        try:
            yield
        finally:
            await app.state.async_connections.close()
            search_engine.dispose()
            if own_engine:
                engine.dispose()
            for callback in on_shutdown:
                callback()

    app = FastAPI(
        title="pace-concepts",
        version=__version__,
        description="Versioned concept dictionaries for PaCE concept engineering.",
        lifespan=lifespan,
        responses={"default": {"model": ErrorPublic, "description": "Error envelope"}},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = create_session_factory(engine)
    app.state.key_cache = KeyCache[Principal](settings.auth_cache_seconds)
    app.state.search_engine = search_engine
    app.state.search_session_factory = create_session_factory(search_engine)
    # The event loop's searches hold a connection for one round trip only: a few serve
    # any number of clients (they wait their turn without a thread), and the thread
    # pools' 40 + 40 plus these stay under PostgreSQL's default 100 connections.
    app.state.async_connections = AsyncConnections(
        libpq_url(search_engine), size=settings.db_pool_size, limit=settings.db_pool_size
    )
    install_error_handlers(app)
    # Added first, so it runs inside the body limits (the last added is the outermost).
    app.add_middleware(NearestFastPath, path=f"{API_PREFIX}/search/nearest")
    app.add_middleware(
        BodyLimitMiddleware,
        max_upload_bytes=settings.max_upload_bytes,
        max_json_bytes=settings.max_json_bytes,
        idle_timeout_s=settings.upload_idle_timeout_s,
        min_bytes_per_s=settings.upload_min_bytes_per_s,
    )
    for router in _routers():
        app.include_router(router, prefix=API_PREFIX)
    return app
