"""The worker's process-tree killing, on the event loop the control plane really runs (uvloop)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import psutil
import uvloop

from cellplane.controlplane.buildworker import BuildSettings, BuildWorkers, _Running


def test_killing_a_build_tree_leaves_its_exit_status_to_the_event_loop(tmp_path: Path) -> None:
    # psutil must not reap the runner: the event loop would then wait for its exit status forever.
    workers = BuildWorkers(None, tmp_path, BuildSettings())  # type: ignore[arg-type]  (no store needed here)
    script = ("import subprocess, time; subprocess.Popen(['sleep', '7801'], start_new_session=True); "
              "subprocess.Popen(['sleep', '7802']); time.sleep(60)")

    async def scenario() -> int:
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, start_new_session=True)
        run = _Running("b-test", process, time.monotonic(), time.monotonic() + 60)
        while len(psutil.Process(process.pid).children()) < 2:
            await asyncio.sleep(0.05)
        workers._memory(run)  # the watchdog's sampling: it also remembers every process it saw
        workers._kill_tree(run)  # blocking the loop, as a busy loop would: psutil gets there first if it waits
        return await asyncio.wait_for(process.wait(), 10)

    code = uvloop.run(scenario())
    assert code == -9
    alive = [p for p in psutil.process_iter(["cmdline"]) if "7801" in " ".join(p.info["cmdline"] or [])
             or "7802" in " ".join(p.info["cmdline"] or [])]
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
