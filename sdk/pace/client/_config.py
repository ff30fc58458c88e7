"""Where the Client's base URL and API key come from when not given."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["DEFAULT_BASE_URL", "api_key_file", "resolve_api_key", "resolve_base_url"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def api_key_file() -> Path:
    """The file where the embedded service writes its first admin key."""
    return Path(platformdirs.user_data_dir("pace")) / "api-key"


def resolve_base_url(base_url: str | None) -> str:
    """The argument, else ``$PACE_URL``, else ``http://127.0.0.1:8000``."""
    url = base_url or os.environ.get("PACE_URL") or DEFAULT_BASE_URL
    return url.rstrip("/")


def resolve_api_key(api_key: str | None) -> str | None:
    """The argument, else ``$PACE_API_KEY``, else the embedded service's key file."""
    if api_key:
        return api_key
    env = os.environ.get("PACE_API_KEY")
    if env:
        return env.strip()
    try:
        key = api_key_file().read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return key or None
