"""Detection: which strategy wins, why, and what it decides - on tiny trees and on the fixture apps."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from buildkit import detect_failure as failure
from buildkit import tree
from cellplane.build.detect import (
    Detection,
    detect,
    normalize_name,
    parse_procfile,
    port_in_command,
    requirement_name,
)
from cellplane.build.plan import BuildFailure
from cellplane.model.component import Build

APPS = Path(__file__).parent / "fixtures" / "apps"

FLASK_APP = 'from flask import Flask\n\napp = Flask(__name__)\n\n@app.get("/")\ndef index():\n    return "hi"\n'
FASTAPI_APP = 'from fastapi import FastAPI\n\napp = FastAPI()\n'


# --- the fixture apps ------------------------------------------------------------------------------------------

FIXTURES = [
    # (path, component type, strategy, language, run, extra expectations)
    ("flask-procfile", "service", "procfile", "python", "gunicorn --bind 0.0.0.0:$PORT app:app",
     {"python_inputs": ["requirements.txt"], "processes": {"web": "gunicorn --bind 0.0.0.0:$PORT app:app"}}),
    ("fastapi-pyproject", "service", "python", "python", "uvicorn main:app --host 0.0.0.0 --port $PORT",
     {"python_inputs": ["pyproject.toml"], "language_version": ">=3.11"}),
    ("flask-dockerfile", "service", "dockerfile", "python", None, {}),
    ("express", "service", "node", "node", "node server.js",
     {"node_install": "ci", "build_commands": [], "language_version": ">=18"}),
    ("static-site", "web-app", "static", "static", None, {"static_root": ""}),
    ("react-like", "web-app", "static", "static", None,
     {"static_root": None, "build_commands": ["npm run build"], "node_install": None}),
    ("monorepo/services/greeter", "service", "python", "python", "python app.py",
     {"python_inputs": ["requirements.txt"]}),
    ("monorepo/services/worker", "worker", "procfile", "python", "python worker.py",
     {"processes": {"worker": "python worker.py"}}),
    ("monorepo/web/site", "web-app", "static", "static", None, {"static_root": ""}),
    ("leaky", "service", "python", "python", "gunicorn --bind 0.0.0.0:$PORT app:app",
     {"python_inputs": ["requirements.txt"]}),
]


@pytest.mark.parametrize(("path", "ctype", "strategy", "language", "run", "extra"), FIXTURES,
                         ids=[f[0] for f in FIXTURES])
def test_fixture_apps_are_detected(path, ctype, strategy, language, run, extra):
    found = detect(APPS / path, {}, ctype)
    plan = found.plan
    assert (plan.strategy, plan.language, plan.run) == (strategy, language, run)
    for key, value in extra.items():
        assert getattr(plan, key) == value, key
    assert plan.reason.endswith(".") and len(plan.reason) > 20
    assert found.dockerfile == ("Dockerfile" if strategy == "dockerfile" else None)


def test_fixture_tree_is_clean():
    generated = [p for p in APPS.rglob("*") if p.name in ("node_modules", "__pycache__", "dist", ".venv")]
    assert generated == []


def test_fixture_declarations_parse():
    for package in APPS.rglob("package*.json"):
        json.loads(package.read_text())
    for pyproject in APPS.rglob("pyproject.toml"):
        tomllib.loads(pyproject.read_text())
    lock = json.loads((APPS / "express" / "package-lock.json").read_text())
    assert "node_modules/express" in lock["packages"]


def test_leaky_fixture_has_an_aws_shaped_fake_key():
    text = (APPS / "leaky" / "config.py").read_text()
    key = re.search(r'"(AKIA[0-9A-Z]{16})"', text)
    secret = re.search(r'AWS_SECRET_ACCESS_KEY = "([A-Za-z0-9/+]{40})"', text)
    assert key and secret
    assert "EXAMPLE" not in key.group(1)
    assert "fake" in (APPS / "README.md").read_text().lower()


def test_fastapi_fixture_check_script_is_a_test_command():
    pytest.importorskip("fastapi")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "check.py"], cwd=APPS / "fastapi-pyproject", env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_react_like_fixture_builds_to_dist(tmp_path):
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    work = tmp_path / "react-like"
    shutil.copytree(APPS / "react-like", work)
    subprocess.run(["node", "build.js"], cwd=work, check=True, capture_output=True, timeout=60)
    assert "react-like" in (work / "dist" / "index.html").read_text()
    assert (work / "dist" / "assets" / "main.js").is_file()


# --- priority --------------------------------------------------------------------------------------------------


def test_procfile_beats_dockerfile_beats_requirements(tmp_path):
    tree(tmp_path, {"Procfile": "web: gunicorn app:app\n", "Dockerfile": "FROM python:3.11\n",
                    "requirements.txt": "flask\ngunicorn\n", "app.py": FLASK_APP})
    assert detect(tmp_path, {}).plan.strategy == "procfile"
    (tmp_path / "Procfile").unlink()
    assert detect(tmp_path, {}).plan.strategy == "dockerfile"
    (tmp_path / "Dockerfile").unlink()
    assert detect(tmp_path, {}).plan.strategy == "python"


def test_explicit_run_beats_everything_and_says_what_it_ignored(tmp_path):
    tree(tmp_path, {"Procfile": "web: x\n", "Dockerfile": "FROM python\n", "requirements.txt": "flask\n"})
    plan = detect(tmp_path, {"run": "python serve.py --port 9000"}).plan
    assert plan.strategy == "explicit"
    assert plan.run == "python serve.py --port 9000"
    assert plan.port == 9000
    assert plan.python_inputs == ["requirements.txt"]
    assert "build.run" in plan.reason
    assert any("Procfile" in n for n in plan.notes) and any("Dockerfile" in n for n in plan.notes)


def test_python_declarations_beat_package_json_which_beats_bare_python_files(tmp_path):
    tree(tmp_path, {"package.json": '{"scripts": {"start": "node index.js"}}', "tool.py": "print(1)\n",
                    "index.html": "<p>hi</p>"})
    assert detect(tmp_path, {}).plan.strategy == "node"
    tree(tmp_path, {"requirements.txt": "", "main.py": "print(1)\n"})
    plan = detect(tmp_path, {}).plan
    assert (plan.strategy, plan.run) == ("python", "python main.py")


def test_python_files_beat_index_html(tmp_path):
    tree(tmp_path, {"index.html": "<p>hi</p>", "app.py": "print(1)\n"})
    plan = detect(tmp_path, {}).plan
    assert (plan.strategy, plan.run, plan.python_inputs) == ("python", "python app.py", [])


# --- a. explicit settings --------------------------------------------------------------------------------------


def test_mode_command_with_build_and_run(tmp_path):
    tree(tmp_path, {"package.json": '{"dependencies": {"left-pad": "1"}}'})
    plan = detect(tmp_path, {"mode": "command", "command": "npm run compile", "run": "node out/main.js"}).plan
    assert (plan.strategy, plan.language, plan.run) == ("explicit", "node", "node out/main.js")
    assert plan.build_commands == ["npm run compile"]
    assert plan.node_install == "install"
    assert plan.reason.startswith("build.mode is command")


def test_command_only_uses_the_detected_python_start(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\ngunicorn\n", "app.py": FLASK_APP})
    plan = detect(tmp_path, {"command": "python manage_assets.py"}).plan
    assert plan.strategy == "explicit"
    assert plan.build_commands == ["python manage_assets.py"]
    assert plan.run == "gunicorn --bind 0.0.0.0:$PORT app:app"
    assert "build.command" in plan.reason and "gunicorn" in plan.reason


def test_command_only_python_without_a_start_fails(tmp_path):
    tree(tmp_path, {"requirements.txt": "requests\n", "lib.py": ""})
    error = failure(tmp_path, {"command": "make"})
    assert str(error) == "cannot tell how to start this Python app; set build.run"
    assert error.where == "build.run"


def test_command_only_node_service_runs_the_start_script(tmp_path):
    tree(tmp_path, {"package.json": '{"scripts": {"start": "node srv.js"}}'})
    plan = detect(tmp_path, {"command": "npm run gen"}).plan
    assert (plan.language, plan.run, plan.build_commands) == ("node", "node srv.js", ["npm run gen"])


def test_command_only_node_web_app_is_static(tmp_path):
    tree(tmp_path, {"package.json": '{"scripts": {"start": "vite"}, "devDependencies": {"vite": "5"}}'})
    plan = detect(tmp_path, {"command": "npm run build:prod"}, "web-app").plan
    assert (plan.strategy, plan.language, plan.run, plan.static_root) == ("explicit", "static", None, None)
    assert plan.node_install == "install"


def test_command_only_node_without_start_fails(tmp_path):
    tree(tmp_path, {"package.json": "{}"})
    assert "set build.run" in str(failure(tmp_path, {"command": "npm run x"}))


def test_command_with_static_language(tmp_path):
    tree(tmp_path, {"gen.sh": "mkdir build\n"})
    plan = detect(tmp_path, {"command": "sh gen.sh", "language": "static"}).plan
    assert (plan.language, plan.static_root, plan.run) == ("static", None, None)


def test_mode_command_needs_a_command_or_run(tmp_path):
    tree(tmp_path, {"app.py": ""})
    error = failure(tmp_path, {"mode": "command"})
    assert error.where == "build.mode" and "neither build.command nor build.run" in str(error)


def test_explicit_language_wins_over_files(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n"})
    plan = detect(tmp_path, {"run": "node x.js", "language": "Node"}).plan
    assert plan.language == "node" and plan.python_inputs == []


def test_explicit_without_a_detectable_language_asks_for_build_language(tmp_path):
    tree(tmp_path, {"README": "hello"})
    error = failure(tmp_path, {"run": "./server"})
    assert error.where == "build.language"
    assert "set build.language" in str(error) and "build.run is set" in str(error)


@pytest.mark.parametrize(("build", "where"), [
    ({"mode": "magic"}, "build.mode"),
    ({"language": "cobol", "run": "x"}, "build.language"),
    ({"run": 42}, "build.run"),
])
def test_invalid_settings(tmp_path, build, where):
    tree(tmp_path, {"index.html": ""})
    assert failure(tmp_path, build).where == where


def test_the_build_model_is_accepted(tmp_path):
    tree(tmp_path, {"index.html": ""})
    plan = detect(tmp_path, Build(run="python -m http.server $PORT", language="python")).plan
    assert (plan.strategy, plan.run) == ("explicit", "python -m http.server $PORT")


def test_empty_settings_are_unset(tmp_path):
    tree(tmp_path, {"index.html": ""})
    assert detect(tmp_path, {"run": "  ", "command": "", "mode": None}).plan.strategy == "static"


# --- b. Procfile -----------------------------------------------------------------------------------------------


def test_parse_procfile():
    text = "# processes\n\nweb: gunicorn app:app --workers 2\nworker:python w.py\n  release : ./migrate.sh  \n"
    assert parse_procfile(text) == {"web": "gunicorn app:app --workers 2", "worker": "python w.py",
                                    "release": "./migrate.sh"}


@pytest.mark.parametrize(("text", "message"), [
    ("web gunicorn app:app\n", "Procfile line 1 is not 'name: command'"),
    ("# c\nweb: a\nweb: b\n", "Procfile line 3: process 'web' is declared twice"),
    ("web:\n", "Procfile line 1: process 'web' has no command"),
    ("we b: x\n", "Procfile line 1 is not"),
])
def test_malformed_procfile(tmp_path, text, message):
    tree(tmp_path, {"Procfile": text, "app.py": ""})
    error = failure(tmp_path)
    assert str(error).startswith(message)
    assert error.where == "Procfile"


def test_procfile_without_processes(tmp_path):
    tree(tmp_path, {"Procfile": "# nothing yet\n\n", "app.py": ""})
    error = failure(tmp_path)
    assert "declares no processes" in str(error) and error.where == "Procfile"


def test_procfile_web_process_serves_a_service(tmp_path):
    tree(tmp_path, {"Procfile": "worker: python w.py\nweb: gunicorn -b 0.0.0.0:5000 app:app\n",
                    "requirements.txt": "gunicorn\n", "pyproject.toml": "[project]\nname='x'\ndependencies=[]\n"})
    plan = detect(tmp_path, {"test": "pytest -q"}).plan
    assert plan.run == "gunicorn -b 0.0.0.0:5000 app:app"
    assert plan.processes == {"worker": "python w.py", "web": "gunicorn -b 0.0.0.0:5000 app:app"}
    assert plan.port == 5000
    assert plan.test == "pytest -q"
    assert plan.python_inputs == ["requirements.txt", "pyproject.toml"]
    assert "Procfile" in plan.reason and "web process" in plan.reason


def test_endpoint_port_wins_over_the_command(tmp_path):
    tree(tmp_path, {"Procfile": "web: gunicorn -b 0.0.0.0:5000 app:app\n", "app.py": ""})
    assert detect(tmp_path, {}, endpoint_port=8080).plan.port == 8080


@pytest.mark.parametrize("ctype", ["worker", "scheduled-task", "manual-task"])
def test_procfile_first_process_runs_a_worker_or_task(tmp_path, ctype):
    tree(tmp_path, {"Procfile": "consume: python consume.py\nclean: python clean.py\n", "consume.py": ""})
    plan = detect(tmp_path, {}, ctype).plan
    assert plan.run == "python consume.py"
    assert "'consume'" in plan.reason and ctype in plan.reason
    assert plan.notes == []


def test_procfile_web_process_also_wins_for_a_worker(tmp_path):
    tree(tmp_path, {"Procfile": "other: python o.py\nweb: python w.py\n", "w.py": ""})
    assert detect(tmp_path, {}, "worker").plan.run == "python w.py"


def test_procfile_without_web_for_a_service_starts_the_first_process_with_a_note(tmp_path):
    tree(tmp_path, {"Procfile": "api: python api.py\n", "api.py": ""})
    plan = detect(tmp_path, {}).plan
    assert plan.run == "python api.py"
    assert "without a web process" in plan.reason
    assert plan.notes == ["the Procfile has no 'web' process; 'api' is started instead"]


def test_procfile_node_app_installs_and_builds(tmp_path):
    tree(tmp_path, {"Procfile": "web: node dist/server.js\n", "package-lock.json": "{}",
                    "package.json": '{"scripts": {"build": "tsc"}, "devDependencies": {"typescript": "5"}}'})
    plan = detect(tmp_path, {}).plan
    assert (plan.language, plan.node_install, plan.build_commands) == ("node", "ci", ["npm run build"])


def test_procfile_without_language_files_needs_build_language(tmp_path):
    tree(tmp_path, {"Procfile": "web: ./server\n"})
    error = failure(tmp_path)
    assert error.where == "build.language" and "a Procfile was found" in str(error)
    assert detect(tmp_path, {"language": "python"}).plan.language == "python"


def test_mode_procfile_requires_a_procfile(tmp_path):
    tree(tmp_path, {"app.py": ""})
    error = failure(tmp_path, {"mode": "procfile"})
    assert str(error) == "build.mode is procfile but there is no Procfile in the source"  # never the machine's path
    assert error.where == "build.mode"


def test_mode_procfile_beats_dockerfile_and_takes_overrides(tmp_path):
    tree(tmp_path, {"Procfile": "web: gunicorn app:app\n", "Dockerfile": "FROM python\n", "app.py": ""})
    plan = detect(tmp_path, {"mode": "procfile", "run": "python app.py", "command": "make assets"}).plan
    assert plan.strategy == "procfile"
    assert plan.run == "python app.py" and plan.processes == {"web": "gunicorn app:app"}
    assert plan.build_commands == ["make assets"]


# --- c. Dockerfile ---------------------------------------------------------------------------------------------


def test_dockerfile_is_left_to_the_translator(tmp_path):
    tree(tmp_path, {"Dockerfile": "FROM python:3.11\n", "requirements.txt": "flask\n"})
    found = detect(tmp_path, {"test": "pytest"}, endpoint_port=5000)
    assert isinstance(found, Detection)
    assert found.dockerfile == "Dockerfile"
    assert (found.plan.strategy, found.plan.language, found.plan.run) == ("dockerfile", "python", None)
    assert (found.plan.port, found.plan.test) == (5000, "pytest")
    assert "Dockerfile" in found.plan.reason


def test_dockerfile_language_follows_the_files(tmp_path):
    tree(tmp_path, {"Dockerfile": "FROM node:20\n", "package.json": "{}"})
    assert detect(tmp_path, {}).plan.language == "node"


def test_build_dockerfile_path_is_used_even_with_a_procfile(tmp_path):
    tree(tmp_path, {"Procfile": "web: x\n", "docker/Dockerfile.prod": "FROM python\n"})
    found = detect(tmp_path, {"dockerfile": "./docker/Dockerfile.prod"})
    assert found.dockerfile == "docker/Dockerfile.prod"
    assert "docker/Dockerfile.prod" in found.plan.reason


def test_mode_dockerfile_beats_a_procfile_and_carries_overrides(tmp_path):
    tree(tmp_path, {"Procfile": "web: x\n", "Dockerfile": "FROM python\n"})
    found = detect(tmp_path, {"mode": "dockerfile", "run": "python other.py"})
    assert found.dockerfile == "Dockerfile"
    assert found.plan.run == "python other.py"
    assert found.plan.reason.startswith("build.mode is dockerfile")


def test_mode_dockerfile_requires_a_dockerfile(tmp_path):
    tree(tmp_path, {"app.py": ""})
    error = failure(tmp_path, {"mode": "dockerfile"})
    assert str(error) == "build.mode is dockerfile but there is no Dockerfile in the source"


@pytest.mark.parametrize("path", ["docker/missing", "../Dockerfile", "/etc/Dockerfile"])
def test_bad_build_dockerfile(tmp_path, path):
    tree(tmp_path, {"Dockerfile": "FROM python\n"})
    assert failure(tmp_path, {"dockerfile": path}).where == "build.dockerfile"


# --- d. Python -------------------------------------------------------------------------------------------------


def test_gunicorn_uses_the_variable_actually_assigned(tmp_path):
    tree(tmp_path, {"requirements.txt": "Flask>=3\ngunicorn==22.0.0\n",
                    "server.py": "import flask\n\nserver: flask.Flask = flask.Flask(__name__)\n"})
    plan = detect(tmp_path, {}).plan
    assert plan.run == "gunicorn --bind 0.0.0.0:$PORT server:server"
    assert "server.py" in plan.reason and "requirements.txt" in plan.reason


def test_uvicorn_for_an_asgi_app(tmp_path):
    tree(tmp_path, {"requirements.txt": "fastapi\nuvicorn[standard]>=0.30\n", "main.py": FASTAPI_APP})
    assert detect(tmp_path, {}).plan.run == "uvicorn main:app --host 0.0.0.0 --port $PORT"


def test_fastapi_standard_brings_uvicorn(tmp_path):
    tree(tmp_path, {"requirements.txt": "fastapi[standard]>=0.115\n", "asgi.py": "from starlette.applications "
                    "import Starlette\napi = Starlette()\n"})
    assert detect(tmp_path, {}).plan.run == "uvicorn asgi:api --host 0.0.0.0 --port $PORT"


def test_uvicorn_wins_for_asgi_even_with_gunicorn(tmp_path):
    tree(tmp_path, {"requirements.txt": "gunicorn\nuvicorn\nfastapi\n", "app.py": FASTAPI_APP})
    assert detect(tmp_path, {}).plan.run.startswith("uvicorn app:app")


def test_flask_without_gunicorn_uses_flask_run(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK_APP})
    assert detect(tmp_path, {}).plan.run == "flask --app app run --host 0.0.0.0 --port $PORT"
    tree(tmp_path, {"app.py": "from flask import Flask\nweb = Flask(__name__)\n"})
    assert detect(tmp_path, {}).plan.run == "flask --app app:web run --host 0.0.0.0 --port $PORT"


def test_flask_app_that_starts_itself_on_port(tmp_path):
    main_block = '\nif __name__ == "__main__":\n    import os\n    app.run(port=int(os.environ["PORT"]))\n'
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK_APP + main_block})
    plan = detect(tmp_path, {}).plan
    assert plan.run == "python app.py"
    assert "itself on $PORT" in plan.reason


def test_flask_main_block_without_port_still_uses_flask_run(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n",
                    "app.py": FLASK_APP + '\nif __name__ == "__main__":\n    app.run(debug=True)\n'})
    assert detect(tmp_path, {}).plan.run.startswith("flask --app app run")


def test_python_script_fallbacks(tmp_path):
    tree(tmp_path, {"requirements.txt": "requests\n", "main.py": "print('hi')\n"})
    assert detect(tmp_path, {}).plan.run == "python main.py"
    tree(tmp_path, {"app.py": "print('hi')\n"})
    assert detect(tmp_path, {}).plan.run == "python app.py"


def test_app_py_with_a_syntax_error_falls_back_to_running_it(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\ngunicorn\n", "app.py": "app = Flask(\n"})
    assert detect(tmp_path, {}).plan.run == "python app.py"


def test_python_without_a_start_command(tmp_path):
    tree(tmp_path, {"requirements.txt": "requests\n", "lib.py": ""})
    error = failure(tmp_path)
    assert str(error) == "cannot tell how to start this Python app; set build.run"


def test_wsgi_entry_point_with_a_factory(tmp_path):
    tree(tmp_path, {"requirements.txt": "gunicorn\n", "wsgi.py": "from shop import create_app\napplication = "
                    "create_app()\n"})
    assert detect(tmp_path, {}).plan.run == "gunicorn --bind 0.0.0.0:$PORT wsgi:application"


def test_app_in_a_package(tmp_path):
    tree(tmp_path, {"requirements.txt": "gunicorn\nflask\n", "shop/__init__.py": "", "shop/app.py": FLASK_APP})
    plan = detect(tmp_path, {}).plan
    assert (plan.run, plan.env) == ("gunicorn --bind 0.0.0.0:$PORT shop.app:app", {})


def test_app_in_a_src_layout(tmp_path):
    tree(tmp_path, {"pyproject.toml": '[project]\nname = "svc"\ndependencies = ["fastapi", "uvicorn"]\n',
                    "src/svc/__init__.py": "", "src/svc/main.py": FASTAPI_APP})
    plan = detect(tmp_path, {}).plan
    assert plan.run == "uvicorn svc.main:app --host 0.0.0.0 --port $PORT"
    assert plan.env == {"PYTHONPATH": "src"}


def test_django_with_gunicorn(tmp_path):
    tree(tmp_path, {"requirements.txt": "Django>=5\ngunicorn\n", "manage.py": "", "mysite/__init__.py": "",
                    "mysite/settings.py": "", "mysite/wsgi.py": "application = get_wsgi_application()\n"})
    plan = detect(tmp_path, {}).plan
    assert plan.run == "gunicorn --bind 0.0.0.0:$PORT mysite.wsgi"
    assert "Django" in plan.reason


def test_django_without_gunicorn_uses_runserver(tmp_path):
    tree(tmp_path, {"requirements.txt": "django\n", "manage.py": "", "mysite/wsgi.py": ""})
    assert detect(tmp_path, {}).plan.run == "python manage.py runserver 0.0.0.0:$PORT"


def test_requirements_files_are_parsed(tmp_path):
    tree(tmp_path, {
        "requirements.txt": "# web\n-r requirements/base.txt\n--index-url https://example.org/simple\n"
                            "uvicorn[standard] >= 0.30 ; python_version >= '3.8'  # server\n",
        "requirements/base.txt": "-e git+https://example.org/x.git#egg=Fast_API\n./vendor/pkg\n-c constraints.txt\n",
        "main.py": "import fastapi\napp = fastapi.FastAPI()\n",
    })
    plan = detect(tmp_path, {}).plan
    assert plan.run == "uvicorn main:app --host 0.0.0.0 --port $PORT"
    assert plan.python_inputs == ["requirements.txt"]


@pytest.mark.parametrize(("spec", "expected"), [
    ("Flask>=3,<4", ("flask", set())),
    ("uvicorn[standard,Extra_X]==0.30", ("uvicorn", {"standard", "extra-x"})),
    ("zope.interface ; python_version<'4'", ("zope-interface", set())),
    ("pkg @ https://example.org/pkg.whl", ("pkg", set())),
    ("git+https://example.org/r.git#egg=My_Pkg", ("my-pkg", set())),
    ("https://example.org/x.whl", None),
    ("./local", None),
    ("", None),
])
def test_requirement_name(spec, expected):
    assert requirement_name(spec) == expected


def test_normalize_name():
    assert normalize_name("Foo__Bar.baz") == "foo-bar-baz"


def test_pyproject_and_requirements_are_both_inputs(tmp_path):
    tree(tmp_path, {"requirements.txt": "gunicorn\n", "pyproject.toml": '[project]\nname="x"\n'
                    'dependencies=["flask"]\n', "app.py": FLASK_APP})
    plan = detect(tmp_path, {}).plan
    assert plan.python_inputs == ["requirements.txt", "pyproject.toml"]
    assert plan.run == "gunicorn --bind 0.0.0.0:$PORT app:app"
    assert "requirements.txt and pyproject.toml" in plan.reason


def test_poetry_pyproject_is_an_input_with_a_note(tmp_path):
    tree(tmp_path, {"pyproject.toml": '[tool.poetry]\nname = "x"\n[tool.poetry.dependencies]\ngunicorn = "*"\n',
                    "main.py": "print(1)\n"})
    plan = detect(tmp_path, {}).plan
    assert plan.python_inputs == ["pyproject.toml"]
    assert plan.run == "python main.py"  # Poetry's dependencies are not read
    assert any("Poetry" in note for note in plan.notes)


def test_pyproject_without_project_table(tmp_path):
    tree(tmp_path, {"pyproject.toml": "[tool.ruff]\nline-length = 100\n", "main.py": ""})
    plan = detect(tmp_path, {}).plan
    assert plan.python_inputs == []
    assert any("no [project] table" in note for note in plan.notes)


def test_setup_py_only_gets_a_note(tmp_path):
    tree(tmp_path, {"setup.py": "", "app.py": ""})
    plan = detect(tmp_path, {}).plan
    assert plan.strategy == "python" and any("setup.py" in note for note in plan.notes)


@pytest.mark.parametrize(("text", "message"), [
    ("[project\nname = 'x'\n", "pyproject.toml is not valid TOML"),
    ("[project]\ndependencies = 'flask'\n", "pyproject.toml: project.dependencies must be a list"),
    ("project = 3\n", "pyproject.toml: [project] must be a table"),
    ("[project]\nrequires-python = 3.11\n", "pyproject.toml: project.requires-python must be a string"),
])
def test_malformed_pyproject(tmp_path, text, message):
    tree(tmp_path, {"pyproject.toml": text, "app.py": ""})
    error = failure(tmp_path)
    assert str(error).startswith(message)
    assert error.where == "pyproject.toml"


def test_malformed_pyproject_fails_the_procfile_and_explicit_rules_too(tmp_path):
    tree(tmp_path, {"pyproject.toml": "[[[", "Procfile": "web: python app.py\n"})
    assert failure(tmp_path).where == "pyproject.toml"
    assert failure(tmp_path, {"run": "python app.py"}).where == "pyproject.toml"


def test_requirements_that_are_not_text(tmp_path):
    (tmp_path / "requirements.txt").write_bytes(b"flask\n\xff\xfe\n")
    error = failure(tmp_path)
    assert error.where == "requirements.txt" and "not UTF-8" in str(error)


@pytest.mark.parametrize(("files", "build", "expected"), [
    ({".python-version": "3.12.1\n", "runtime.txt": "python-3.11.4"}, {}, "3.12.1"),
    ({"runtime.txt": "python-3.11.4\n"}, {}, "3.11.4"),
    ({"pyproject.toml": '[project]\nname="x"\nrequires-python=">=3.10"\n'}, {}, ">=3.10"),
    ({".python-version": "3.12\n"}, {"languageVersion": "3.11"}, "3.11"),
    ({}, {}, None),
])
def test_python_language_version(tmp_path, files, build, expected):
    tree(tmp_path, {"main.py": "", **files})
    assert detect(tmp_path, build).plan.language_version == expected


# --- e. Node.js ------------------------------------------------------------------------------------------------


def node_app(root: Path, package: dict, **files: str) -> Path:
    return tree(root, {"package.json": json.dumps(package), **files})


def test_node_service_runs_the_start_script_itself(tmp_path):
    node_app(tmp_path, {"scripts": {"start": "node --enable-source-maps dist/index.js", "build": "tsc"},
                        "dependencies": {"express": "4"}, "engines": {"node": "20.x"}})
    plan = detect(tmp_path, {}).plan
    assert (plan.strategy, plan.language) == ("node", "node")
    assert plan.run == "node --enable-source-maps dist/index.js"
    assert plan.build_commands == ["npm run build"]
    assert (plan.node_install, plan.language_version) == ("install", "20.x")
    assert "package.json" in plan.reason and "start script" in plan.reason


def test_node_web_app_with_build_is_static_even_with_start(tmp_path):
    node_app(tmp_path, {"scripts": {"start": "vite", "build": "vite build"}, "devDependencies": {"vite": "5"}},
             **{"package-lock.json": "{}"})
    plan = detect(tmp_path, {}, "web-app").plan
    assert (plan.strategy, plan.language, plan.run, plan.static_root) == ("static", "static", None, None)
    assert (plan.build_commands, plan.node_install) == (["npm run build"], "ci")
    assert "package.json" in plan.reason and "web app" in plan.reason


def test_node_build_without_start_is_static(tmp_path):
    node_app(tmp_path, {"scripts": {"build": "node build.js"}})
    plan = detect(tmp_path, {}, "service").plan
    assert (plan.strategy, plan.static_root, plan.node_install) == ("static", None, None)


def test_node_without_start_uses_server_js(tmp_path):
    node_app(tmp_path, {"dependencies": {"ws": "8"}}, **{"server.js": ""})
    plan = detect(tmp_path, {}).plan
    assert plan.run == "node server.js"


def test_node_with_nothing_to_run(tmp_path):
    node_app(tmp_path, {"scripts": {"test": "jest"}})
    error = failure(tmp_path)
    assert error.where == "package.json" and "neither a start script nor a build script" in str(error)


def test_node_lockfiles(tmp_path):
    node_app(tmp_path, {"scripts": {"start": "node a.js"}, "dependencies": {"x": "1"}}, **{"yarn.lock": ""})
    plan = detect(tmp_path, {}).plan
    assert plan.node_install == "install"
    assert any("yarn.lock" in note for note in plan.notes)
    tree(tmp_path, {"npm-shrinkwrap.json": "{}"})
    assert detect(tmp_path, {}).plan.node_install == "ci"


def test_node_version_sources(tmp_path):
    node_app(tmp_path, {"scripts": {"start": "node a.js"}, "engines": {"node": ">=18"}}, **{".nvmrc": "v20.11.0\n"})
    assert detect(tmp_path, {}).plan.language_version == "20.11.0"
    assert detect(tmp_path, {"languageVersion": "22"}).plan.language_version == "22"


@pytest.mark.parametrize(("text", "message"), [
    ('{"scripts": {"start": "node a.js",}}', "package.json is not valid JSON: Expecting property name"),
    ("[1, 2]", "package.json must hold a JSON object"),
    ('{"scripts": {"start": ["node", "a.js"]}}', "package.json: scripts must map names to command lines"),
])
def test_malformed_package_json(tmp_path, text, message):
    tree(tmp_path, {"package.json": text})
    error = failure(tmp_path)
    assert str(error).startswith(message)
    assert error.where == "package.json"


def test_malformed_package_json_names_the_line(tmp_path):
    tree(tmp_path, {"package.json": '{\n  "name": "x"\n  "scripts": {}\n}\n'})
    assert "line 3" in str(failure(tmp_path))


# --- f. static, g. nothing -------------------------------------------------------------------------------------


def test_static_site(tmp_path):
    tree(tmp_path, {"index.html": "<h1>hi</h1>", "css/site.css": ""})
    plan = detect(tmp_path, {}, "web-app").plan
    assert (plan.strategy, plan.language, plan.static_root, plan.run) == ("static", "static", "", None)
    assert "index.html" in plan.reason


@pytest.mark.parametrize("ctype", ["scheduled-task", "manual-task", "worker"])
def test_static_site_cannot_be_a_task(tmp_path, ctype):
    tree(tmp_path, {"index.html": ""})
    assert ctype in str(failure(tmp_path, {}, ctype))


def test_nothing_to_build(tmp_path):
    tree(tmp_path, {"README.md": "# hi", "docs/index.html": ""})
    error = failure(tmp_path)
    assert str(error).startswith("cannot tell how to build the source: looked for a Procfile, a Dockerfile")
    assert str(tmp_path) not in str(error)  # the user's words, not the build machine's directory
    shown = detect_failure_shown(tmp_path)
    assert shown.startswith("cannot tell how to build services/api (source.path): "), shown
    for name in ("requirements.txt", "pyproject.toml", "package.json", "index.html", "build.run"):
        assert name in str(error)


def detect_failure_shown(source: Path) -> str:
    with pytest.raises(BuildFailure) as info:
        detect(source, {}, shown="services/api (source.path)")
    return str(info.value)


def test_missing_source_directory(tmp_path):
    assert "does not exist" in str(failure(tmp_path / "nope"))


# --- ports -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "port"), [
    ("gunicorn --bind 0.0.0.0:5000 app:app", 5000),
    ("gunicorn --bind=:8000 app:app", 8000),
    ("gunicorn -b [::]:8001 app:app", 8001),
    ("uvicorn main:app --host 0.0.0.0 --port 8000", 8000),
    ("uvicorn main:app --port=8002", 8002),
    ("serve -s build -p 3000", 3000),
    ("gunicorn --bind 0.0.0.0:$PORT app:app", None),
    ("uvicorn main:app --port $PORT", None),
    ("python app.py", None),
    ("x --port 99999", None),
    ("x --port", None),
    ("echo 'unbalanced --port 7000", 7000),
    (None, None),
])
def test_port_in_command(command, port):
    assert port_in_command(command) == port


# --- the tree is read safely -----------------------------------------------------------------------------------


def test_files_pointing_outside_the_source_are_refused(tmp_path):
    outside = tree(tmp_path / "outside", {"Procfile": "web: python x.py\n"})
    source = tree(tmp_path / "src", {"app.py": ""})
    (source / "Procfile").symlink_to(outside / "Procfile")
    error = failure(source)
    assert error.where == "Procfile" and "outside the source" in str(error)


def test_stray_links_out_of_the_source_are_skipped_when_scanning(tmp_path):
    outside = tree(tmp_path / "outside", {"evil.py": "app = Flask(__name__)\n", "pkg/__init__.py": ""})
    source = tree(tmp_path / "src", {"index.html": ""})
    (source / "evil.py").symlink_to(outside / "evil.py")
    (source / "pkg").symlink_to(outside / "pkg")
    assert detect(source, {}).plan.strategy == "static"


def test_huge_declaration_files_are_refused(tmp_path):
    tree(tmp_path, {"requirements.txt": "x\n" * 600_000})
    error = failure(tmp_path)
    assert error.where == "requirements.txt" and "larger than" in str(error)
