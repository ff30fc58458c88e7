"""Background search-index builds: uploads to several layers at once all get their index.

Found by the load bench: one upload per layer starts one background build each, and
two ``CREATE INDEX CONCURRENTLY`` on ``atoms`` at once deadlock (each waits for the
other's transaction), so all but one index were lost and searches stayed exact.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import psycopg
from vectors_support import activation_like, seed


def test_concurrent_builds_on_several_layers_all_succeed(app: Any, database_url: str) -> None:
    from pace_service.copy import copy_in
    from pace_service.store.search_index import ensure_search_indexes, search_index_ready
    from pace_service.store.vectors import atom_layout

    layers, n, dim = 6, 300, 64
    s = seed(app, n_concepts=n, hidden_size=dim, num_layers=layers)
    libpq = database_url.replace("+psycopg", "")
    layout = atom_layout(dim)
    with psycopg.connect(libpq) as conn:
        for layer in range(layers):
            stream = layout.encode(
                {
                    "model_id": s.model_id,
                    "layer": np.full(n, layer, np.int32),
                    "recipe_id": s.recipe_id,
                    "concept_id": np.asarray(s.concept_ids, np.int64),
                    "vector": activation_like(n, dim, seed=layer).astype(np.float16),
                }
            )
            copy_in(conn, "atoms", layout, stream)
        conn.commit()

    engine = app.state.engine
    start = threading.Barrier(layers)

    def build(layer: int) -> None:
        start.wait()
        ensure_search_indexes(engine, s.model_id, s.recipe_id, [layer], dim)

    threads = [threading.Thread(target=build, args=(layer,)) for layer in range(layers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    with psycopg.connect(libpq) as conn:
        ready = [search_index_ready(conn, s.model_id, i, s.recipe_id) for i in range(layers)]
    assert ready == [True] * layers
