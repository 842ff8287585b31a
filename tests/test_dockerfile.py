"""Dockerfiles built without Docker: parsing, the work tree, the hooks called and the plan returned."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cellplane.build.dockerfile import Instruction, parse, prepare
from cellplane.build.plan import BuildFailure, Plan

FIXTURES = Path(__file__).parent / "fixtures" / "apps"


@dataclass
class Recorder:
    """A StepHooks that records every call; with ``execute`` it also runs shell steps for real."""

    execute: bool = False
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def pip(self, inputs: list[str], packages: list[str], line: int) -> None:
        self.calls.append(("pip", list(inputs), list(packages), line))

    def npm(self, cwd: Path, install: str, line: int) -> None:
        self.calls.append(("npm", cwd, install, line))

    def shell(self, cwd: Path, command: str, env: dict[str, str], line: int) -> None:
        self.calls.append(("shell", cwd, command, dict(env), line))
        if self.execute:
            subprocess.run(command, shell=True, cwd=cwd, env={**os.environ, **env}, check=True)

    def shells(self) -> list[str]:
        return [call[2] for call in self.calls if call[0] == "shell"]


@dataclass
class Build:
    context: Path
    work: Path
    hooks: Recorder

    def write(self, rel: str, text: str = "") -> Path:
        path = self.context / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def prepare(self, dockerfile: str, build_args: dict[str, str] | None = None) -> Plan:
        self.write("Dockerfile", dockerfile)
        return prepare(self.context / "Dockerfile", self.context, self.work, self.hooks, build_args)

    def fails(self, dockerfile: str, build_args: dict[str, str] | None = None) -> str:
        with pytest.raises(BuildFailure) as caught:
            self.prepare(dockerfile, build_args)
        assert caught.value.where == "Dockerfile"
        return str(caught.value)


@pytest.fixture
def build(tmp_path: Path) -> Build:
    context, work = tmp_path / "src", tmp_path / "work"
    context.mkdir()
    work.mkdir()
    return Build(context, work.resolve(), Recorder())


FLASK = """\
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
EXPOSE 5000
CMD ["gunicorn","--bind","0.0.0.0:5000","app:app"]
"""


# --------------------------------------------------------------------------------------------
# parse()


def test_parse_joins_continuations_and_reports_first_lines() -> None:
    text = (
        "# escape=\\\n"
        "# a comment\n"
        "from python:3.12 AS base\n"
        "\n"
        "RUN pip install \\\n"
        "    # a comment inside the continuation\n"
        "    flask \\\n"
        "    gunicorn\n"
        'cmd ["python", "app.py"]\n'
        "ENTRYPOINT not json [\n"
        'COPY --chown=1:1 ["a b.txt", "/app/"]\n'
    )
    assert parse(text) == [
        Instruction(3, "FROM", "python:3.12 AS base"),
        Instruction(5, "RUN", "pip install     flask     gunicorn", None),
        Instruction(9, "CMD", '["python", "app.py"]', ["python", "app.py"]),
        Instruction(10, "ENTRYPOINT", "not json [", None),
        Instruction(11, "COPY", '--chown=1:1 ["a b.txt", "/app/"]', ["a b.txt", "/app/"]),
    ]


def test_parse_refuses_heredocs() -> None:
    with pytest.raises(BuildFailure, match=r"^Dockerfile line 2: RUN with a heredoc"):
        parse("FROM python:3.11\nRUN <<EOF\necho hi\nEOF\n")


def test_parse_backtick_escape_directive() -> None:
    instructions = parse("# escape=`\nFROM node:20\nRUN npm ci `\n  --omit=dev\n")
    assert instructions[1] == Instruction(3, "RUN", "npm ci   --omit=dev")


# --------------------------------------------------------------------------------------------
# Typical Dockerfiles


def test_flask_dockerfile(build: Build) -> None:
    build.write("requirements.txt", "flask\ngunicorn\n")
    build.write("app.py", "app = None\n")
    build.write("pkg/__init__.py")
    plan = build.prepare(FLASK)
    assert plan.strategy == "dockerfile"
    assert plan.language == "python"
    assert plan.language_version == "3.11"
    assert plan.workdir == "app"
    assert plan.port == 5000
    assert plan.run == "gunicorn --bind 0.0.0.0:5000 app:app"
    assert plan.python_inputs == ["app/requirements.txt"]
    assert plan.python_packages == []
    assert plan.node_install is None
    assert plan.reason == "Dockerfile at Dockerfile (base image python:3.11-slim, last stage)"
    assert (build.work / "app" / "app.py").read_text() == "app = None\n"
    assert (build.work / "app" / "pkg" / "__init__.py").is_file()
    assert (build.work / "app" / "Dockerfile").is_file()
    assert build.hooks.calls == [("pip", ["app/requirements.txt"], [], 4)]


def test_choreo_sample_with_non_root_user(tmp_path: Path) -> None:
    """The fixture app: Choreo's `adduser ... --uid 10014 "choreo"` and `USER 10014` must build."""
    context = FIXTURES / "flask-dockerfile"
    hooks = Recorder()
    plan = prepare(context / "Dockerfile", context, tmp_path, hooks)
    assert plan.run == "gunicorn --bind 0.0.0.0:5000 app:app"
    assert plan.port == 5000
    assert plan.python_inputs == ["app/requirements.txt"]
    assert any("adduser" in note and "line 11" in note for note in plan.notes)
    assert any(note.startswith("USER 10014 (line 12) ignored") for note in plan.notes)
    assert (tmp_path / "app" / "app.py").is_file()
    assert [call[0] for call in hooks.calls] == ["pip"]


