"""A throwaway PostgreSQL server for the test run.

The tests need a real PostgreSQL (SQLite hides plenty of dialect differences), but they must not
depend on, or disturb, any cluster that happens to be installed and running on the machine.  So
this module runs its own short-lived server:

* in a fresh temporary directory (``initdb``), removed again by :meth:`PostgresServer.stop`;
* listening only on ``127.0.0.1`` on a free port, plus a Unix socket inside that directory (never
  in ``/var/run/postgresql``, which belongs to the system's clusters);
* with one trusted superuser, ``cellplane``, and no password, because nothing but this test run can
  reach it.

Typical use (``tests/conftest.py`` does this once per session)::

    server = PostgresServer.start()
    url = server.create_database("t1")  # postgresql+psycopg://cellplane@127.0.0.1:PORT/t1
    ...
    server.stop()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

#: Where Debian (and Ubuntu) install the server binaries, one directory per major version.
#: They are not on PATH there: only the client wrappers from postgresql-common are.
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")

#: The superuser that ``initdb`` creates; every URL handed out connects as this role.
SUPERUSER = "cellplane"

#: The system account that runs the server when the tests run as root (see ``_as_server_user``).
SERVER_OS_USER = "postgres"

_NEEDED = ("initdb", "pg_ctl", "postgres")
_DBNAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _has_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _NEEDED)


def _version_key(bindir: Path) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin``: ``15`` > ``9.6``, not string order."""
    parts = re.findall(r"\d+", bindir.parent.name)
    return tuple(int(p) for p in parts) or (0,)


def find_postgres_bin() -> Path | None:
    """Return the directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None``.

    ``/usr/lib/postgresql/<version>/bin`` is searched first, highest version winning, because
    that is where Debian's packages put the real server binaries.  Only then is PATH consulted:
    a ``pg_ctl``/``initdb`` found on PATH may be a wrapper (postgresql-common installs
    ``pg_ctlcluster``-style wrappers, and other tools ship shims of their own), so a PATH hit
    is resolved through symlinks and accepted only if all three binaries sit side by side.
    """
    candidates = sorted(DEBIAN_PG_ROOT.glob("*/bin"), key=_version_key, reverse=True)
    for bindir in candidates:
        if _has_server_binaries(bindir):
            return bindir
    found = shutil.which("initdb")
    if found:
        bindir = Path(found).resolve().parent
        if _has_server_binaries(bindir):
            return bindir
    return None


def _free_port() -> int:
    """Ask the kernel for a free TCP port on loopback.

    The socket is closed before the server binds, so another process could in principle grab
    the port in between; :meth:`PostgresServer.start` retries with a new port if that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no server log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(server log is empty)"


class PostgresServerError(RuntimeError):
    """The throwaway server could not be set up, started or used."""


class PostgresServer:
    """One running throwaway PostgreSQL server.  Create it with :meth:`start`."""

    def __init__(self, bindir: Path, base: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.bindir = bindir
        #: The temporary directory holding ``data/``, ``sock/`` and ``postgres.log``.
        self.base = base
        self.port = port
        self.host = "127.0.0.1"
        self._process = process
        self._stopped = False

    # ----------------------------------------------------------------------------- lifecycle

    @classmethod
    def start(cls, bindir: Path | None = None, timeout: float = 30.0) -> PostgresServer:
        """Initialise a new cluster in a temporary directory and start a server on it.

        Raises :class:`PostgresServerError` if the binaries are missing or the server does not
        accept connections within ``timeout`` seconds (the message carries the server log tail).
        """
        bindir = bindir or find_postgres_bin()
        if bindir is None:
            raise PostgresServerError(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under "
                f"{DEBIAN_PG_ROOT}/*/bin or on PATH; run `make postgres` (scripts/ensure-postgres.sh)"
            )
        base = Path(tempfile.mkdtemp(prefix="cellplane-pg-"))
        try:
            _prepare_base(base)
            # fmt: off
            _run(
                bindir,
                "initdb",
                [
                    "-D", str(base / "data"),
                    "-U", SUPERUSER,
                    "--auth=trust",
                    "-E", "UTF8",
                    # C collation: byte order, identical on every machine whatever LANG says,
                    # and no dependency on locales being generated on a fresh CI box.
                    "--locale=C",
                    # Don't fsync the new cluster's files: it is deleted at the end of the run.
                    "--no-sync",
                ],
                cwd=base,
            )
            # fmt: on
            # A port can be taken between _free_port() and the bind; try a few fresh ones.
            attempts = 3
            for attempt in range(1, attempts + 1):
                try:
                    return cls._launch(bindir, base, _free_port(), timeout)
                except PostgresServerError as exc:
                    if attempt == attempts or "already in use" not in str(exc):
                        raise
            raise AssertionError("unreachable")
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise

    @classmethod
    def _launch(cls, bindir: Path, base: Path, port: int, timeout: float) -> PostgresServer:
        """Start ``postgres`` in the foreground as our child and wait until it takes connections.

        Running the ``postgres`` binary directly (rather than ``pg_ctl start``) keeps a process
        handle, so a server that dies at startup is noticed at once instead of after the timeout,
        and no option goes through the shell that ``pg_ctl -o`` uses.
        """
        log = base / "postgres.log"
        # fmt: off
        args = [
            "-D", str(base / "data"),
            "-p", str(port),
            "-k", str(base / "sock"),
            "-c", "listen_addresses=127.0.0.1",
            # Durability is pointless for a database deleted after the run, and fsync is the
            # slowest part of the many small transactions tests make.  A crash loses the data;
            # that is fine here and never acceptable anywhere else.
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
        ]
        # fmt: on
        with log.open("wb") as log_file:  # fresh per attempt: errors show this attempt only
            process = subprocess.Popen(
                _command(bindir, "postgres", args),
                cwd=base,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal goes to pytest, which then stops the
                # server through stop(), instead of racing it with a signal of its own.
                start_new_session=True,
            )
        server = cls(bindir, base, port, process)
        try:
            server._wait_until_ready(timeout, log)
        except BaseException:
            server._stop_process()  # keep base: start() may retry on another port
            raise
        return server

    def _wait_until_ready(self, timeout: float, log: Path) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PostgresServerError(
                    f"PostgreSQL exited at startup with code {self._process.returncode}; "
                    f"end of the server log:\n{_tail(log)}"
                )
            try:
                with psycopg.connect(self.dsn_for("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                last_error = exc
                time.sleep(0.1)
        raise PostgresServerError(
            f"PostgreSQL did not accept connections on {self.host}:{self.port} within {timeout:.0f}s "
            f"(last error: {last_error}); end of the server log:\n{_tail(log)}"
        )

    def stop(self) -> None:
        """Stop the server at once (``pg_ctl stop -m immediate``) and delete its directory.

        Immediate mode skips the shutdown checkpoint: nothing in the cluster is worth keeping.
        Safe to call more than once.
        """
        if self._stopped:
            return
        self._stopped = True
        try:
            self._stop_process()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def _stop_process(self) -> None:
        if self._process.poll() is not None:
            return
        with contextlib.suppress(PostgresServerError):
            _run(
                self.bindir,
                "pg_ctl",
                ["stop", "-D", str(self.base / "data"), "-m", "immediate", "-w", "-t", "30"],
                cwd=self.base,
            )
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # pg_ctl failed or hung.  SIGKILL cannot be forwarded by runuser, so kill the whole
            # process group (start_new_session made the server its own group leader).
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------------------- databases

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of database ``dbname`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def dsn_for(self, dbname: str) -> str:
        """libpq URI of database ``dbname``, for ``psycopg.connect`` (which rejects ``+psycopg``)."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def create_database(self, dbname: str, template: str = "template1") -> str:
        """Create a database as a copy of ``template`` (an empty one by default) and return its
        SQLAlchemy URL. The copy is a file copy on the server; the template must have no sessions.

        Names are limited to lower-case identifiers so they need no quoting in URLs either.
        """
        if not _DBNAME.match(dbname):
            raise ValueError(f"database name {dbname!r} must match {_DBNAME.pattern}")
        # CREATE DATABASE cannot run inside a transaction block, hence autocommit.
        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(dbname),
                                                                          sql.Identifier(template)))
        return self.url_for(dbname)


