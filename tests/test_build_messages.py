"""A failed build's one line never names the build machine's directories: the runner takes its own out."""

from __future__ import annotations

from pathlib import Path

from cellplane.build.runner import Job, relative
from cellplane.runtime.materialize import DependencyCache


def test_the_build_directories_are_taken_out_of_a_failures_line(tmp_path: Path) -> None:
    build = tmp_path / "builds" / "b-0123"
    job = Job(build, DependencyCache(tmp_path / "cache"), {}, {})
    said = (f"build command 'make' failed (exit 2): {build}/work/src/app.c:3: error; see {build}/source and "
            f"{build}/tmp/x.log, ran in {build}/work")
    assert relative(said, job) == ("build command 'make' failed (exit 2): src/app.c:3: error; see . and "
                                   "<build>/tmp/x.log, ran in .")