def test_node_dockerfile_with_npm_ci(build: Build) -> None:
    build.write("package.json", '{"name": "x"}')
    build.write("package-lock.json", "{}")
    build.write("server.js", "")
    plan = build.prepare(
        "FROM node:20-alpine\n"
        "WORKDIR /usr/src/app\n"
        "COPY package*.json ./\n"
        "RUN npm ci --omit=dev\n"
        "COPY . .\n"
        "RUN addgroup -g 10014 choreo && \\\n"
        "    adduser --disabled-password --no-create-home --uid 10014 --ingroup choreo choreouser\n"
        "USER 10014\n"
        "EXPOSE 8080\n"
        'CMD ["node", "server.js"]\n'
    )
    assert plan.language == "node"
    assert plan.language_version == "20"
    assert plan.workdir == "usr/src/app"
    assert plan.node_install == "ci"
    assert plan.run == "node server.js"
    assert plan.port == 8080
    app = build.work / "usr" / "src" / "app"
    assert build.hooks.calls == [("npm", app, "ci", 4)]
    assert (app / "server.js").is_file()
    assert any("--omit=dev ignored" in note for note in plan.notes)
    assert any("addgroup" in note for note in plan.notes) and any("adduser" in note for note in plan.notes)


def test_npm_install_without_lockfile_and_yarn(build: Build) -> None:
    build.write("package.json", "{}")
    build.write("web/package.json", "{}")
    build.write("web/yarn.lock", "")
    plan = build.prepare(
        "FROM node:18\nWORKDIR /app\nCOPY . .\nRUN npm install\nRUN cd web && yarn install --frozen-lockfile\n"
    )
    assert build.hooks.calls == [
        ("npm", build.work / "app", "install", 4),
        ("npm", build.work / "app" / "web", "install", 5),
    ]
    assert plan.node_install == "install"
    assert any("yarn.lock is not used" in note for note in plan.notes)


def test_stages_the_last_stage_does_not_need_are_skipped(build: Build) -> None:
    build.write("requirements.txt", "flask\n")
    build.write("main.py", "")
    plan = build.prepare(
        "FROM node:20 AS assets\n"
        "RUN apt-get update && apt-get install -y build-essential\n"
        "HEALTHCHECK CMD true\n"
        "FROM python:3.12-slim AS final\n"
        "WORKDIR /srv\n"
        "COPY . .\n"
        "RUN pip install -r requirements.txt\n"
        'CMD ["python", "main.py"]\n'
    )
    assert plan.language == "python"
    assert plan.language_version == "3.12"
    assert plan.python_inputs == ["srv/requirements.txt"]
    assert plan.reason == "Dockerfile at Dockerfile (base image python:3.12-slim, last stage)"
    assert "stage 'assets' (line 1) is not needed by the last stage: skipped" in plan.notes


