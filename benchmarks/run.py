"""`make bench`: every benchmark in one run, each figure next to the reference measured in the same run.

    make bench                                  # everything (about 10 minutes on the 2-core machine)
    make bench BENCH_ARGS="--only gateway,deploy --quick"

Writes ``bench/results/<timestamp>.json`` (every figure with its raw numbers) and ``<timestamp>.md`` (the
table), and puts the table into ``docs/performance.md`` between its ``bench:latest`` markers: a run of some
suites (``--only``) replaces their rows and keeps the other suites' rows, under the lines saying when they were
measured. Installs wrk and nginx from Debian's packages when they are missing. Exits 0 even when a target is
missed (the table says so); a suite that cannot run is reported with its reason and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Figure, Suite, cpu_probe, wake_probe

SUITES = ("gateway", "deploy", "zero-downtime", "scaling", "builds", "images", "kubernetes", "controlplane")
DOC = ROOT / "docs" / "performance.md"
# cpu_probe() on this machine at its fastest seen (2026-11-22): the probes of a run are read against it.
QUIET_PROBE_MS = 40.0
QUIET_WAKE_US = 27.0  # wake_probe(), likewise
BEGIN, END = "<!-- bench:latest -->", "<!-- /bench:latest -->"
TABLE_HEADER = ("| suite | figure | value | reference (same run) | target | met |",
                "| --- | --- | ---: | --- | --- | --- |")


def _suite(name: str) -> Callable[[argparse.Namespace], Suite]:
    if name == "gateway":
        import bench_gateway

        return bench_gateway.run
    if name == "deploy":
        import bench_deploy

        return bench_deploy.run_deploy
    if name == "zero-downtime":
        import bench_deploy

        return bench_deploy.run_rollout
    if name == "builds":
        import bench_builds

        return bench_builds.run
    if name == "images":
        import bench_images

        return bench_images.run
    if name == "scaling":
        import bench_scaling

        return bench_scaling.run
    if name == "kubernetes":
        import bench_kube

        return bench_kube.run
    import bench_controlplane

    return bench_controlplane.run


def machine() -> dict[str, object]:
    def version(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "missing"

    commit = version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
            "nginx": version(["nginx", "-v"]).replace("nginx version: ", ""),
            "wrk": " ".join(version(["wrk", "--version"]).split()[:2]), "commit": commit}


def _value(f: Figure) -> str:
    if f.value is None:
        return "—"
    value = f"{f.value:,.0f}" if abs(f.value) >= 1000 else f"{f.value:g}"
    return f"{value} {f.unit}".strip()


def _target(f: Figure) -> str:
    if f.op is None or f.target is None:
        return ""
    return f"{f.op} {f.target:g} {f.unit}".strip()


def _probes(suites: list[Suite], key: str, unit: str) -> str:
    """A probe's before/after figures of every suite that has them."""
    return ", ".join(f"{s.details[key]['before']:g}/{s.details[key]['after']:g} {unit} ({s.name})"
                     for s in suites if key in s.details)


def table(suites: list[Suite], info: dict[str, object], at: str) -> str:
    lines = [f"Measured {at} on {info['cpus']} cores (Python {info['python']}, {info['nginx']}, "
             f"{info['wrk']}, commit {info['commit']}).", "",
             f"How fast the cores were: a fixed pure-Python loop took {_probes(suites, 'cpuProbeMs', 'ms')} "
             f"before/after each suite (on this machine at its fastest: about {QUIET_PROBE_MS:g} ms). "
             f"A byte's round trip between two processes (two wake-ups) took {_probes(suites, 'wakeProbeUs', 'µs')} "
             f"(at its fastest: about {QUIET_WAKE_US:g} µs).", "",
             *TABLE_HEADER]
    for s in suites:
        if s.error:
            lines.append(f"| {s.name} | (not run) | | {s.error} | | |")
        for f in s.figures:
            met = {True: "yes", False: "**no**", None: ""}[f.met]
            reference = f.reference + (f" ({f.note})" if f.note else "")
            lines.append(f"| {s.name} | {f.name} | {_value(f)} | {reference} | {_target(f)} | {met} |")
    return "\n".join(lines) + "\n"


def _split(block: str) -> tuple[list[str], list[str]]:
    """A table block's lines before its table, and its rows (without the table's two header lines)."""
    lines = block.strip("\n").splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith("| suite |")), len(lines))
    return lines[:at], [line for line in lines[at + 2:] if line.startswith("| ")]


