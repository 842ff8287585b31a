"""The stage builder: every instruction family joined, and the replay of a stage's lineage."""

from __future__ import annotations

from cellplane.build.dockerfile.copying import Copies
from cellplane.build.dockerfile.laststage import LastStage
from cellplane.build.dockerfile.parsing import SUPPORTED_INSTRUCTIONS, Instruction, fail
from cellplane.build.dockerfile.run import Runs
from cellplane.build.dockerfile.settings import Settings
from cellplane.build.stages import StageInfo


class Builder(Settings, Copies, Runs, LastStage):
    """A stage builder with every instruction family: :meth:`replay` runs a stage's instructions."""

    def replay(self, lineage: list[list[Instruction]], infos: list[StageInfo] | None = None) -> None:
        """Run the instructions of a stage and its ancestors (oldest first) against this builder's tree."""
        handlers = {
            "WORKDIR": self._workdir,
            "COPY": self._copy,
            "ADD": self._copy,
            "RUN": self._run,
            "ENV": self._env,
            "ARG": self._arg,
            "EXPOSE": self._expose,
            "USER": self._user,
            "CMD": self._cmd,
            "ENTRYPOINT": self._entrypoint,
            "LABEL": self._label,
            "HEALTHCHECK": self._healthcheck,
        }
        for position, stage in enumerate(lineage):
            self.stage = infos[position] if infos else None
            self.args = {}  # ARGs are scoped to their stage; ENV, WORKDIR, CMD... carry over to children
            if position == 0:
                self._from(stage[0])
            for instruction in stage[1:]:
                handler = handlers.get(instruction.keyword)
                if handler is None:
                    raise fail(
                        instruction.line,
                        f"instruction {instruction.keyword} is not supported without Docker "
                        f"(supported: {', '.join(SUPPORTED_INSTRUCTIONS)})",
                    )
                handler(instruction)