def test_copy_from_an_image_is_refused(build: Build) -> None:
    message = build.fails("FROM python:3.11-slim\nWORKDIR /app\nCOPY --from=nginx:1.27 /etc/nginx/nginx.conf /app/\n")
    assert message == (
        "Dockerfile line 3: COPY --from=nginx:1.27 copies from the image nginx:1.27, which cannot be pulled without "
        "Docker; build what you need in a stage of this Dockerfile, or COPY it from the repository"
    )


def test_a_stage_may_start_from_an_earlier_stage(build: Build) -> None:
    build.write("requirements.txt", "flask\n")
    build.write("app.py", "")
    plan = build.prepare(
        "FROM python:3.11 AS base\nWORKDIR /app\nENV MODE=prod\nCOPY requirements.txt .\n"
        "FROM base\nCOPY app.py .\nCMD python app.py\n"
    )
    assert (plan.language, plan.workdir, plan.env, plan.run) == ("python", "app", {"MODE": "prod"}, "python app.py")
    assert (build.work / "app" / "requirements.txt").is_file() and (build.work / "app" / "app.py").is_file()


# --------------------------------------------------------------------------------------------
# Base images


@pytest.mark.parametrize(
    ("image", "shown"),
    [
        ("someone/python:3.11", "someone/python:3.11"),
        ("tiangolo/uvicorn-gunicorn-fastapi:python3.11", "tiangolo/uvicorn-gunicorn-fastapi:python3.11"),
        ("mcr.microsoft.com/dotnet/sdk:8.0", "mcr.microsoft.com/dotnet/sdk:8.0"),
        ("rust:1.80", "rust:1.80"),
    ],
)
def test_other_base_images_are_refused(build: Build, image: str, shown: str) -> None:
    message = build.fails(f"# comment\nFROM {image}\nCMD run\n")
    assert message.startswith(
        f"Dockerfile line 2: base image '{shown}' is not one Cellplane can build without Docker (supported: python:*"
    )


@pytest.mark.parametrize(
    ("image", "language", "version"),
    [
        ("--platform=linux/amd64 python:3.11-slim-bookworm AS app", "python", "3.11"),
        ("docker.io/library/python:3.10", "python", "3.10"),
        ("registry.example.com:5000/mirror/node:20.11.1-alpine", "node", "20.11.1"),
        ("library/node:lts", "node", None),
        ("python", "python", None),
        ("python:3.12@sha256:0123abcd", "python", "3.12"),
    ],
)
def test_accepted_base_images(build: Build, image: str, language: str, version: str | None) -> None:
    plan = build.prepare(f"FROM {image}\n")
    assert (plan.language, plan.language_version) == (language, version)


def test_base_image_from_arg(build: Build) -> None:
    dockerfile = "ARG PYTHON_VERSION=3.11\nFROM python:${PYTHON_VERSION}-slim\n"
    assert build.prepare(dockerfile).language_version == "3.11"
    assert build.prepare(dockerfile, {"PYTHON_VERSION": "3.13"}).language_version == "3.13"
    assert "base image 'ruby:3.3'" in build.fails("ARG IMAGE=ruby\nFROM ${IMAGE}:3.3\n")


# --------------------------------------------------------------------------------------------
# Instructions


def test_unsupported_instruction_names_it_and_its_line(build: Build) -> None:
    message = build.fails(
        "FROM python:3.11\n"
        "RUN pip install \\\n"
        "    flask \\\n"
        "    gunicorn\n"
        "# a comment\n"
        "\n"
        "VOLUME \\\n"
        "  /data\n"
    )
    assert message == (
        "Dockerfile line 7: instruction VOLUME is not supported without Docker "
        "(supported: FROM, WORKDIR, COPY, ADD, RUN, ENV, ARG, EXPOSE, USER, CMD, ENTRYPOINT, LABEL, HEALTHCHECK)"
    )