def _groups(head: list[str]) -> list[list[str]]:
    """The head's paragraphs grouped by run: each group starts at a "Measured ..." line."""
    groups: list[list[str]] = []
    for line in head:
        if line.startswith("Measured ") or not groups:
            groups.append([])
        groups[-1].append(line)
    return groups


def merge(old: str, new: str, ran: list[str]) -> str:
    """The table of ``old`` with the rows of the suites in ``ran`` replaced by ``new``'s: a partial run
    (``--only``) updates its own suites' rows and keeps the others', each run's "Measured" lines above them
    (an earlier run's only while some of the rows are its own)."""
    old_head, old_rows = _split(old)
    new_head, new_rows = _split(new)
    rows: dict[str, list[str]] = {}
    for row in old_rows:
        suite = row.split("|")[1].strip()
        if suite not in ran:
            rows.setdefault(suite, []).append(row)
    for row in new_rows:
        rows.setdefault(row.split("|")[1].strip(), []).append(row)
    # a suite's rows belong to the newest run whose lines name it (its probes, "(suite)"): older runs' lines
    # stay while they own rows
    groups, owned = [*_groups(new_head), *_groups(old_head)], set()
    head = []
    for g in groups:
        mine = {s for s in rows if f"({s})" in "\n".join(g)} - owned
        owned |= mine
        if mine or g is groups[0]:
            head += g
    while head and not head[-1].strip():
        head.pop()
    order = [s for s in SUITES if s in rows] + [s for s in rows if s not in SUITES]
    return "\n".join([*head, "", *TABLE_HEADER, *(row for s in order for row in rows[s])]) + "\n"


def update_doc(text: str, ran: list[str]) -> None:
    """Put ``text`` (the table of the suites in ``ran``) between the doc's markers; a partial run keeps the rows
    of the suites it did not run."""
    doc = DOC.read_text()
    if BEGIN not in doc or END not in doc:
        doc = doc.rstrip() + f"\n\n## Latest `make bench`\n\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    old, tail = rest.split(END, 1)
    if set(ran) != set(SUITES) and old.strip():
        text = merge(old, text, ran)
    DOC.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SUITES), help="comma-separated: " + ", ".join(SUITES))
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of the benchmarks)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--no-doc", action="store_true", help="leave docs/performance.md as it is")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SUITES]
    if unknown:
        parser.error(f"--only: unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    # what each suite reads (they take the same namespace)
    args.duration = 3 if args.quick else 10
    args.connections, args.threads = 64, 2
    args.deploys, args.redeploys = (3, 2) if args.quick else (10, 5)
    args.components, args.projects = (100, 10) if args.quick else (1000, 50)
    args.clients, args.seconds = (10, 5) if args.quick else (50, 20)
    args.deployments = 50 if args.quick else 500

    from tools import need

    need("wrk")
    need("nginx")
    info = machine()
    results: list[Suite] = []
    for name in chosen:
        print(f"bench: {name} ...", flush=True)
        probe = cpu_probe(), wake_probe()
        started = time.monotonic()
        try:
            suite = _suite(name)(args)
        except Exception as e:  # one suite failing never costs the others
            traceback.print_exc()
            suite = Suite(name, error=f"{type(e).__name__}: {e}")
        suite.details["seconds"] = round(time.monotonic() - started, 1)
        suite.details["cpuProbeMs"] = {"before": probe[0], "after": cpu_probe()}
        suite.details["wakeProbeUs"] = {"before": probe[1], "after": wake_probe()}
        results.append(suite)
        for f in suite.figures:
            print(f"  {f.name}: {_value(f)}" + (f"  (target {_target(f)}: {'met' if f.met else 'MISSED'})"
                                               if f.met is not None else ""), flush=True)
        if suite.error:
            print(f"  not run: {suite.error}", flush=True)
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    text = table(results, info, at)
    (args.out / f"{at}.json").write_text(json.dumps({"at": at, "machine": info, "quick": args.quick,
                                                     "suites": [s.as_dict() for s in results]}, indent=2) + "\n")
    (args.out / f"{at}.md").write_text(text)
    if not args.no_doc and not args.quick:
        update_doc(text, chosen)
    print(f"\n{text}\nresults: {args.out / (at + '.json')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
