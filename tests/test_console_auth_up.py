"""`cellplane up` (what `make run` starts) opens the way to the console: on the first run the admin's password is
generated into <data dir>/admin-password (0600) and set, its closing lines print the console's URL and how to sign
in, and that password signs in. A second run keeps the file as it is. Real processes; no demo (nothing built)."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import httpx

from consolekit import SIGN_IN, sign_in_form
from liveserver import CELLPLANE, free_port, start_server


def _up(tmp: Path, run: int, port: int) -> str:
    """One `up` until its summary is printed, then Ctrl-C; returns its stdout."""
    stdout, stderr = tmp / f"up{run}.out", tmp / f"up{run}.err"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
    env["CELLPLANE_CONFIG"] = str(tmp / "config.yaml")
    process = subprocess.Popen(
        [str(CELLPLANE), "up", "--data-dir", str(tmp / "data"), "--port", str(port), "--gateway-port", "0",
         "--cache-dir", str(tmp / "cache")],
        stdout=stdout.open("w"), stderr=stderr.open("w"), env=env, start_new_session=True, cwd=tmp)
    try:
        deadline = time.monotonic() + 120
        while "data plane" not in (text := stdout.read_text()):
            assert process.poll() is None, f"up exited with {process.returncode}\n{text}\n{stderr.read_text()}"
            assert time.monotonic() < deadline, f"no summary within 120 s\n{text}\n{stderr.read_text()}"
            time.sleep(0.1)
        return text
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _sign_in(url: str, password: str) -> int:
    with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as c:
        csrf = sign_in_form(c)
        r = c.post(SIGN_IN, data={"csrf": csrf, "username": "admin", "password": password})
        return r.status_code


def test_up_sets_the_admins_first_password_once_and_prints_how_to_sign_in(tmp_path: Path) -> None:
    port = free_port()
    text = _up(tmp_path, 1, port)
    path = tmp_path / "data" / "admin-password"
    url = f"http://127.0.0.1:{port}"
    line = re.search(r"console +(\S+)  \(sign in as admin; the password is in (.+)\)", text)
    assert line, text
    assert line.group(1) == url + "/console/" and Path(line.group(2)) == path.resolve()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().strip()
    assert len(password) >= 12 and password not in text
    written = path.stat().st_mtime_ns
    _up(tmp_path, 2, port)  # a second run keeps the file and the password
    assert path.stat().st_mtime_ns == written
    # the planes are stopped: a control plane alone shows the password signs in
    server = start_server(tmp_path / "data", port=free_port())
    try:
        assert _sign_in(server.url, password) == 303
        assert _sign_in(server.url, password + "x") == 401
    finally:
        server.stop()
