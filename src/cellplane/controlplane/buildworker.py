"""The build worker pool: runs queued builds as supervised subprocesses, a few at a time.

Each build runs ``python -m cellplane.build.runner`` in a process group of its own. The pool bounds how
many run at once, kills a build that outlives its timeout or grows past the memory cap (summing the
resident memory of every process it started), and on cancel, timeout or shutdown stops the runner and
every process below it — the runner is a child subreaper, so even daemonised grandchildren are found.
Events the runner prints become log lines, step states and the final result in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from cellplane.controlplane import audit, blobs, buildimages, builds, deployments, registries, resources
from cellplane.controlplane.keyring import KeyRing
from cellplane.errors import CellplaneError
from cellplane.model import KINDS
from cellplane.processes import freeze_and_kill
from cellplane.store import Store
from cellplane.store.tables import BuildRow

log = logging.getLogger("cellplane.builds")
HEARTBEAT_SECONDS = 5  # a running build's liveness in the store; builds.reap_stale waits 60 s


@dataclass
class BuildSettings:
    workers: int = 2
    timeout: int = 900
    memory_mb: int = 2048
    max_upload_mb: int = 100
    cache_dir: Path | None = None
    builds_dir: Path | None = None
    osv_database: str | None = None
    python_installer: str = "auto"  # auto (uv, else pip) | uv | pip
    poll_seconds: float = 1.0


@dataclass
class _Running:
    row_id: str
    process: asyncio.subprocess.Process
    started: float
    deadline: float
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    stop_reason: str | None = None  # "cancelled" | "timed-out" | "memory" | "shutdown"
    peak_rss: int = 0


class BuildWorkers:
    def __init__(self, store: Store, data_dir: Path, settings: BuildSettings, keyring: KeyRing | None = None) -> None:
        self.store = store
        self.keyring = keyring  # without one (tests of the worker alone), succeeded builds deploy nowhere
        self.settings = settings
        self.cache_dir = settings.cache_dir or data_dir / "cache"
        self.builds_dir = settings.builds_dir or data_dir / "builds"
        self.data_dir = data_dir
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.running: dict[str, _Running] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        self.builds_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._loop_task = asyncio.create_task(self._loop(), name="build-workers")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        for run in list(self.running.values()):
            run.stop_reason = "shutdown"
            await asyncio.to_thread(self._kill_tree, run)
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=15)
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await asyncio.to_thread(self._reap)
                while len(self.running) < self.settings.workers and not self._stopping:
                    row = await asyncio.to_thread(self._claim)
                    if row is None:
                        break
                    task = asyncio.create_task(self._run(row), name=f"build-{row['id']}")
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
            except Exception:  # the loop must survive a database hiccup
                log.exception("build worker loop")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)
            self._wake.clear()

    def _reap(self) -> None:
        with self.store.transaction() as s:
            for build_id in builds.reap_stale(s):
                log.warning("build %s: its worker stopped responding; marked failed", build_id)

    def _claim(self) -> dict[str, Any] | None:
        with self.store.transaction() as s:
            row = builds.claim(s, self.name)
            if row is None:
                return None
            project = resources.find(s, resources.Scope(KINDS["Project"], row.organization), row.project)
            component = resources.find(s, resources.Scope(KINDS["Component"], row.organization, row.project),
                                       row.component)
            targets = registries.targets(s, self.keyring, row.organization) if self.keyring is not None else []
            key = (registries.signing_key_pem(s, self.keyring, row.organization)
                   if self.keyring is not None and any(t.sign for t in targets) else None)
            return {"id": row.id, "source": dict(row.source or {}), "upload": row.upload,
                    "timeout": row.timeout_seconds, "policy": ((project.spec or {}).get("buildPolicy") or {})
                    .get("failOn") if project else {}, "component": dict(component.spec or {}) if component else {},
                    "place": (row.organization, row.project, row.component), "registries": targets,
                    "signingKey": key}

    # -- one build -----------------------------------------------------------------------------------------

    async def _run(self, claimed: dict[str, Any]) -> None:
        build_id = claimed["id"]
        workdir = self.builds_dir / build_id
        sink = _Sink(self.store, build_id, self.keyring)
        try:
            job = await asyncio.to_thread(self._write_job, claimed, workdir)
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cellplane.build.runner", str(job),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True, cwd=str(workdir), limit=1 << 20, env=_runner_env())
        except Exception as e:
            log.exception("build %s could not start", build_id)
            sink.result = {"ok": False, "error": f"the build could not start: {e}"}
            await asyncio.to_thread(sink.finish, None)
            shutil.rmtree(workdir, ignore_errors=True)
            return
        started = time.monotonic()
        run = _Running(build_id, process, started, started + claimed["timeout"])
        self.running[build_id] = run
        watchdog = asyncio.create_task(self._watch(run, sink))
        try:
            assert process.stdout is not None
            exited_at: float | None = None
            while True:
                try:
                    raw = await asyncio.wait_for(process.stdout.readline(), 1.0)
                except TimeoutError:
                    # Orphans the runner left behind may hold the pipe open: once the runner is gone, stop
                    # reading after a short grace (they are killed below).
                    if process.returncode is not None:
                        exited_at = exited_at or time.monotonic()
                        if time.monotonic() - exited_at > 3:
                            break
                    continue
                except ValueError:  # a line over the limit: skip it
                    continue
                if not raw:
                    break
                sink.feed(raw.decode("utf-8", "replace"))
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                log.error("build %s: the runner (pid %s) did not exit", build_id, process.pid)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            await asyncio.to_thread(self._kill_tree, run)  # whatever the runner left behind
            self.running.pop(build_id, None)
        forced = self._outcome(run, sink)
        if forced is None and claimed["registries"] and (sink.result or {}).get("ok"):
            forced = await self._image_step(claimed, sink)
        await asyncio.to_thread(sink.finish, forced)
        await asyncio.to_thread(shutil.rmtree, workdir, True)
        self.wake()

    async def _image_step(self, claimed: dict[str, Any], sink: _Sink) -> tuple[str, str] | None:
        """The image step in a thread, with the build's heartbeat and log kept up while it runs (a slow registry
        must not look like a dead worker). A cancel asked for meanwhile takes effect when the push returns (an
        HTTP call is not interrupted): the build ends cancelled, its image pushed but not recorded."""
        push = asyncio.create_task(asyncio.to_thread(self._image, claimed, sink))
        cancelled = False
        while not push.done():
            await asyncio.wait({push}, timeout=1.0)
            with contextlib.suppress(Exception):  # a database hiccup must not lose the push
                cancelled = await asyncio.to_thread(sink.flush, True) or cancelled
        await push
        if cancelled:
            sink.image = None
            return "cancelled", "cancelled by a user"
        return None

    def _retention(self, organization: str, project: str, component: str) -> tuple[list[str], set[str]]:
        """What tag cleanup keeps, read now (``registries.retention``)."""
        with self.store.transaction() as s:
            return registries.retention(s, organization, project, component)

    def _image(self, claimed: dict[str, Any], sink: _Sink) -> None:
        """Push the artifact's image (``buildimages``): a step of its own; a failure fails the build."""
        assert sink.result is not None
        organization, project, component = claimed["place"]
        sink.feed(json.dumps({"e": "step", "step": "image", "state": "running"}))
        started = time.monotonic()
        try:
            sink.image = buildimages.push(
                Path(sink.result["artifact"]), str(sink.result.get("digest")), build_id=claimed["id"],
                organization=organization, project=project, component=component, commit=sink.commit,
                targets=claimed["registries"], key_pem=claimed["signingKey"], log=lambda line: sink.log("image", line),
                cache=self.cache_dir, retention=lambda: self._retention(organization, project, component))
            state = "succeeded"
        except buildimages.ImageFailure as e:
            sink.result = {"ok": False, "error": str(e)}
            sink.log("image", str(e))
            state = "failed"
        except Exception as e:  # whatever else: the build still ends, failed, with one line
            log.exception("build %s: image step", claimed["id"])
            sink.result = {"ok": False, "error": f"image: {type(e).__name__}: {e}"}
            sink.log("image", sink.result["error"])
            state = "failed"
        sink.feed(json.dumps({"e": "step", "step": "image", "state": state,
                              "seconds": round(time.monotonic() - started, 3)}))

    def _outcome(self, run: _Running, sink: _Sink) -> tuple[str, str] | None:
        reason = run.stop_reason
        if reason == "cancelled":
            return "cancelled", "cancelled by a user"
        if reason == "timed-out":
            return "timed-out", f"the build did not finish within {int(run.deadline - run.started)}s and was stopped"
        if reason == "memory":
            return "failed", (f"the build used more than {self.settings.memory_mb} MiB of memory "
                              f"({run.peak_rss >> 20} MiB) and was stopped")
        if reason == "shutdown":
            return "failed", "the control plane stopped during the build"
        return None

    async def _watch(self, run: _Running, sink: _Sink) -> None:
        while True:
            await asyncio.sleep(0.25)
            try:
                await self._check(run, sink)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not leave a build unwatched
                log.exception("build %s: watchdog", run.row_id)

    async def _check(self, run: _Running, sink: _Sink) -> None:
        """One round: store what arrived (and beat the heart), then enforce cancel, timeout and memory."""
        if await asyncio.to_thread(sink.flush, True) and run.stop_reason is None:
            run.stop_reason = "cancelled"
            sink.note("cancel requested: stopping the build")
        if run.stop_reason is None and time.monotonic() > run.deadline:
            run.stop_reason = "timed-out"
            sink.note(f"timeout: the build ran longer than {int(run.deadline - run.started)}s")
        if run.stop_reason is None:
            rss = await asyncio.to_thread(self._memory, run)
            run.peak_rss = max(run.peak_rss, rss)
            if rss > self.settings.memory_mb << 20:
                run.stop_reason = "memory"
                sink.note(f"memory cap: the build used {rss >> 20} MiB (cap {self.settings.memory_mb} MiB)")
        if run.stop_reason is not None:
            await asyncio.to_thread(self._kill_tree, run)

    def _memory(self, run: _Running) -> int:
        total = 0
        try:
            root = psutil.Process(run.process.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        for p in procs:
            run.seen[p.pid] = p
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _kill_tree(self, run: _Running) -> None:
        """Stop the runner and every process it started: freeze them all, then kill them all."""
        for _ in range(5):
            procs: dict[int, psutil.Process] = {}
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(run.process.pid)
                procs = {p.pid: p for p in [root, *root.children(recursive=True)]}
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.process.pid, signal.SIGKILL)
            for pid, p in list(run.seen.items()):
                with contextlib.suppress(psutil.Error):
                    if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                        procs.setdefault(pid, p)
            if not freeze_and_kill(procs.values(), owned=run.process.pid):
                return

    def _write_job(self, claimed: dict[str, Any], workdir: Path) -> Path:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        source = dict(claimed["source"])
        if claimed["upload"]:
            archive = workdir / "upload.tar.gz"
            blobs.write_to(self.store, claimed["upload"], archive)
            source["archive"] = str(archive)
        job = {"dir": str(workdir), "cache": str(self.cache_dir), "source": source,
               "component": claimed["component"], "policy": claimed["policy"] or {},
               "osvDatabase": self.settings.osv_database,
               "uploadLimits": {"max_compressed": self.settings.max_upload_mb << 20},
               "memoryMb": self.settings.memory_mb, "pythonInstaller": self.settings.python_installer,
               "dataDir": str(self.data_dir)}
        path = workdir / "job.json"
        path.write_text(json.dumps(job))
        return path


