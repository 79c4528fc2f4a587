"""What the emulated public archive is told: when files appear, and which are missing or corrupt."""

from __future__ import annotations

from dataclasses import dataclass, field

from ccxt_questdb_assets.emulator.bounded_cache import BoundedCache

DAY_MS = 86_400_000
#: The bytes of generated zips an emulator keeps (about a hundred months of 1m klines).
CACHE_BYTES = 256 * 2**20


#: A generated file: its zip bytes and their SHA-256.
ArchiveFile = tuple[bytes, str]


def file_cache(max_bytes: int = CACHE_BYTES) -> BoundedCache[ArchiveFile]:
    """Generated files, weighed by their zip bytes, least recently used out past ``max_bytes``."""
    return BoundedCache(max_bytes, size_of=lambda file: len(file[0]))


@dataclass
class ArchiveState:
    """When files appear, and which ones are missing or corrupt (``/_emulator/archive``)."""

    daily_publish_ms: int = 6 * 3_600_000
    monthly_publish_ms: int = 2 * DAY_MS
    missing: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    #: Files generated so far (``reset()`` makes a new state, so a market listed again starts afresh).
    cache: BoundedCache[ArchiveFile] = field(default_factory=file_cache, repr=False, compare=False)

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
