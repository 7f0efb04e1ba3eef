"""Fetching the demos' data files, with an error that says how to place them by hand when it fails.

Example::

    fetch(url, Path("data/wikitext-2.txt"), how="save that file as data/wikitext-2.txt")
"""

from __future__ import annotations

import logging
import os
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)


def _get(url: str) -> bytes:
    """The body of ``url`` (raises ``urllib.error.URLError`` and its ``HTTPError`` on failure)."""
    with urllib.request.urlopen(url) as response:
        body: bytes = response.read()
    return body


def fetch(url: str, destination: Path, *, how: str) -> None:
    """Write the file at ``url`` to ``destination``; nothing is left there if the download fails.

    Raises:
        OSError: the download failed (no network, an HTTP error): the message names the URL, the
            folder and ``how`` to place the file by hand; the cause is chained.
    """
    log.info(f"Downloading {url}")
    try:
        body = _get(url)
    except Exception as error:
        raise OSError(
            f"Could not download {url} into the folder {str(destination.parent)!r} ({type(error).__name__}: {error})."
            f" Without network access, {how}."
        ) from error
    partial = destination.with_name(destination.name + ".part")
    partial.write_bytes(body)
    os.replace(partial, destination)
