"""What the emulated public archive is told: when files appear, and which are missing or corrupt."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

DAY_MS = 86_400_000
#: The bytes of generated zips an emulator keeps (about a hundred months of 1m klines).
CACHE_BYTES = 256 * 2**20


class FileCache:
    """Generated files (zip bytes and their SHA-256), least recently used out past ``max_bytes``."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._files: OrderedDict[tuple[object, ...], tuple[bytes, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._files)

    def get(self, key: tuple[object, ...]) -> tuple[bytes, str] | None:
        found = self._files.get(key)
        if found is not None:
            self._files.move_to_end(key)
        return found

    def put(self, key: tuple[object, ...], data: bytes, digest: str) -> None:
        if len(data) > self.max_bytes or key in self._files:
            return
        self._files[key] = (data, digest)
        self.size += len(data)
        while self.size > self.max_bytes:
            _, (old, _) = self._files.popitem(last=False)
            self.size -= len(old)


@dataclass
class ArchiveState:
    """When files appear, and which ones are missing or corrupt (``/_emulator/archive``)."""

    daily_publish_ms: int = 6 * 3_600_000
    monthly_publish_ms: int = 2 * DAY_MS
    missing: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    #: Files generated so far (``reset()`` makes a new state, so a market listed again starts afresh).
    cache: FileCache = field(default_factory=FileCache, repr=False, compare=False)

    def update(self, changes: dict[str, object]) -> None:
        """Apply ``{"missing": [names], "corrupt": [names], "daily_publish_ms": n, ...}``."""
        for key, value in changes.items():
            if key in ("missing", "corrupt"):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"archive {key} must be a list of file names, got {value!r}")
                setattr(self, key, set(value))
            elif key in ("daily_publish_ms", "monthly_publish_ms"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"archive {key} must be milliseconds >= 0, got {value!r}")
                setattr(self, key, value)
            else:
                raise ValueError(
                    f"unknown archive setting {key!r}; valid: missing, corrupt, daily_publish_ms, monthly_publish_ms"
                )

    def to_dict(self) -> dict[str, object]:
        return {
            "missing": sorted(self.missing),
            "corrupt": sorted(self.corrupt),
            "daily_publish_ms": self.daily_publish_ms,
            "monthly_publish_ms": self.monthly_publish_ms,
        }
