"""Hugging Face Hub models: one cache for the course, read alone when offline, fail fast with what to do."""

from __future__ import annotations

import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from course_utils.runtime import standin

T = TypeVar("T")
_TRUE = {"1", "true", "yes", "on"}


def cache_dir() -> Path:
    """The course's one Hugging Face cache: `$HF_HUB_CACHE` when set, else `huggingface/` in
    `train.checkpoint_dir()`: on Google Drive when it is mounted (a recycled Colab runtime keeps its
    downloads, as lesson 05 keeps its checkpoint), else in the course data cache."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    from course_utils.train import checkpoint_dir  # Drive detection lives with the checkpoints

    return checkpoint_dir() / "huggingface"


class HubUnavailableError(ConnectionError):
    """A Hub model is neither in the local cache nor downloadable now."""


def offline() -> bool:
    """Whether Hub loads must use the local cache only: `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`)
    is set, or the Hub (`HF_ENDPOINT`, default huggingface.co), or the proxy configured for it,
    does not accept a connection."""
    if any(
        os.environ.get(v, "").strip().lower() in _TRUE
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ):
        return True
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    proxy = urllib.request.getproxies().get(endpoint.scheme)  # behind a proxy, probe the proxy
    target = urllib.parse.urlsplit(proxy) if proxy else endpoint
    port = target.port or (80 if target.scheme == "http" else 443)
    try:
        # one TCP connection, instead of the Hub client's retries (about 35 s) before its OSError
        with socket.create_connection((target.hostname, port), timeout=3):
            return False
    except OSError:
        return True


def from_pretrained(
    loader: Callable[..., T],
    name: str,
    *,
    revision: str | None = None,
    size: str = "size unknown",
    alternative: str = "",
    **kwargs: object,
) -> T:
    """`loader(name, revision=..., **kwargs)` for a `from_pretrained` loader, cached in
    `cache_dir()` unless `kwargs` name a `cache_dir`, from that cache only when `offline()`; a
    failure raises HubUnavailableError naming the model, its revision, its download `size` and the
    offline `alternative`. A local folder `name` is loaded as it is."""
    if Path(name).is_dir():
        return loader(name, **kwargs)
    fake = standin("hub", name, revision or "main")
    if fake is not None:  # a test's stand-in Hub folder (COURSE_STANDINS)
        return loader(str(fake), **kwargs)
    kwargs.setdefault("cache_dir", str(cache_dir()))
    local_only = offline()
    try:
        return loader(name, revision=revision, local_files_only=local_only, **kwargs)
    except OSError as exc:
        why = (
            "it is not in the local cache, and the Hub cannot be reached (or HF_HUB_OFFLINE is set)"
            if local_only
            else f"the Hub did not provide it ({exc})"
        )
        instead = f" Offline alternative: {alternative}." if alternative else ""
        raise HubUnavailableError(
            f"Could not load the Hugging Face model {name!r} at revision {revision or 'main'} "
            f"({size} to download): {why}. To work offline later, load it once with internet "
            f"access: it is then cached in {kwargs['cache_dir']}.{instead}"
        ) from exc