@pytest.mark.parametrize("instruction", ["VOLUME /data", "ONBUILD RUN x", "STOPSIGNAL SIGTERM", 'SHELL ["bash", "-c"]'])
def test_other_instructions_are_refused(build: Build, instruction: str) -> None:
    keyword = instruction.split()[0]
    assert build.fails(f"FROM node:20\n{instruction}\n").startswith(
        f"Dockerfile line 2: instruction {keyword} is not supported without Docker"
    )


def test_instruction_before_from_is_refused(build: Build) -> None:
    assert build.fails("RUN echo hi\nFROM python:3.11\n") == "Dockerfile line 1: RUN comes before the first FROM"


def test_arg_and_env_substitution(build: Build) -> None:
    build.write("src/app.py")
    plan = build.prepare(
        "ARG BASE=3.11\n"
        "FROM python:$BASE\n"
        "ARG BASE\n"
        "ARG APP_HOME=/opt/service\n"
        "ARG MODE\n"
        'ENV APP_HOME=${APP_HOME} GREETING="hello world" MODE=${MODE:-dev} \\\n'
        "    PORT=8000\n"
        "ENV LEGACY value with   spaces\n"
        "ENV COPY_OF=$GREETING OLD=$PORT PORT=9000\n"
        "ENV ESCAPED=\\$HOME SINGLE='$PORT'\n"
        "WORKDIR $APP_HOME\n"
        "COPY src/ ./src/\n"
        "EXPOSE $PORT\n"
        'ENV IMAGE_BASE="from ${BASE}" UNSET=x${NOPE}y\n',
        {"APP_HOME": "/srv/app"},
    )
    assert plan.env == {
        "APP_HOME": "/srv/app",
        "GREETING": "hello world",
        "MODE": "dev",
        "PORT": "9000",
        "LEGACY": "value with   spaces",
        "COPY_OF": "hello world",
        "OLD": "8000",
        "ESCAPED": "$HOME",
        "SINGLE": "$PORT",
        "IMAGE_BASE": "from 3.11",
        "UNSET": "xy",
    }
    assert plan.workdir == "srv/app"
    assert plan.port == 9000
    assert (build.work / "srv" / "app" / "src" / "app.py").is_file()
    assert any("ENV APP_HOME names the image path /srv/app" in note for note in plan.notes)


def test_env_path_is_not_carried_over(build: Build) -> None:
    plan = build.prepare('FROM python:3.11\nENV PATH="/opt/venv/bin:$PATH" PYTHONUNBUFFERED=1\n')
    assert plan.env == {"PYTHONUNBUFFERED": "1"}
    assert any(note.startswith("ENV PATH (line 2) ignored") for note in plan.notes)


def test_expose_forms(build: Build) -> None:
    plan = build.prepare("FROM node:20\nEXPOSE 3000/tcp 9229\nEXPOSE 80\n")
    assert plan.port == 3000
    assert "EXPOSE also lists 9229, 80; only port 3000 is used" in plan.notes
    assert build.fails("FROM node:20\nEXPOSE http\n") == "Dockerfile line 2: EXPOSE 'http' is not a port"


# --------------------------------------------------------------------------------------------
# COPY and ADD


def test_copy_destinations(build: Build) -> None:
    build.write("conf/settings.ini", "x")
    build.write("conf/nested/deep.txt", "y")
    build.write("a.py", "a")
    build.write("b.py", "b")
    build.write("README.md", "r")
    build.prepare(
        "FROM python:3.11\n"
        "WORKDIR /app\n"
        "COPY conf /etc/myapp\n"  # a directory: its contents
        "COPY README.md docs/INDEX.md\n"  # a file to a file name, relative to WORKDIR
        "COPY *.py lib\n"  # several sources: a directory
        'COPY ["README.md", "/opt/with space/"]\n'
        "COPY --chown=10014:10014 --chmod=644 a.py .\n"
    )
    assert (build.work / "etc/myapp/settings.ini").read_text() == "x"
    assert (build.work / "etc/myapp/nested/deep.txt").read_text() == "y"
    assert (build.work / "app/docs/INDEX.md").read_text() == "r"
    assert sorted(os.listdir(build.work / "app/lib")) == ["a.py", "b.py"]
    assert (build.work / "opt/with space/README.md").is_file()
    assert (build.work / "app/a.py").is_file()


