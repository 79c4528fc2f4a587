"""Pinned QuestDB releases: resolve the version, fetch the jar with Maven, verify it, cache it.

The server ships as one jar (``org.questdb:questdb``, native libraries inside). ``fetch_release``
asks the ``mvn`` client for it (``dependency:copy``), checks its SHA-256 against the pin and only
then moves it into ``<state dir>/questdb/jars/``. A jar that does not match is deleted, never used.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ccxt_questdb_assets.core.errors import ConfigError, ServiceError
from ccxt_questdb_assets.services.state import state_dir

__all__ = [
    "PinnedRelease",
    "PINNED_RELEASES",
    "DEFAULT_VERSION",
    "ENV_VERSION",
    "ENV_SHA256",
    "ENV_MIN_JAVA",
    "MAVEN_GROUP",
    "MAVEN_ARTIFACT",
    "QuestDBRelease",
    "resolve_release",
    "jar_cache_dir",
    "cached_jar_path",
    "sha256_file",
    "verify_jar",
    "install_jar",
    "find_mvn",
    "fetch_release",
]


class PinnedRelease(NamedTuple):
    sha256: str
    min_java: int


#: version -> (sha256 of questdb-<version>.jar, minimum Java major version)
PINNED_RELEASES: dict[str, PinnedRelease] = {
    "9.3.4": PinnedRelease("939bc53ab22f93dbaa6545143a6e7c536d4904c07b7f2d381e8eef10436be062", 17),
}
DEFAULT_VERSION = "9.3.4"

ENV_VERSION = "CCXT_QUESTDB_QUESTDB_VERSION"
ENV_SHA256 = "CCXT_QUESTDB_QUESTDB_SHA256"
ENV_MIN_JAVA = "CCXT_QUESTDB_QUESTDB_MIN_JAVA"

MAVEN_GROUP = "org.questdb"
MAVEN_ARTIFACT = "questdb"

_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class QuestDBRelease:
    version: str
    sha256: str
    min_java: int
    pinned: bool = True

    @property
    def jar_name(self) -> str:
        return f"{MAVEN_ARTIFACT}-{self.version}.jar"

    @property
    def maven_coordinates(self) -> str:
        return f"{MAVEN_GROUP}:{MAVEN_ARTIFACT}:{self.version}"


def _default_min_java(version: str) -> int:
    major, minor = (int(x) for x in version.split(".")[:2])
    return 25 if (major, minor) >= (9, 4) else 17


def resolve_release(version: str | None = None, env: Mapping[str, str] | None = None) -> QuestDBRelease:
    """The release to use: ``version``, else ``$CCXT_QUESTDB_QUESTDB_VERSION``, else the default.

    A version outside ``PINNED_RELEASES`` is accepted only with its SHA-256 in
    ``$CCXT_QUESTDB_QUESTDB_SHA256`` (minimum Java from ``$CCXT_QUESTDB_QUESTDB_MIN_JAVA``, default
    25 for 9.4 and later, else 17).
    """
    env = os.environ if env is None else env
    v = (version or env.get(ENV_VERSION, "") or DEFAULT_VERSION).strip()
    known = ", ".join(sorted(PINNED_RELEASES))
    sha_env = env.get(ENV_SHA256, "").strip().lower()
    if v in PINNED_RELEASES:
        pin = PINNED_RELEASES[v]
        if sha_env and sha_env != pin.sha256:
            raise ConfigError(
                f"{ENV_SHA256}={sha_env} disagrees with the pinned SHA-256 of QuestDB {v} ({pin.sha256}); "
                f"unset {ENV_SHA256}"
            )
        return QuestDBRelease(v, pin.sha256, pin.min_java, pinned=True)
    if not _VERSION_RE.match(v):
        raise ConfigError(f"QuestDB version {v!r} is not of the form X.Y.Z; known versions: {known}")
    if not sha_env:
        raise ConfigError(
            f"QuestDB version {v} is not pinned (known versions: {known}); to use it anyway set "
            f"{ENV_SHA256} to the SHA-256 of {MAVEN_ARTIFACT}-{v}.jar"
        )
    if not _SHA256_RE.match(sha_env):
        raise ConfigError(f"{ENV_SHA256} must be 64 hex digits, got {sha_env!r}")
    raw_java = env.get(ENV_MIN_JAVA, "").strip()
    if raw_java:
        try:
            min_java = int(raw_java)
        except ValueError:
            raise ConfigError(f"{ENV_MIN_JAVA} must be a Java major version like 17 or 25, got {raw_java!r}") from None
    else:
        min_java = _default_min_java(v)
    return QuestDBRelease(v, sha_env, min_java, pinned=False)


def jar_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    return state_dir(env) / "questdb" / "jars"


def cached_jar_path(release: QuestDBRelease, cache_dir: Path | None = None) -> Path:
    return (cache_dir or jar_cache_dir()) / release.jar_name


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_jar(path: Path, release: QuestDBRelease) -> None:
    """ServiceError unless ``path`` has the release's SHA-256."""
    if not path.is_file():
        raise ServiceError(f"QuestDB jar {path} does not exist")
    got = sha256_file(path)
    if got != release.sha256:
        raise ServiceError(
            f"QuestDB {release.version} jar {path} has SHA-256 {got}, expected {release.sha256}: "
            "refusing to use it (corrupt or tampered download; delete it, and its copy under "
            f"~/.m2/repository/org/questdb/questdb/{release.version}/, then fetch again)"
        )


