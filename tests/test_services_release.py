"""Pinned QuestDB releases: resolution, fetch through mvn, SHA-256 verification (no network needed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ccxt_questdb_assets.core.errors import ConfigError, ServiceError
from ccxt_questdb_assets.services.questdb_release import (
    DEFAULT_VERSION,
    ENV_SHA256,
    ENV_VERSION,
    PINNED_RELEASES,
    QuestDBRelease,
    cached_jar_path,
    fetch_release,
    install_jar,
    jar_cache_dir,
    resolve_release,
    sha256_file,
)

FAKE = QuestDBRelease("1.2.3", sha256="0" * 64, min_java=17, pinned=False)


@pytest.fixture(scope="module")
def real_jar(request: pytest.FixtureRequest) -> Path:
    """The verified pinned jar from the project's cache (fetched once through mvn if missing)."""
    env = dict(os.environ)
    env.setdefault("CCXT_QUESTDB_HOME", str(request.config.rootpath / ".ccxt-questdb"))
    return fetch_release(resolve_release(env=env), env=env)


def _fake_mvn(bin_dir: Path, payload: bytes) -> None:
    """An `mvn` that "copies" ``payload`` as the requested jar into -DoutputDirectory."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "mvn"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import sys, pathlib\n"
        "args = dict(a[2:].split('=', 1) for a in sys.argv[1:] if a.startswith('-D') and '=' in a)\n"
        "g, a, v = args['artifact'].split(':')[:3]\n"
        "out = pathlib.Path(args['outputDirectory']); out.mkdir(parents=True, exist_ok=True)\n"
        f"(out / f'{{a}}-{{v}}.jar').write_bytes({payload!r})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_default_release_is_pinned_9_3_4_on_java_17() -> None:
    r = resolve_release(env={})
    assert (r.version, r.min_java, r.pinned) == ("9.3.4", 17, True) and DEFAULT_VERSION == "9.3.4"
    assert (
        r.sha256
        == PINNED_RELEASES["9.3.4"].sha256
        == "939bc53ab22f93dbaa6545143a6e7c536d4904c07b7f2d381e8eef10436be062"
    )
    assert r.maven_coordinates == "org.questdb:questdb:9.3.4"


def test_version_override_unknown_version_names_it_and_known_ones() -> None:
    with pytest.raises(ConfigError) as ei:
        resolve_release(env={ENV_VERSION: "9.9.9"})
    assert "9.9.9" in str(ei.value) and "9.3.4" in str(ei.value) and ENV_SHA256 in str(ei.value)
    with pytest.raises(ConfigError, match="X.Y.Z"):
        resolve_release("latest", env={ENV_SHA256: "a" * 64})


def test_unpinned_version_allowed_with_explicit_sha256() -> None:
    r = resolve_release(env={ENV_VERSION: "9.4.0", ENV_SHA256: "AB" * 32})
    assert (r.version, r.sha256, r.min_java, r.pinned) == ("9.4.0", "ab" * 32, 25, False)
    assert resolve_release("9.2.0", env={ENV_SHA256: "ab" * 32}).min_java == 17
    with pytest.raises(ConfigError):
        resolve_release("9.4.0", env={ENV_SHA256: "xyz"})


def test_sha256_env_disagreeing_with_a_pin_is_rejected() -> None:
    with pytest.raises(ConfigError, match="disagrees"):
        resolve_release("9.3.4", env={ENV_SHA256: "ab" * 32})


def test_install_verifies_a_good_jar(real_jar: Path, tmp_path: Path) -> None:
    release = resolve_release(env={})
    assert sha256_file(real_jar) == release.sha256
    dest = install_jar(real_jar, release, tmp_path)
    assert dest == cached_jar_path(release, tmp_path) and sha256_file(dest) == release.sha256
    assert [p.name for p in tmp_path.iterdir()] == [dest.name]


def test_tampered_copy_is_rejected_and_not_cached(real_jar: Path, tmp_path: Path) -> None:
    release = resolve_release(env={})
    tampered = tmp_path / "src" / real_jar.name
    tampered.parent.mkdir()
    data = bytearray(real_jar.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(ServiceError, match="refusing to use it") as ei:
        install_jar(tampered, release, cache)
    assert release.sha256 in str(ei.value)
    assert list(cache.iterdir()) == []


def test_fetch_through_mvn_rejects_a_bad_download(tmp_path: Path) -> None:
    _fake_mvn(tmp_path / "bin", b"not a questdb jar")
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "CCXT_QUESTDB_HOME": str(tmp_path / "home")}
    with pytest.raises(ServiceError, match="SHA-256"):
        fetch_release(FAKE, env=env)
    assert not any(jar_cache_dir(env).iterdir())


def test_fetch_through_mvn_accepts_a_matching_download_and_reuses_the_cache(tmp_path: Path) -> None:
    import hashlib

    payload = b"pretend jar"
    release = QuestDBRelease("1.2.3", hashlib.sha256(payload).hexdigest(), 17, pinned=False)
    _fake_mvn(tmp_path / "bin", payload)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "CCXT_QUESTDB_HOME": str(tmp_path / "home")}
    jar = fetch_release(release, env=env)
    assert jar.read_bytes() == payload and jar.parent == jar_cache_dir(env)
    # Cached: no mvn needed any more.
    assert fetch_release(release, env={"PATH": "/nonexistent", "CCXT_QUESTDB_HOME": env["CCXT_QUESTDB_HOME"]}) == jar
    # A cached file that no longer matches is discarded and fetched again.
    jar.write_bytes(b"corrupted")
    assert fetch_release(release, env=env).read_bytes() == payload


def test_missing_mvn_says_how_to_install(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "CCXT_QUESTDB_HOME": str(tmp_path / "home")}
    with pytest.raises(ServiceError, match="apt-get install maven"):
        fetch_release(FAKE, env=env)


def test_mvn_failure_is_reported(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mvn").write_text("#!/bin/sh\necho 'Could not resolve artifact' >&2\nexit 1\n")
    (bin_dir / "mvn").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CCXT_QUESTDB_HOME": str(tmp_path / "home")}
    with pytest.raises(ServiceError, match="Could not resolve artifact"):
        fetch_release(FAKE, env=env)


def test_real_mvn_fetch_into_a_fresh_cache(tmp_path: Path, real_jar: Path) -> None:
    """The real `mvn dependency:copy` path (served from the local Maven repository when cached)."""
    env = dict(os.environ, CCXT_QUESTDB_HOME=str(tmp_path / "home"))
    jar = fetch_release(resolve_release(env={}), env=env)
    assert jar.parent == jar_cache_dir(env) and sha256_file(jar) == sha256_file(real_jar)
