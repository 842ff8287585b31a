"""The entry point: read a Dockerfile, build the stages the last one needs in order, return the last stage's plan."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from cellplane.build.dockerfile.builder import Builder
from cellplane.build.dockerfile.parsing import (
    Instruction,
    display_path,
    parse,
    read_dockerfile,
    split_flags,
    split_stages,
)
from cellplane.build.dockerfile.settings import from_words
from cellplane.build.dockerfile.words import expand
from cellplane.build.plan import BuildFailure, Plan, StepHooks
from cellplane.build.stages import StageInfo, lineage, targets


def prepare(
    dockerfile: Path,
    context: Path,
    work: Path,
    hooks: StepHooks,
    build_args: dict[str, str] | None = None,
    stages_dir: Path | None = None,
) -> Plan:
    """Build ``dockerfile`` into ``work`` (the last stage's root) and return its plan.

    ``context`` is the build context COPY reads from; ``work`` an existing, empty directory. The build
    stages the last stage needs are built first, each in a directory of its own under ``stages_dir``
    (default: ``work``'s sibling ``<name>-stages``). ``hooks`` are called in build order for dependency
    installs and allowed RUN commands; ``build_args`` override ARG defaults. Anything that cannot be
    done faithfully without Docker raises :class:`BuildFailure` (``Dockerfile line N: ...``, ``where``
    the Dockerfile).
    """
    context_root = Path(context).resolve()
    work_root = Path(work).resolve()
    stages_root = Path(stages_dir).resolve() if stages_dir else work_root.with_name(work_root.name + "-stages")
    display = display_path(Path(dockerfile), context_root)
    try:
        if not context_root.is_dir():
            raise BuildFailure(f"the build context {context} is not a directory")
        if not work_root.is_dir():
            raise BuildFailure(f"the work tree {work} is not a directory")
        if context_root.is_relative_to(work_root) or context_root.is_relative_to(stages_root):
            raise BuildFailure("the build context must not be inside the work tree")
        instructions = parse(read_dockerfile(Path(dockerfile)))
        return _translate(instructions, context_root, work_root, stages_root, hooks, build_args or {}, display)
    except BuildFailure as e:
        if not e.where:
            e.where = display
        raise


def _translate(
    instructions: list[Instruction],
    context: Path,
    work: Path,
    stages_root: Path,
    hooks: StepHooks,
    build_args: Mapping[str, str],
    display: str,
) -> Plan:
    """Every needed stage in build order (see :mod:`cellplane.build.stages`), then the last stage's plan."""
    preamble, stage_lists = split_stages(instructions)
    global_args: dict[str, str] = {}
    declarer = Builder(context, work, hooks, build_args, display)
    for instruction in preamble:
        declarer._declare_args(instruction, global_args, {}, {})
    infos = []
    for index, stage in enumerate(stage_lists):
        words = from_words(stage[0], global_args)
        copies = [
            (instruction.line, expand(flag.partition("=")[2], global_args, instruction.line))
            for instruction in stage[1:]
            if instruction.keyword == "COPY"
            for flag in split_flags(instruction.args)[0]
            if flag.startswith("--from=")
        ]
        infos.append(StageInfo(index, stage[0].line, words[0], words[2].lower() if len(words) == 3 else None, copies))
    order, notes = targets(infos)
    built: dict[int, Builder] = {}
    for index in order:
        last = index == infos[-1].index
        root = work
        if not last:
            root = stages_root / f"{index}-{infos[index].name or 'stage'}"
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
        builder = Builder(context, root, hooks, build_args, display, infos, built)
        builder.last = last
        builder.global_args = dict(global_args)
        chain = lineage(infos, index)
        builder.replay([stage_lists[member.index] for member in chain], chain)
        if not last:
            notes.append(f"stage {infos[index].shown} (line {infos[index].line}, {builder.image.ref}) "
                         "built on this machine's toolchain")
            notes.extend(builder.notes)
        built[index] = builder
    final = built[order[-1]]
    final.notes = [*notes, *final.notes]
    plan = final._plan()
    if plan.language == "go" and plan.language_version is None:  # the Go the binary was asked to be built with
        plan.language_version = next((b.image.version for b in built.values() if b.image.kind == "go"), None)
    if plan.language == "java" and final.image.kind in ("jre", "jdk"):
        plan.language_version = final.image.version  # eclipse-temurin:17-jre: Java 17, recorded; the machine's runs
    return plan
