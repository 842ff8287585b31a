"""make bench's table in docs/performance.md: a run of some suites (--only) replaces their rows, keeps the rest."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import run  # benchmarks/run.py, on the path just above
from common import Figure, Suite

INFO = {"cpus": 2, "python": "3.11.7", "nginx": "nginx/1.22.1", "wrk": "wrk 4.1.0", "commit": "abc1234"}


def suite(name: str, *figures: tuple[str, float]) -> Suite:
    probes = {"cpuProbeMs": {"before": 40.0, "after": 41.0}, "wakeProbeUs": {"before": 30.0, "after": 31.0}}
    return Suite(name, [Figure(f, v, "s") for f, v in figures], details=probes)


def rows(text: str) -> list[tuple[str, ...]]:
    return [tuple(c.strip() for c in line.split("|")[1:4]) for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| suite") and not line.startswith("| ---")]


def test_a_partial_run_replaces_its_suites_rows_and_keeps_the_others_with_the_line_saying_when() -> None:
    full = run.table([suite("gateway", ("gateway p50", 1.0)), suite("deploy", ("deploy median", 0.3)),
                      suite("controlplane", ("apply", 0.9))], INFO, "2026-12-01T00-00-00Z")
    partial = run.table([suite("deploy", ("deploy median", 0.4)), suite("scaling", ("cold p50", 0.2))], INFO,
                        "2026-12-07T00-00-00Z")
    merged = run.merge(full, partial, ["deploy", "scaling"])
    assert rows(merged) == [("gateway", "gateway p50", "1 s"), ("deploy", "deploy median", "0.4 s"),
                            ("scaling", "cold p50", "0.2 s"), ("controlplane", "apply", "0.9 s")]
    measured = [line for line in merged.splitlines() if line.startswith("Measured ")]
    assert [m.split()[1] for m in measured] == ["2026-12-07T00-00-00Z", "2026-12-01T00-00-00Z"]

    again = run.merge(merged, run.table([suite("gateway", ("gateway p50", 1.1)),
                                         suite("controlplane", ("apply", 0.8))], INFO, "2026-12-08T00-00-00Z"),
                      ["gateway", "controlplane"])
    assert rows(again)[0] == ("gateway", "gateway p50", "1.1 s") and ("deploy", "deploy median", "0.4 s") in rows(again)
    measured = [line.split()[1] for line in again.splitlines() if line.startswith("Measured ")]
    assert measured == ["2026-12-08T00-00-00Z", "2026-12-07T00-00-00Z"], "a run none of whose rows remain is dropped"
