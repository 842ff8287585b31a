"""Build a Dockerfile without Docker: replay its stages into file trees and return the last stage's :class:`Plan`.

Cellplane runs applications as plain OS processes, so a Dockerfile is never executed in a
container. :func:`prepare` works out which stages the last one needs (:mod:`cellplane.build.stages`),
and replays each, in Dockerfile order, against a directory that models that stage's filesystem root
(image path ``/app/x.py`` is ``<dir>/app/x.py``); the last stage's directory is ``work``, the artifact:

* ``FROM`` names a base image whose *kind* (:mod:`cellplane.build.baseimages`) says which of the
  machine's tools its RUN lines may use (:mod:`cellplane.build.toolchains`), or an earlier stage;
* ``COPY`` / ``ADD`` copy local files from the build context; ``.git`` and what ``.dockerignore``
  excludes are left out, no source may lead outside the context, nothing is written outside the
  stage's directory; ``COPY --from`` copies from an earlier stage's directory;
* ``WORKDIR`` creates directories; ``ARG`` / ``ENV`` values are substituted the way Docker does;
* ``RUN`` is split into simple commands: ``pip install`` and ``npm ci`` / ``npm install`` / ``yarn``
  become :class:`StepHooks` calls (a build stage's pip into a directory a later stage copies: that
  stage's, at its ``COPY --from``), user management (``adduser``, ``chown``...) and the system packages
  a runtime image adds (``ca-certificates``, ``tzdata``...) are skipped with a note, build tools of the
  stage's image (``go build``, ``mvn``...) and a short allow-list of file and script commands run
  through ``hooks.shell`` with image paths rewritten into the stage's directory, and anything else
  (other system packages, pipes...) fails;
* ``EXPOSE``, ``CMD`` and ``ENTRYPOINT`` become the plan's port and start command; ``LABEL`` is
  recorded, ``HEALTHCHECK`` of a local URL becomes the readiness probe (with ``--retries``, the liveness
  probe too); ``USER`` is noted.

The last stage becomes what it is: a python or node app, a Go or other native binary, a jar run by
the machine's java, or static files (nginx, httpd, caddy; a node stage's ``serve`` / ``http-server``) served by the
platform's static server.
Every refusal is a :class:`BuildFailure` whose message starts with ``Dockerfile line N:`` and whose
``where`` names the Dockerfile.

The package, a module per part (each names what it holds):

* :mod:`.parsing`: the text as instructions (logical lines, escape, flags, JSON form) and stages;
* :mod:`.words`: Docker's word rules and RUN's shell lines as simple commands;
* :mod:`.context`, :mod:`.tree`: the build context COPY reads from, and a stage's file tree;
* :mod:`.bases`: base images and the tools their RUN lines may use;
* :mod:`.stage` (the state), :mod:`.settings`, :mod:`.copying`, :mod:`.run` (with :mod:`.shell`, :mod:`.pip`,
  :mod:`.node`, :mod:`.tools`), :mod:`.start`, :mod:`.laststage` (with :mod:`.fileservers`): the
  per-instruction builder, a mixin per family joined in :mod:`.builder`;
* :mod:`.translate`: :func:`prepare`, the entry point."""

from cellplane.build.dockerfile.parsing import SUPPORTED_INSTRUCTIONS, Instruction, parse
from cellplane.build.dockerfile.translate import prepare

__all__ = ["SUPPORTED_INSTRUCTIONS", "Instruction", "parse", "prepare"]