def test_dockerignore_and_git_are_left_out(build: Build) -> None:
    build.write(".dockerignore", "# comment\n*.log\nnode_modules\n**/__pycache__\nsecrets/\n!secrets/public.pem\n")
    build.write(".git/HEAD", "ref")
    build.write("app.py")
    build.write("debug.log")
    build.write("sub/keep.log")  # `*.log` matches at the top only
    build.write("node_modules/x/index.js")
    build.write("pkg/__pycache__/m.pyc")
    build.write("pkg/m.py")
    build.write("secrets/private.pem")
    build.write("secrets/public.pem")
    build.prepare("FROM python:3.11\nWORKDIR /app\nCOPY . .\n")
    app = build.work / "app"
    copied = sorted(p.relative_to(app).as_posix() for p in app.rglob("*") if p.is_file())
    assert copied == [".dockerignore", "Dockerfile", "app.py", "pkg/m.py", "secrets/public.pem", "sub/keep.log"]
    message = build.fails("FROM python:3.11\nCOPY debug.log /\n")
    assert message == (
        "Dockerfile line 2: COPY source 'debug.log' was not found in the build context (.dockerignore excludes it)"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("../secret", "COPY source '../secret' leads outside the build context"),
        ("sub/../../secret", "COPY source 'sub/../../secret' leads outside the build context"),
        ("/etc/passwd", "COPY source '/etc/passwd' is an absolute path; sources are relative to the context"),
        ("missing.txt", "COPY source 'missing.txt' was not found in the build context"),
        ("link", "COPY source 'link' is a symlink leading outside the build context"),
    ],
)
def test_copy_sources_outside_the_context_are_refused(build: Build, source: str, expected: str) -> None:
    (build.context.parent / "secret").write_text("s")
    (build.context / "link").symlink_to(build.context.parent / "secret")
    assert build.fails(f"FROM python:3.11\nWORKDIR /app\nCOPY {source} .\n") == f"Dockerfile line 3: {expected}"
    assert not (build.work / "app" / "secret").exists()


def test_symlink_inside_a_copied_directory_leading_out_is_refused(build: Build) -> None:
    (build.context.parent / "secret").write_text("s")
    build.write("pkg/ok.py")
    (build.context / "pkg" / "evil").symlink_to(build.context.parent / "secret")
    message = build.fails("FROM python:3.11\nCOPY pkg /app\n")
    assert message == "Dockerfile line 2: COPY source 'pkg/evil' is a symlink leading outside the build context"


def test_symlinks_inside_the_context_are_copied_as_files(build: Build) -> None:
    build.write("real.txt", "content")
    (build.context / "alias.txt").symlink_to("real.txt")
    build.prepare("FROM python:3.11\nCOPY . /app/\n")
    copied = build.work / "app" / "alias.txt"
    assert copied.read_text() == "content" and not copied.is_symlink()


def test_copy_never_writes_outside_the_work_tree(build: Build) -> None:
    build.write("x.txt", "x")
    build.prepare("FROM python:3.11\nCOPY x.txt /../../../escaped.txt\n")
    assert (build.work / "escaped.txt").read_text() == "x"
    assert not (build.work.parent / "escaped.txt").exists()


def test_add_of_urls_and_archives_is_refused_but_local_files_are_copied(build: Build) -> None:
    build.write("bundle.tar.gz", "not really")
    build.write("notes.txt", "n")
    assert build.fails("FROM python:3.11\nADD https://example.com/x.tgz /opt/\n") == (
        "Dockerfile line 2: ADD of a URL (https://example.com/x.tgz) is not supported without Docker; "
        "fetch it at build time"
    )
    assert build.fails("FROM python:3.11\nADD bundle.tar.gz /opt/\n").startswith(
        "Dockerfile line 2: ADD of the archive 'bundle.tar.gz' would unpack it"
    )
    build.prepare("FROM python:3.11\nADD notes.txt /opt/\n")
    assert (build.work / "opt" / "notes.txt").read_text() == "n"


# --------------------------------------------------------------------------------------------
# RUN


