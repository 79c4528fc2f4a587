"""Reading archive files over HTTP: the zip and its ``.CHECKSUM``, verified, or a reason to fall back.

A file is ``bytes`` only when its SHA-256 equals the one its ``.CHECKSUM`` names. Anything else is
an :class:`ArchiveMiss` saying why (404: not published; a checksum that disagrees twice; an HTTP
error or timeout after retries), and the caller reads that span through the REST API instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ccxt_questdb_assets.archive.layout import ArchiveFile

if TYPE_CHECKING:
    import aiohttp

_log = logging.getLogger(__name__)

#: Attempts of one file (a checksum mismatch or a transient HTTP failure is retried once more each).
ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class ArchiveMiss:
    """A file the archive could not give: ``reason`` for logs and metadata."""

    file: ArchiveFile
    reason: str
    missing: bool  # 404: the archive does not have it (yet)


class ArchiveClient:
    """One HTTP session to the archive at ``base_url`` (``https://data.binance.vision``), opened and
    closed on one event loop: ``async with ArchiveClient(url) as client: ...``."""

    def __init__(self, base_url: str, *, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ArchiveClient:
        import aiohttp  # here, not at import: a process that reads no archive file never loads it

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ArchiveClient is used outside 'async with'")
        return self._session

    async def read(self, file: ArchiveFile) -> bytes | ArchiveMiss:
        """The file's bytes, checksum verified, or why not."""
        import aiohttp

        reason = ""
        for _ in range(ATTEMPTS):
            try:
                data, checksum = await asyncio.gather(self._get(file.path), self._get(file.checksum_path))
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                _log.info("archive file %s: %s; asking again", file.name, reason)
                continue
            if isinstance(data, int) or isinstance(checksum, int):
                status = data if isinstance(data, int) else checksum
                if status == 404:
                    return ArchiveMiss(file, "not published (404)", missing=True)
                reason = f"HTTP {status}"
                continue
            expected = checksum.split(maxsplit=1)[0].decode("ascii", "replace").lower() if checksum.strip() else ""
            actual = hashlib.sha256(data).hexdigest()
            if expected == actual:
                return data
            reason = f"SHA-256 {actual} differs from its .CHECKSUM {expected or '(empty)'}"
            _log.info("archive file %s: %s; asking again", file.name, reason)
        _log.warning("archive file %s: %s; reading its span through the REST API", file.name, reason)
        return ArchiveMiss(file, reason, missing=False)

    async def _get(self, path: str) -> bytes | int:
        async with self._http().get(f"{self.base_url}/{path}") as response:
            if response.status != 200:
                return response.status
            return await response.read()
