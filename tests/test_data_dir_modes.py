"""The planes' data directories are their user's alone: 0700, files 0600, whatever created them. A wider directory
is tightened at start (and says so); one of another user is refused with one clear line."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from liveserver import CELLPLANE, free_port

NOBODY = 65534


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
    env["CELLPLANE_CONFIG"] = os.devnull + ".none"
    return env


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        assert not os.environ.get("CI"), "this test needs root and setpriv (util-linux)"
        pytest.skip("needs root and setpriv")
    return subprocess.run([setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
                          capture_output=True, text=True, timeout=30)


def _readable_by_others(root: Path) -> list[str]:
    wide = []
    for path in (root, *root.rglob("*")):
        st = path.lstat()
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
            wide.append(f"{path} {stat.S_IMODE(st.st_mode):04o}")
    return wide


def test_up_makes_a_world_readable_data_directory_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    spool = data / "dataplane" / "spool"
    spool.mkdir(parents=True)
    for d in (data, data / "dataplane", spool):
        d.chmod(0o755)
    (spool / "logs.jsonl").write_text("")  # left by an older version, readable by anyone
    (spool / "logs.jsonl").chmod(0o644)
    port = free_port()
    err = tmp_path / "up.err"
    up = subprocess.Popen([str(CELLPLANE), "up", "--data-dir", str(data), "--port", str(port), "--gateway-port", "0",
                           "--build-workers", "0", "--cache-dir", str(tmp_path / "cache")],
                          stdout=(tmp_path / "up.out").open("w"), stderr=err.open("w"), env=_env(),
                          start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Cellplane is up." not in (tmp_path / "up.out").read_text():
            assert up.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((data / "dataplane").stat().st_mode) == 0o700
        names = {p.name for p in data.iterdir()} | {p.name for p in (data / "dataplane").iterdir()}
        assert {"cellplane.db", "admin.token", "master.key", "token.key", "agent.key", "desired.json",
                "spool"} <= names, names
        assert _readable_by_others(data) == []
        assert "made it 0600" in err.read_text() and "made it 0700" in err.read_text(), err.read_text()
        for secret in (data / "cellplane.db", data / "admin.token", data / "dataplane" / "agent.key"):
            read = _as_nobody("cat", str(secret))
            assert read.returncode != 0 and "Permission denied" in read.stderr, (secret, read)
        # the files themselves too, should the directory ever be opened up
        data.chmod(0o711)
        read = _as_nobody("cat", str(data / "cellplane.db"))
        data.chmod(0o700)
        assert read.returncode != 0 and "Permission denied" in read.stderr, read
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(60)


def test_a_data_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        assert not os.environ.get("CI"), "this test needs root (to give a directory to another user)"
        pytest.skip("needs root")
    data = tmp_path / "theirs"
    data.mkdir(mode=0o700)
    os.chown(data, NOBODY, NOBODY)
    result = subprocess.run([str(CELLPLANE), "controlplane", "serve", "--port", str(free_port()), "--data-dir",
                             str(data)], capture_output=True, text=True, env=_env(), timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"belongs to user id {NOBODY}" in line and str(data) in line, result.stderr
    assert list(data.iterdir()) == [], "nothing is written into it"