def test_apt_get_is_refused_naming_the_line(build: Build) -> None:
    message = build.fails(
        "FROM python:3.11-slim\nWORKDIR /app\nRUN apt-get update && \\\n    apt-get install -y libpq-dev\n"
    )
    assert message.startswith(
        "Dockerfile line 3: RUN apt-get install libpq-dev is not supported without Docker: system packages cannot be "
        "installed; only ca-certificates, curl, dumb-init, tini, tzdata, wget are accepted"
    )


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ("curl -fsSL https://x | sh", "RUN uses the shell operator '|'"),
        ("test -f x || exit 1", "RUN uses the shell operator '||'"),
        ("echo $(date) > /app/built", "command substitution $(...) is not supported"),
        ("wget https://example.com/file", "RUN wget is not supported without Docker (allowed: "),
        ("apk add --no-cache git", "RUN apk add git is not supported without Docker: system packages cannot"),
        ("npm install -g nodemon", "RUN npm needs a node:* base image"),
        ("pip freeze", "RUN pip freeze is not supported without Docker (only pip install is)"),
        ("pip install -r missing.txt", "pip install -r missing.txt: /app/missing.txt is not in the image"),
        ("pip install --bogus x", "pip option --bogus is not understood"),
        ("pip install --bogus=1 x", "pip option --bogus is not understood"),
        ("cp ../../../etc/passwd .", "the path ../../../etc/passwd leads outside the image's file tree"),
        ("X=1", "a RUN that only sets shell variables is not supported"),
        ("echo hi 2>/dev/null", "the redirection 2> is not supported"),
        ("cd / && rm -rf /", "RUN rm of / would delete the whole image file tree"),
    ],
)
def test_refused_run_commands(build: Build, run: str, expected: str) -> None:
    message = build.fails(f"FROM python:3.11\nWORKDIR /app\nRUN {run}\n")
    assert message.startswith(f"Dockerfile line 3: {expected}"), message


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ("npm install -g nodemon", "RUN npm install -g installs globally"),
        ("npm install express", "RUN npm install express installs named packages"),
        ("yarn add left-pad", "RUN yarn add left-pad installs named packages"),
        ("npm ci", "RUN npm ci needs a package-lock.json in /app"),
        ("npm publish", "RUN npm publish is not supported without Docker"),
        ("pip install flask", "RUN pip needs a python:* base image, not node:20"),
    ],
)
def test_refused_node_commands(build: Build, run: str, expected: str) -> None:
    build.write("package.json", "{}")
    message = build.fails(f"FROM node:20\nWORKDIR /app\nCOPY package.json .\nRUN {run}\n")
    assert message.startswith(f"Dockerfile line 4: {expected}"), message


def test_pip_steps_are_cumulative(build: Build) -> None:
    build.write("requirements.txt", "flask\n")
    build.write("requirements-prod.txt", "gunicorn\n")
    build.write("lib/pyproject.toml", "[project]\nname='lib'\n")
    plan = build.prepare(
        "FROM python:3.11\n"
        "WORKDIR /app\n"
        "COPY . .\n"
        "RUN python -m pip install --upgrade pip setuptools wheel\n"
        "RUN pip3 install --no-cache-dir --upgrade -r requirements.txt 'uvicorn[standard]>=0.30'\n"
        "RUN python3 -m pip install -U --prefer-binary -rrequirements-prod.txt gunicorn==22.0.0 pip\n"
        "RUN cd lib && pip install -e . && pip install --index-url https://pypi.example/simple .\n"
    )
    assert build.hooks.calls == [
        ("pip", ["app/requirements.txt"], ["uvicorn[standard]>=0.30"], 5),
        (
            "pip",
            ["app/requirements.txt", "app/requirements-prod.txt"],
            ["uvicorn[standard]>=0.30", "gunicorn==22.0.0"],
            6,
        ),
        (
            "pip",
            ["app/requirements.txt", "app/requirements-prod.txt", "app/lib/pyproject.toml"],
            ["uvicorn[standard]>=0.30", "gunicorn==22.0.0"],
            7,
        ),
        (
            "pip",
            ["app/requirements.txt", "app/requirements-prod.txt", "app/lib/pyproject.toml"],
            ["uvicorn[standard]>=0.30", "gunicorn==22.0.0"],
            7,
        ),
    ]
    assert plan.python_inputs == ["app/requirements.txt", "app/requirements-prod.txt", "app/lib/pyproject.toml"]
    assert plan.python_packages == ["uvicorn[standard]>=0.30", "gunicorn==22.0.0"]
    assert any("pip install pip setuptools wheel (line 4) skipped" in note for note in plan.notes)
    assert any("--index-url (line 7) ignored" in note for note in plan.notes)


