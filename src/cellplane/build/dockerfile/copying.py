"""COPY and ADD: from the build context, or ``COPY --from`` an earlier stage's file tree.

Files are copied with their mode; nothing is read from outside the context or the source stage's
tree, nothing written outside this stage's tree. ADD of URLs and archives is refused."""

from __future__ import annotations

import glob
import os
import posixpath
import shutil
from pathlib import Path

from cellplane.build.dockerfile.parsing import Instruction, fail, split_flags
from cellplane.build.dockerfile.stage import PipOutput, StageBuilder
from cellplane.build.dockerfile.tree import image_abspath
from cellplane.build.dockerfile.words import expand, split_words
from cellplane.build.stages import resolve_source

_SYSTEM_PATHS = ("/etc/ssl/", "/etc/ca-certificates", "/usr/share/zoneinfo", "/usr/share/ca-certificates",
                 "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/mime.types",
                 "/usr/local/share/ca-certificates")
_ARCHIVE_SUFFIXES = (
    ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tbz2", ".tar.xz", ".txz", ".tar.zst", ".tzst", ".tar.lzma",
)  # fmt: skip


class Copies(StageBuilder):
    """COPY and ADD into the stage's tree."""

    def _copy(self, instruction: Instruction) -> None:
        keyword, line = instruction.keyword, instruction.line
        flags, rest = split_flags(instruction.args)
        source_stage = self._copy_flags(keyword, flags, line)
        words = instruction.json_form if instruction.json_form is not None else split_words(rest, self._scope(), line)
        if len(words) < 2:
            raise fail(line, f"{keyword} needs at least one source and a destination")
        *sources, dest = words
        if source_stage is not None:
            self._copy_from(source_stage, sources, dest, line)
            return
        matches = []
        for source in sources:
            if keyword == "ADD" and ("://" in source or source.startswith("git@")):
                raise fail(line, f"ADD of a URL ({source}) is not supported without Docker; fetch it at build time")
            matches.extend(self.context.sources(source, keyword, line))
        target, into_dir = self._copy_destination(dest, multiple=len(matches) > 1 or len(sources) > 1)
        for rel in matches:
            if keyword == "ADD" and rel.lower().endswith(_ARCHIVE_SUFFIXES):
                raise fail(
                    line,
                    f"ADD of the archive '{rel}' would unpack it, which is not supported without Docker; "
                    "unpack it in the repository or COPY it",
                )
            self.context.copy(rel, target, into_dir, keyword, line)

    def _copy_flags(self, keyword: str, flags: list[str], line: int) -> StageBuilder | None:
        """Check COPY/ADD options; returns the built stage a ``--from`` names (None: the build context)."""
        source: StageBuilder | None = None
        for flag in flags:
            name, _, value = flag.partition("=")
            if name == "--from" and keyword == "COPY":
                value = expand(value, self._scope(), line)
                index = resolve_source(self.graph, self.stage.index, value) if self.stage else None
                if index is None or index not in self.built:
                    raise fail(
                        line,
                        f"COPY --from={value} copies from the image {value}, which cannot be pulled without Docker; "
                        "build what you need in a stage of this Dockerfile, or COPY it from the repository",
                    )
                source = self.built[index]
            elif name not in ("--chown", "--chmod", "--link"):
                raise fail(line, f"{keyword} option {name} is not supported without Docker")
        return source

    def _copy_from(self, stage: StageBuilder, sources: list[str], dest: str, line: int) -> None:
        """``COPY --from=stage SRC... DEST``: sources are paths in that stage's file tree (relative: from its /)."""
        shown = stage.stage.shown if stage.stage else "the earlier stage"
        found: list[Path] = []
        for source in sources:
            image = image_abspath(source)
            if glob.has_magic(image):
                matches = [Path(m) for m in sorted(glob.glob(glob.escape(str(stage.tree.root)) + image))]
            else:
                host = stage.tree.host(image)
                matches = [host] if os.path.lexists(host) else []
            if not matches and image.startswith(_SYSTEM_PATHS):
                self._note(f"COPY --from={stage.stage.name if stage.stage else '?'} {source} (line {line}) skipped: "
                           "the machine's own system files are used")
                continue
            if not matches:
                raise fail(line, f"COPY --from: the stage {shown} did not produce {image}")
            for match in matches:
                if not match.resolve().is_relative_to(stage.tree.root):
                    raise fail(line, f"COPY --from: {stage.tree.image(match)} leads outside the stage's file tree")
            found.extend(matches)
        if not found:
            return
        target, into_dir = self._copy_destination(dest, multiple=len(found) > 1 or len(sources) > 1)
        for source in sources:
            self._adopt_pip_output(stage, image_abspath(source), self.tree.image(target), line)
        for match in found:
            real = match.resolve()
            if real.is_dir():
                self.tree.mkdir(target, line)
                shutil.copytree(real, self.tree.check(target, line, dest), symlinks=True, dirs_exist_ok=True)
            else:
                file_target = target / match.name if into_dir else target
                self.tree.mkdir(file_target.parent, line)
                file_target = self.tree.check(file_target, line, dest)
                if file_target.is_dir():
                    raise fail(line, f"cannot copy a file over the directory {self.tree.image(file_target)}")
                shutil.copyfile(real, file_target)
                shutil.copymode(real, file_target)

    def _copy_destination(self, dest: str, *, multiple: bool) -> tuple[Path, bool]:
        """Where a COPY writes, and whether that is a directory the sources go into."""
        image = image_abspath(posixpath.join(self.workdir, dest))
        path = self.tree.host(image)
        into_dir = multiple or dest.endswith("/") or posixpath.basename(dest) in (".", "..") or path.is_dir()
        return path, into_dir

    def _adopt_pip_output(self, stage: StageBuilder, source: str, dest: str, line: int) -> None:
        """A COPY --from of (part of) a directory a build stage's pip installed into: in the last stage, the
        requirement files pip read are where they were (copied from that stage when missing) and the platform
        installs them; in another build stage, the record moves with the copy."""
        for directory, made in stage.pip_outputs.items():
            covers = source == directory or directory.startswith(source.rstrip("/") + "/")
            if not covers and not source.startswith(directory.rstrip("/") + "/"):
                continue
            if not self.last:
                self.pip_outputs.setdefault(dest, made)
                continue
            if self.image.kind != "python":
                raise fail(line, f"COPY --from: {source} holds Python packages pip installed in stage {made.stage} "
                                 f"(line {made.line}); they need a python:* last stage, not {self.image.ref}")
            inputs = [self._adopt_requirement(made, path, line) for path in made.requirements]
            self.pip_adopted.append(dest)
            listed = ", ".join([*made.requirements, *made.packages])
            self._note(f"COPY --from (line {line}) of {source}: the Python dependencies pip installed there in stage "
                       f"{made.stage} (line {made.line}: {listed}) are installed by the platform")
            self._add_python_dependencies(inputs, made.packages, line)

    def _adopt_requirement(self, made: PipOutput, path: str, line: int) -> str:
        """A requirement file a build stage's pip read, at the same image path in this tree (relative to it)."""
        there, here = made.tree.host(path), self.tree.host(path)
        if here.is_file():
            if here.read_bytes() != there.read_bytes():
                raise fail(line, f"COPY --from: the Python dependencies come from {path} as stage {made.stage} had it "
                                 f"(line {made.line}), and this stage has a different {path}; copy the same file")
        else:
            self.tree.mkdir(here.parent, line)
            shutil.copyfile(there, self.tree.check(here, line, path))
            self._note(f"{path} copied from stage {made.stage}: the platform installs the Python dependencies it lists")
        return self.tree.relative(here)