# --------------------------------------------------------------------------------- helpers


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _server_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise PostgresServerError(
            f"running as root, but there is no {SERVER_OS_USER!r} system user to run PostgreSQL as "
            "(initdb and postgres refuse to run as root); install Debian's postgresql package "
            "(`make postgres`) or run the tests as an ordinary user"
        ) from None


def _prepare_base(base: Path) -> None:
    """Create ``sock/`` and, when root, hand the directory to the ``postgres`` user.

    ``mkdtemp`` makes a 0700 directory owned by us.  As root, the server runs as ``postgres``,
    which must own it (to create ``data/`` and the log) and be able to reach it, so the
    directory is chowned and made traversable (0711: others may pass through, not list it).
    """
    (base / "sock").mkdir()
    if _running_as_root():
        user = _server_user()
        for path in (base, base / "sock"):
            os.chown(path, user.pw_uid, user.pw_gid)
        base.chmod(0o711)
        # Every directory above must be traversable by postgres too (a TMPDIR under /root
        # would not be); fail with a plain message rather than initdb's.
        probe = subprocess.run(
            ["runuser", "-u", SERVER_OS_USER, "--", "test", "-w", str(base)],
            check=False,
            cwd="/",
        )
        if probe.returncode != 0:
            raise PostgresServerError(
                f"user {SERVER_OS_USER!r} cannot write to {base}; set TMPDIR to one it can reach (e.g. /tmp)"
            )


def _command(bindir: Path, program: str, args: Sequence[str]) -> list[str]:
    """The command line for a server binary, run as ``postgres`` when we are root.

    ``initdb`` and ``postgres`` refuse to run as root (a server running as root could be turned
    into a root shell through SQL).  ``runuser`` switches user without a password or PAM
    session, which is what root-only CI needs; ``sudo`` may not even be installed.
    """
    cmd = [str(bindir / program), *args]
    if _running_as_root():
        _server_user()  # raises a clear error if the account is missing
        return ["runuser", "-u", SERVER_OS_USER, "--", *cmd]
    return cmd


def _run(bindir: Path, program: str, args: Sequence[str], cwd: Path) -> None:
    """Run a server binary to completion; raise with its output if it fails.

    ``cwd`` is set to the temp directory because the ``postgres`` user may not be allowed into
    the caller's working directory (e.g. ``/root/...``), which makes initdb complain.
    """
    result = subprocess.run(
        _command(bindir, program, args),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PostgresServerError(
            f"{program} failed with exit code {result.returncode}:\n{result.stdout}{result.stderr}"
        )
