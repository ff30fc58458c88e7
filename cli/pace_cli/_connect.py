"""Connect a command to the service: the one at ``--url``/``$PACE_URL``, or an embedded one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pace.client import Client
from pace_cli._service import running_service
from pace_cli.workflow import WorkflowError

__all__ = ["connect", "resolve_version"]


@contextmanager
def connect(url: str | None, api_key: str | None) -> Iterator[Client]:
    """A client for the given service, or for an embedded one started for this command."""
    url = url or os.environ.get("PACE_URL")
    if url:
        with Client(base_url=url, api_key=api_key) as client:
            yield client
        return
    with (
        running_service() as service,
        Client(base_url=service.url, api_key=api_key or service.api_key) as client,
    ):
        yield client


def resolve_version(client: Client, set_name: str, number: int | None) -> dict[str, Any]:
    """A version of one of the caller's readable sets, by set name and number.

    ``number=None`` means the latest published version.
    """
    page = client.request_json("GET", "/v1/concept-sets", params={"name": set_name})
    items = page["items"] if isinstance(page, dict) else []
    if not items:
        raise WorkflowError(f"no concept set named {set_name!r}")
    own = client.me().namespace
    items.sort(key=lambda s: s["namespace"] != own)  # the caller's own set first
    versions = items[0]["versions"]
    if number is None:
        published = [v for v in versions if v["status"] == "published"]
        if not published:
            raise WorkflowError(f"set {set_name!r} has no published version")
        chosen = published[-1]
    else:
        matches = [v for v in versions if int(v["number"]) == number]
        if not matches:
            raise WorkflowError(f"set {set_name!r} has no version {number}")
        chosen = matches[0]
    return client.get_version(int(chosen["id"]))