def _runner_env() -> dict[str, str]:
    """The runner's environment: the control plane's, without its keys, tokens and database URL."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}


class _Sink:
    """Turns the runner's events into rows: logs in batches, steps, detection, findings and the result."""

    def __init__(self, store: Store, build_id: str, keyring: KeyRing | None = None) -> None:
        self.store = store
        self.keyring = keyring
        self.build_id = build_id
        self.pending: list[tuple[str, str]] = []
        self.seq = 0
        self.steps: list[dict[str, Any]] = []
        self.step = ""
        self.detection: dict[str, Any] | None = None
        self.findings: list[dict[str, Any]] | None = None
        self.commit: str | None = None
        self.result: dict[str, Any] | None = None
        self.image: dict[str, Any] | None = None  # the pushed image (buildimages.push), when a registry is set
        self.tail: list[str] = []
        self.dirty = False
        self.last_beat = 0.0

    def log(self, step: str, line: str) -> None:
        self.pending.append((step, line))

    def note(self, line: str) -> None:
        self.pending.append((self.step or "build", "cellplane: " + line))

    def feed(self, raw: str) -> None:
        raw = raw.rstrip("\n")
        try:
            event = json.loads(raw)
            kind = event.pop("e")
        except (ValueError, KeyError, TypeError, AttributeError):
            self.pending.append((self.step, raw))  # the runner printed something that is not an event
            return
        if kind == "log":
            line = str(event.get("line", ""))
            self.pending.append((str(event.get("step", self.step)), line))
            self.tail = [*self.tail[-19:], line]
        elif kind == "step":
            self.step = str(event.get("step", ""))
            existing = next((s for s in self.steps if s["name"] == self.step), None)
            entry = {"name": self.step, "state": event.get("state")}
            if event.get("seconds") is not None:
                entry["seconds"] = event["seconds"]
            if event.get("detail"):
                entry["detail"] = event["detail"]
            if existing:
                existing.update(entry)
            else:
                self.steps.append(entry)
            self.dirty = True
        elif kind == "detection":
            self.detection, self.dirty = event, True
        elif kind == "findings":
            self.findings, self.dirty = event.get("findings") or [], True
        elif kind == "source":
            self.commit, self.dirty = event.get("commit"), True
        elif kind == "result":
            self.result = event
            self.commit = event.get("commit") or self.commit

    def flush(self, heartbeat: bool = False) -> bool:
        """Write what arrived; returns whether a cancel was requested."""
        with self.store.transaction() as s:
            row = s.get(BuildRow, self.build_id)
            if row is None:  # deleted with its component: stop the build
                return True
            if self.pending:  # taken first: the image step's thread may add lines meanwhile
                pending, self.pending = self.pending, []
                self.seq = builds.add_logs(s, self.build_id, self.seq, pending)
            if self.dirty:
                row.steps = [dict(x) for x in self.steps]
                if self.detection is not None:
                    row.detection = self.detection
                if self.findings is not None:
                    row.findings = self.findings
                row.commit = self.commit or row.commit
                self.dirty = False
            if heartbeat and time.monotonic() - self.last_beat >= HEARTBEAT_SECONDS:
                row.heartbeat_at = builds.now()
                self.last_beat = time.monotonic()
            return row.cancel_requested

    def finish(self, forced: tuple[str, str] | None) -> None:
        self.dirty = True
        self.flush()
        artifact_path = None
        with self.store.transaction() as s:
            row = s.get(BuildRow, self.build_id)
            if row is None:
                return
            result = self.result or {}
            if forced is not None:
                state, error = forced
            elif result.get("ok"):
                state, error = "succeeded", ""
                artifact_path = Path(result["artifact"])
            else:
                state = "failed"
                error = result.get("error") or "the build process exited without a result" + (
                    f"; last output: {self.tail[-1]}" if self.tail else "")
            if artifact_path is not None:
                try:
                    digest, _ = blobs.put(s, artifact_path)
                except OSError as e:
                    state, error = "failed", f"the artifact could not be stored: {e}"
                else:
                    if digest != result.get("digest"):
                        state, error = "failed", f"the artifact's digest {digest} differs from {result.get('digest')}"
                    else:
                        builds.record_artifact(s, row, digest, result.get("manifest") or {})
                        row.image = self.image
            row.steps = [dict(x) for x in self.steps]
            builds.finish(row, state, error)
            row.steps = [dict(x) for x in row.steps]
            if row.upload:
                builds.release_upload(s, row)
            line = f"build {state}" + (f": {error}" if error else "") + (
                f" — artifact {row.artifact}" if row.artifact and state == "succeeded" else "") + (
                f", image {row.image['reference']}" if row.image and state == "succeeded" else "")
            self.seq = builds.add_logs(s, self.build_id, self.seq, [("result", line)])
        if state == "succeeded" and self.keyring is not None:
            self._deploy()

    def _deploy(self) -> None:
        """Auto-deploy and preview deploys, in a transaction of their own: a refusal leaves the build succeeded and
        says why in its log."""
        try:
            with self.store.transaction() as s:
                row = s.get(BuildRow, self.build_id)
                if row is None:
                    return
                assert self.keyring is not None
                said = deployments.after_build(s, self.keyring, row)
                for line in said:
                    audit.record(s, row.requested_by or "system", "deploy", "succeeded", "Component",
                                 row.organization, row.project, row.component, f"build {row.id}: {line}")
        except CellplaneError as e:
            said = [f"auto-deploy refused: {e.message}"]
        except Exception as e:  # the build succeeded whatever happens here; say what did not
            log.exception("deploying build %s failed", self.build_id)
            said = [f"auto-deploy failed: {type(e).__name__}: {e}"]
        if said:
            with self.store.transaction() as s:
                self.seq = builds.add_logs(s, self.build_id, self.seq, [("result", line) for line in said])
