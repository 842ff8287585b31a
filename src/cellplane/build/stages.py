"""Which stages of a multi-stage Dockerfile the last stage needs, and in which order to build them.

A stage needs its parent (``FROM build AS test`` starts from the stage ``build``) and every stage it
copies from (``COPY --from=build`` or ``--from=0``). Stages the last stage does not need, directly or
through others, are skipped, as BuildKit does. A stage that is copied from, or is the last one, is a
*target*: it is built in a directory of its own by replaying its *lineage* (its ancestors' instructions,
then its own) there, so a parent shared by two targets is built once for each. Targets come out in
Dockerfile order, which is dependency order because a stage may only use stages defined before it.
Pure data work on the parsed stages; no files are touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cellplane.build.plan import BuildFailure

__all__ = ["StageInfo", "lineage", "resolve_source", "targets"]


@dataclass
class StageInfo:
    """One stage as the graph sees it: its FROM (after global ARG substitution) and its COPY --from values."""

    index: int
    line: int  # the FROM line
    base: str  # the image or earlier stage it starts from, as written after substitution
    name: str | None  # the AS name, lower case
    copies: list[tuple[int, str]] = field(default_factory=list)  # (line, --from value)
    parent: int | None = None  # the earlier stage it starts from, set by :func:`targets`

    @property
    def shown(self) -> str:
        return f"'{self.name}'" if self.name else f"#{self.index}"


def resolve_source(stages: list[StageInfo], before: int, value: str) -> int | None:
    """The index of the stage ``value`` (a name or a number) names among those before ``before``; None if none."""
    lowered = value.lower()
    for stage in stages[:before]:
        if stage.name == lowered:
            return stage.index
    if value.isdigit():
        index = int(value)
        return index if index < before else None
    return None


def _stage_named_later(stages: list[StageInfo], after: int, value: str) -> StageInfo | None:
    lowered = value.lower()
    return next((s for s in stages[after:] if s.name == lowered or (value.isdigit() and int(value) == s.index)), None)


def targets(stages: list[StageInfo]) -> tuple[list[int], list[str]]:
    """``(indices of the target stages in build order, notes)``; the last stage is always the last target.

    Raises :class:`BuildFailure` for a ``--from`` naming a stage defined later or the stage itself, and for
    a ``--from`` naming an image (it cannot be pulled without Docker).
    """
    for stage in stages:
        stage.parent = resolve_source(stages, stage.index, stage.base)
    wanted: set[int] = set()
    pending = [stages[-1].index]
    while pending:
        index = pending.pop()
        if index in wanted:
            continue
        wanted.add(index)
        for member in lineage(stages, index):
            for line, value in member.copies:
                source = resolve_source(stages, member.index, value)
                if source is None:
                    raise _unknown_source(stages, member, line, value)
                pending.append(source)
    order = sorted(wanted)
    used = {member.index for index in order for member in lineage(stages, index)}
    notes = [f"stage {stage.shown} (line {stage.line}) is not needed by the last stage: skipped"
             for stage in stages if stage.index not in used]
    return order, notes


def lineage(stages: list[StageInfo], index: int) -> list[StageInfo]:
    """The stage and its ancestors, oldest first."""
    chain = [stages[index]]
    while chain[0].parent is not None:
        chain.insert(0, stages[chain[0].parent])
    return chain


def _unknown_source(stages: list[StageInfo], member: StageInfo, line: int, value: str) -> BuildFailure:
    later = _stage_named_later(stages, member.index, value)
    if later is not None:
        return BuildFailure(f"Dockerfile line {line}: COPY --from={value} names the stage {later.shown} "
                            f"(line {later.line}), which is not defined before this one")
    return BuildFailure(
        f"Dockerfile line {line}: COPY --from={value} copies from the image {value}, which cannot be pulled "
        "without Docker; build what you need in a stage of this Dockerfile, or COPY it from the repository"
    )
