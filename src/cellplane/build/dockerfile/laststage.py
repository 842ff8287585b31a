"""What the last stage is: a python or node app, a Go or other native binary, a jar, or static files served.

Makes the :class:`Plan` from the replayed state; files are only read (the Go build-info check reads a binary once)."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from cellplane.build.baseimages import STATIC_ROOTS
from cellplane.build.dockerfile.bases import is_go_binary
from cellplane.build.dockerfile.fileservers import Served, served
from cellplane.build.dockerfile.stage import StartForm
from cellplane.build.dockerfile.start import StartCommand
from cellplane.build.dockerfile.tree import image_abspath
from cellplane.build.plan import BuildFailure, Language, Plan


class LastStage(StartCommand):
    """The last stage's :class:`Plan`."""

    def _plan(self) -> Plan:
        if self.extra_ports:
            self._note(f"EXPOSE also lists {', '.join(self.extra_ports)}; only port {self.port} is used")
        kind = self.image.kind
        if kind == "web":
            return self._static_plan()
        if kind == "node" and (files := served(self._start_argv())) is not None:
            return self._served_plan(files)
        if kind in ("python", "node") and not self._runs_java():
            language: Language = kind
            if "/distroless/" in self.image.ref and self.entrypoint is None:
                program = "node" if kind == "node" else "python"  # distroless images' implicit ENTRYPOINT
                self.entrypoint = StartForm([program], program)
        else:
            self._implicit_entrypoint()
            language = "java" if self._runs_java() else "go" if self._runs_go_binary() else "binary"
        run = self._start_command()
        if run is None:
            self._note("the Dockerfile has no CMD or ENTRYPOINT: there is no start command")
        self._env_path_notes()
        return self._new_plan(language, run=run)

    def _new_plan(self, language: Language, **fields: Any) -> Plan:
        return Plan(
            strategy="dockerfile",
            reason=f"Dockerfile at {self.display} (base image {self.image.ref}, last stage)",
            language=language,
            workdir=fields.pop("workdir", self.workdir.lstrip("/")),
            python_inputs=list(self.pip_inputs),
            python_packages=list(self.pip_packages),
            node_install=self.node_install,
            port=self.port,
            env=dict(self.env),
            language_version=self.image.version if language == self.image.kind else None,
            labels=dict(self.labels),
            readiness=dict(self.readiness) if self.readiness else None,
            liveness=dict(self.liveness) if self.liveness else None,
            notes=list(self.notes),
            **fields,
        )

    def _runs_java(self) -> bool:
        argv = self._start_argv()
        return bool(argv) and posixpath.basename(argv[0]) == "java" and "-jar" in argv

    def _implicit_entrypoint(self) -> None:
        """distroless/java images start ``java -jar`` with CMD as its arguments; the JDK's java is the machine's."""
        if self.image.kind == "jre" and self.image.name.startswith("java") and self.entrypoint is None:
            self.entrypoint = StartForm(["java", "-jar"], "java -jar")
        for form in (self.entrypoint, self.cmd):
            java = form is not None and form.argv and posixpath.basename(form.argv[0]) == "java"
            if form is not None and form.argv and java and not self.tree.points_into(form.argv[0]):
                form.argv[0] = "java"  # /opt/java/openjdk/bin/java: the machine's java

    def _runs_go_binary(self) -> bool:
        argv = self._start_argv()
        if not argv:
            return False
        program = argv[0]
        host = self.tree.host(program) if program.startswith("/") else self.tree.host(
            posixpath.join(self.workdir, program))
        return is_go_binary(host)

    def _static_plan(self) -> Plan:
        """nginx/httpd/caddy: the files copied to the server's root, served by the platform's static server."""
        name = self.image.name
        roots = list(STATIC_ROOTS.get(name, ("/usr/share/nginx/html",)))
        configured = self._server_config_root()
        if configured:
            roots.insert(0, configured)
        for root in roots:
            if (self.tree.host(root) / "index.html").is_file():
                break
        else:
            raise BuildFailure(
                f"the last stage ({self.image.ref}) serves static files, but no index.html was copied to "
                f"{roots[0]}; COPY the built site there"
            )
        if self.cmd is not None or self.entrypoint is not None:
            self._note(f"{name}'s start command is not used: the platform's static server serves {root}")
        if self.port is not None:
            self._note(f"EXPOSE {self.port} is not used: the static server listens on the port the platform gives")
        self._note(f"{name} serves {root} with the platform's static server (single-page-app fallback on)")
        plan = self._new_plan("static", workdir="", static_root=image_abspath(root).lstrip("/"))
        plan.port = None
        return plan

    def _served_plan(self, files: Served) -> Plan:
        """A node stage starting ``serve`` / ``http-server``: what it serves, by the platform's static server."""
        directory = files.directory
        if directory is None:
            public = self.tree.host(posixpath.join(self.workdir, "public")).is_dir()
            directory = "public" if files.program == "http-server" and public else "."
        root = image_abspath(posixpath.join(self.workdir, directory))
        if not (self.tree.host(root) / "index.html").is_file():
            raise BuildFailure(
                f"the last stage starts {files.program}, which serves {root}, but there is no index.html there; "
                "build the site into it (RUN npm run build) or COPY it there"
            )
        fallback = "single-page-app fallback on, as -s asks" if files.spa else "no single-page-app fallback: no -s"
        self._note(f"{files.program} serves {root}: the platform's static server serves it instead ({fallback})")
        if self.port is not None:
            self._note(f"EXPOSE {self.port} is not used: the static server listens on the port the platform gives")
        plan = self._new_plan("static", workdir="", static_root=root.lstrip("/"), spa=files.spa)
        plan.port = None
        return plan

    def _server_config_root(self) -> str | None:
        """The ``root`` of an nginx.conf (or Caddyfile) the Dockerfile copied in, noting its SPA fallback."""
        candidates = [*self.tree.root.joinpath("etc", "nginx").rglob("*.conf")] if (
            self.tree.root / "etc" / "nginx").is_dir() else []
        candidates += [p for p in (self.tree.host("/etc/caddy/Caddyfile"),) if p.is_file()]
        root = None
        for path in candidates:
            text = path.read_text(errors="replace")
            shown = self.tree.image(path)
            if re.search(r"try_files\s+[^;]*\$uri[^;]*/index\.html", text):
                self._note(f"{shown}: try_files falls back to /index.html: the static server's SPA fallback does that")
            elif "try_files" in text:
                self._note(f"{shown}: its try_files has no /index.html fallback, but the static server's SPA "
                           "fallback still serves index.html for page routes")
            else:
                self._note(f"{shown} copied in: the static server serves the files with SPA fallback, "
                           "not this configuration")
            match = re.search(r"^\s*root\s+(?:\*\s+)?(/[^;\s]+)", text, re.M)
            if match and root is None:
                root = match.group(1)
        return root
