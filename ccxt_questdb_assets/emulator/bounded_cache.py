"""What an emulator keeps of work it can answer again: values, least recently used out past a byte budget."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

__all__ = ["BoundedCache"]


class BoundedCache(Generic[V]):
    """Values by key, at most ``max_bytes`` of them (each weighs ``size_of(value)``), least recently
    used out first; a value larger than the whole budget is not kept."""

    def __init__(self, max_bytes: int, size_of: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._size_of = size_of
        self._values: OrderedDict[Hashable, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: Hashable) -> V | None:
        found = self._values.get(key)
        if found is not None:
            self._values.move_to_end(key)
        return found

    def put(self, key: Hashable, value: V) -> None:
        size = self._size_of(value)
        if size > self.max_bytes or key in self._values:
            return
        self._values[key] = value
        self.size += size
        while self.size > self.max_bytes:
            _, old = self._values.popitem(last=False)
            self.size -= self._size_of(old)