def test_pip_install_of_a_directory_without_pyproject_is_refused(build: Build) -> None:
    build.write("setup.py")
    message = build.fails("FROM python:3.11\nWORKDIR /app\nCOPY . .\nRUN pip install .\n")
    assert message == (
        "Dockerfile line 4: pip install .: /app has no pyproject.toml "
        "(a setup.py alone is not supported without Docker)"
    )


def test_exec_form_run(build: Build) -> None:
    build.write("requirements.txt")
    build.prepare(
        "FROM python:3.11\nCOPY requirements.txt /\n"
        'RUN ["pip", "install", "-r", "/requirements.txt"]\n'
        'RUN ["/bin/sh", "-c", "mkdir -p /data && touch /data/ready"]\n'
    )
    assert build.hooks.calls[0] == ("pip", ["requirements.txt"], [], 3)
    assert build.hooks.shells() == [
        f"mkdir -p {build.work}/data",
        f"touch {build.work}/data/ready",
    ]


def test_allowed_shell_commands_run_inside_the_work_tree(build: Build) -> None:
    build.hooks.execute = True
    build.write("app.py", "print('hi')\n")
    build.write("static/a.css")
    build.write("static/b.css")
    plan = build.prepare(
        "FROM python:3.11\n"
        "ARG GREETING=hello\n"
        "ENV DATA_DIR=/app/data\n"
        "WORKDIR /app\n"
        "COPY . .\n"
        "RUN mkdir -p $DATA_DIR/cache /var/log/app \\\n"
        '    && echo "$GREETING   world" > $DATA_DIR/greeting.txt \\\n'
        "    && cd static && cp *.css /app/data/ ; ls > ../listing.txt\n"
        "RUN chmod +x app.py && mkdir -p /usr/local/bin && ln -sf /app/app.py /usr/local/bin/app \\\n"
        "    && chown -R 10014 /app && set -eux\n"
        "RUN python -c 'import sys; print(sys.argv)' /app/data > /app/argv.txt\n"
        "RUN rm -rf /var/log/* $HOME/.cache && true\n"
    )
    data = build.work / "app" / "data"
    assert (data / "cache").is_dir()
    assert (data / "greeting.txt").read_text() == "hello   world\n"
    assert sorted(os.listdir(data)) == ["a.css", "b.css", "cache", "greeting.txt"]
    assert (build.work / "app" / "listing.txt").read_text().split() == ["a.css", "b.css"]
    link = build.work / "usr" / "local" / "bin" / "app"
    assert os.readlink(link) == "../../../app/app.py"
    assert link.resolve() == (build.work / "app" / "app.py")
    assert (build.work / "app" / "argv.txt").read_text().strip() == repr(["-c", f"{build.work}/app/data"])
    assert not (build.work / "var" / "log" / "app").exists()
    # The commands the hooks saw: quoted, absolute paths inside the work tree, in the right directory.
    calls = [(call[1], call[2], call[4]) for call in build.hooks.calls]
    app, work = build.work / "app", build.work
    assert calls[:4] == [
        (app, f"mkdir -p {work}/app/data/cache {work}/var/log/app", 6),
        (app, f"echo 'hello   world' > {work}/app/data/greeting.txt", 6),
        (app / "static", f"cp a.css b.css {work}/app/data/", 6),
        (app / "static", "ls > ../listing.txt", 6),
    ]
    assert build.hooks.calls[0][3] == {"GREETING": "hello", "DATA_DIR": "/app/data"}
    assert any("chown" in note for note in plan.notes)
    assert any("$HOME is not set by the Dockerfile" in note for note in plan.notes)