def install_jar(source: Path, release: QuestDBRelease, cache_dir: Path | None = None) -> Path:
    """Copy ``source`` into the cache, verify the copy, then publish it atomically.

    On a checksum mismatch nothing is left in the cache and ServiceError is raised.
    """
    cache_dir = cache_dir or jar_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    dest = cached_jar_path(release, cache_dir)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{release.jar_name}.", suffix=".part", dir=cache_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        shutil.copyfile(source, tmp)
        try:
            verify_jar(tmp, release)
        except ServiceError:
            raise ServiceError(
                f"QuestDB {release.version} jar from {source} has SHA-256 {sha256_file(tmp)}, expected "
                f"{release.sha256}: refusing to use it (corrupt or tampered download; delete {source} "
                "and fetch again)"
            ) from None
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def find_mvn(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    mvn = shutil.which("mvn", path=env.get("PATH"))
    if not mvn:
        raise ServiceError(
            "Maven (`mvn`) is needed to fetch the QuestDB jar and is not on PATH; install it with "
            "`apt-get install maven` (Debian/Ubuntu) or your OS's maven package"
        )
    return mvn


def fetch_release(
    release: QuestDBRelease | None = None,
    *,
    cache_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 900.0,
) -> Path:
    """The verified jar of ``release`` in the cache, fetched through ``mvn`` when missing.

    A cached jar is re-verified on every call; a bad one is deleted and fetched again.
    """
    env = os.environ if env is None else env
    release = release or resolve_release(env=env)
    cache_dir = cache_dir or jar_cache_dir(env)
    dest = cached_jar_path(release, cache_dir)
    if dest.is_file():
        try:
            verify_jar(dest, release)
            return dest
        except ServiceError:
            dest.unlink(missing_ok=True)
    mvn = find_mvn(env)
    with tempfile.TemporaryDirectory(prefix="ccxt-questdb-mvn-") as tmpdir:
        out_dir = Path(tmpdir) / "out"
        cmd = [
            mvn,
            "-B",
            "-q",
            "--no-transfer-progress",
            "dependency:copy",
            f"-Dartifact={release.maven_coordinates}:jar",
            f"-DoutputDirectory={out_dir}",
            "-Dmdep.overWriteReleases=true",
            "-Dtransitive=false",
        ]
        try:
            # cwd is an empty dir so a pom.xml in the caller's cwd cannot change what mvn does.
            proc = subprocess.run(
                cmd, cwd=tmpdir, capture_output=True, text=True, timeout=timeout, env=dict(env), check=False
            )
        except subprocess.TimeoutExpired:
            raise ServiceError(
                f"`mvn dependency:copy` of {release.maven_coordinates} timed out after {timeout:.0f} s"
            ) from None
        except OSError as exc:
            raise ServiceError(f"cannot run {mvn}: {exc}") from exc
        jar = out_dir / release.jar_name
        if proc.returncode != 0 or not jar.is_file():
            tail = "\n".join(((proc.stdout or "") + (proc.stderr or "")).strip().splitlines()[-15:])
            raise ServiceError(
                f"`mvn dependency:copy` could not fetch {release.maven_coordinates} (exit {proc.returncode}); "
                f"check that Maven can reach its repository. Output:\n{tail}"
            )
        return install_jar(jar, release, cache_dir)