def test_sed_scripts_and_echo_text_are_not_rewritten(build: Build) -> None:
    build.write("conf.ini", "a=1\n")
    build.prepare(
        "FROM python:3.11\nCOPY conf.ini /etc/app/\n"
        "RUN sed -i 's/a=1/a=2/' /etc/app/conf.ini && sed -e '/^#/d' -i /etc/app/conf.ini && echo /app/x\n"
    )
    assert build.hooks.shells() == [
        f"sed -i s/a=1/a=2/ {build.work}/etc/app/conf.ini",
        f"sed -e '/^#/d' -i {build.work}/etc/app/conf.ini",
        "echo /app/x",
    ]


def test_node_scripts(build: Build) -> None:
    build.write("package.json", "{}")
    build.write("package-lock.json", "{}")
    plan = build.prepare(
        "FROM node:20\nWORKDIR /app\nCOPY . .\n"
        "RUN npm ci && npm run build -- --out=/app/dist && npx prisma generate && npm cache clean --force\n"
        "RUN yarn build\n"
    )
    app = build.work / "app"
    assert build.hooks.calls[0] == ("npm", app, "ci", 4)
    assert build.hooks.shells() == [
        f"npm run build -- --out={app}/dist",
        "npx prisma generate",
        "yarn build",
    ]
    assert plan.node_install == "ci"


# --------------------------------------------------------------------------------------------
# The start command


@pytest.mark.parametrize(
    ("lines", "run"),
    [
        ('ENTRYPOINT ["gunicorn"]\nCMD ["--bind", "0.0.0.0:8000", "app:app"]', "gunicorn --bind 0.0.0.0:8000 app:app"),
        ('CMD ["python", "-c", "print(\'hello world\')"]', "python -c 'print('\"'\"'hello world'\"'\"')'"),
        ('CMD ["echo", "two words", "$PORT"]', "echo 'two words' '$PORT'"),
        ("CMD gunicorn --bind 0.0.0.0:$PORT app:app", "gunicorn --bind 0.0.0.0:$PORT app:app"),
        ('ENTRYPOINT python server.py\nCMD ["ignored"]', "python server.py"),
        ('ENTRYPOINT ["/app/start.sh"]\nCMD echo hi', "./start.sh /bin/sh -c 'echo hi'"),
        (
            'CMD ["python", "/app/main.py", "--config=/app/conf/x.ini", "/usr/bin/env"]',
            "python main.py --config=conf/x.ini /usr/bin/env",
        ),
        ("CMD /app/start.sh --data /app/data", "./start.sh --data ./data"),
        ('CMD ["python", "/srv/other.py"]', "python ../srv/other.py"),
        ('CMD ["first"]\nCMD ["second"]', "second"),
        ('CMD ["sh", "-c", "cd /app && exec /app/start.sh"]', "sh -c 'cd . && exec ./start.sh'"),
        ("CMD []", None),
    ],
)
def test_start_command(build: Build, lines: str, run: str | None) -> None:
    build.write("start.sh")
    build.write("main.py")
    build.write("conf/x.ini")
    build.write("data/.keep")
    build.write("other.py")
    plan = build.prepare(f"FROM python:3.11\nWORKDIR /app\nCOPY . .\nCOPY other.py /srv/\n{lines}\n")
    assert plan.run == run
    assert shlex.split(plan.run or "") is not None


def test_start_command_without_workdir(build: Build) -> None:
    build.write("main.py")
    plan = build.prepare('FROM python:3.11\nCOPY main.py /app/\nENTRYPOINT ["python", "/app/main.py"]\n')
    assert plan.workdir == ""
    assert plan.run == "python app/main.py"


def test_no_start_command_is_noted(build: Build) -> None:
    plan = build.prepare("FROM node:22-slim\n")
    assert plan.run is None
    assert "the Dockerfile has no CMD or ENTRYPOINT: there is no start command" in plan.notes


def test_dockerfile_elsewhere_in_the_context(build: Build) -> None:
    build.write("docker/Dockerfile.prod", "FROM python:3.11\nVOLUME /data\n")
    with pytest.raises(BuildFailure) as caught:
        prepare(build.context / "docker" / "Dockerfile.prod", build.context, build.work, build.hooks)
    assert caught.value.where == "docker/Dockerfile.prod"
    assert str(caught.value).startswith("Dockerfile line 2: instruction VOLUME")
