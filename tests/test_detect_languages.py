"""Detection of Go, PHP and Ruby sources, a Procfile's command as evidence of its language, and the one line a
source in a language that is not built here gets. Pure file reading: no toolchain runs."""

from __future__ import annotations

import pytest

from buildkit import detect_failure as failure
from buildkit import tree
from cellplane.build.detect import detect
from cellplane.build.languages.commands import language_of

MAIN = "package main\n\nfunc main() {}\n"


# --- Go ---------------------------------------------------------------------------------------------------------


def test_a_go_module_with_a_top_level_main_builds_it_into_bin(tmp_path):
    tree(tmp_path, {"go.mod": "module github.com/acme/orders/v2\n\ngo 1.22\ntoolchain go1.22.3\n", "main.go": MAIN,
                    "requirements.txt": "flask\n"})  # go.mod wins over Python files
    plan = detect(tmp_path, {}).plan
    assert (plan.strategy, plan.language, plan.run) == ("go", "go", "bin/orders")
    assert plan.build_commands == ["CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" -o bin/orders ."]
    assert plan.language_version == "1.22 (toolchain 1.22.3)"


def test_a_source_that_imports_c_is_built_with_cgo(tmp_path):
    cgo = 'package native\n\n// #include <x.h>\nimport "C"\n'
    tree(tmp_path, {"go.mod": "module m\n", "main.go": MAIN, "native/c.go": cgo})
    plan = detect(tmp_path, {}).plan
    assert plan.build_commands == ["CGO_ENABLED=1 go build -trimpath -ldflags=\"-s -w\" -o bin/m ."]
    assert plan.notes == ['native/c.go imports "C", so the binary is built with cgo (CGO_ENABLED=1)']


def test_a_go_module_without_a_main_package_says_where_to_put_one(tmp_path):
    tree(tmp_path, {"go.mod": "module m\n", "lib.go": "package lib\n"})
    error = failure(tmp_path)
    assert str(error).startswith("go.mod was found, but no main package") and error.where == "go.mod"


def test_a_go_task_with_a_procfile_builds_every_main_and_runs_the_procfiles_command(tmp_path):
    tree(tmp_path, {"go.mod": "module m\n", "cmd/a/main.go": MAIN, "cmd/b/main.go": MAIN, "Procfile": "job: bin/b\n"})
    plan = detect(tmp_path, {}, "scheduled-task").plan
    assert (plan.strategy, plan.language, plan.run) == ("procfile", "go", "bin/b")
    assert plan.build_commands == ["CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" -o bin/a ./cmd/a",
                                   "CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" -o bin/b ./cmd/b"]


def test_a_go_module_without_a_go_line_has_no_version(tmp_path):
    tree(tmp_path, {"go.mod": "module m\n", "main.go": MAIN})
    assert detect(tmp_path, {}).plan.language_version is None


# --- PHP --------------------------------------------------------------------------------------------------------


def test_php_with_a_public_front_controller_is_served_from_public(tmp_path):
    tree(tmp_path, {"composer.json": '{"require": {"php": ">=8.1", "ext-json": "*"}}', "public/index.php": "<?php\n",
                    "package.json": '{"scripts": {"start": "node x.js"}}'})  # a front-end's package.json
    plan = detect(tmp_path, {}).plan
    assert (plan.strategy, plan.language) == ("php", "php")
    assert plan.run == "php -S 0.0.0.0:$PORT -t public"
    assert plan.language_version == ">=8.1"
    assert plan.reason == "PHP app (composer.json): PHP's built-in server serves public on $PORT."


def test_php_without_composer_is_served_from_the_top(tmp_path):
    tree(tmp_path, {"index.php": "<?php echo 'hi';\n"})
    assert detect(tmp_path, {}).plan.run == "php -S 0.0.0.0:$PORT -t ."


def test_php_packages_from_packagist_fail_with_one_line_unless_vendored(tmp_path):
    tree(tmp_path, {"composer.json": '{"require": {"php": "^8.2", "slim/slim": "^4", "monolog/monolog": "^3"}}',
                    "index.php": "<?php\n"})
    error = failure(tmp_path)
    assert str(error) == ("composer.json requires slim/slim, monolog/monolog from Packagist, which the build machine "
                          "cannot reach; commit vendor/ (composer install, then add it) or remove the requirement")
    tree(tmp_path, {"vendor/autoload.php": "<?php\n"})
    assert "with its committed vendor/" in detect(tmp_path, {}).plan.reason


# --- Ruby and a Procfile's command as evidence ------------------------------------------------------------------


@pytest.mark.parametrize(("command", "language"), [
    ("php -S 0.0.0.0:$PORT -t public", "php"),
    ("bundle exec ruby app.rb -p $PORT", "ruby"),
    ("ruby app.rb", "ruby"),
    ("bundle exec rackup -p $PORT", "ruby"),
    ("java -jar target/app.jar", "java"),
    ("exec env FOO=1 python3.12 -m app", "python"),
    ("node server.js", "node"),
    ("./server --port $PORT", None),
])
def test_a_start_command_names_its_runtime(command, language):
    assert language_of(command) == language


@pytest.mark.parametrize(("procfile", "language"), [
    ("web: php -S 0.0.0.0:$PORT -t public\n", "php"),
    ("web: bundle exec ruby app.rb\n", "ruby"),
    ("web: ruby server.rb\n", "ruby"),
])
def test_a_procfiles_command_tells_the_language_when_the_files_do_not(tmp_path, procfile, language):
    tree(tmp_path, {"Procfile": procfile, "README.md": "hi"})
    plan = detect(tmp_path, {}).plan
    assert (plan.strategy, plan.language) == ("procfile", language)


def test_an_unknown_procfile_command_still_asks_for_build_language(tmp_path):
    tree(tmp_path, {"Procfile": "web: ./server\n"})
    error = failure(tmp_path)
    assert "neither the files in the source nor its commands tell" in str(error) and error.where == "build.language"


def test_ruby_gems_from_rubygems_fail_with_one_line_unless_vendored(tmp_path):
    tree(tmp_path, {"Procfile": "web: bundle exec ruby app.rb\n", "app.rb": "",
                    "Gemfile": "source 'https://rubygems.org'\ngem 'sinatra'\ngem \"puma\", '~> 6'\n"})
    error = failure(tmp_path)
    assert str(error).startswith("the Gemfile asks for sinatra, puma from rubygems.org, which the build machine "
                                 "cannot reach; vendor them"), error
    tree(tmp_path, {"vendor/cache/sinatra-4.0.0.gem": "", ".ruby-version": "ruby-3.3.1\n"})
    plan = detect(tmp_path, {}).plan
    assert (plan.language, plan.language_version) == ("ruby", "3.3.1")
    assert plan.build_commands == ["bundle config set --local path vendor/bundle", "bundle install --local"]


def test_a_ruby_app_without_a_procfile_is_told_to_add_one(tmp_path):
    tree(tmp_path, {"app.rb": "puts 1\n"})
    error = failure(tmp_path)
    assert str(error).startswith("app.rb makes this a Ruby app, and Ruby apps start from a Procfile")


# --- what is not built here -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("files", "named"), [
    ({"Orders.csproj": "<Project/>", "Program.cs": ""}, "Orders.csproj makes this a .NET (C#) project, and this "
                                                       "build machine has no .NET SDK"),
    ({"Ballerina.toml": "[package]\n"}, "Ballerina.toml makes this a Ballerina project"),
    ({"Cargo.toml": "[package]\n", "src/main.rs": ""}, "Cargo.toml makes this a Rust project"),
])
def test_a_language_that_is_not_built_here_fails_with_one_line_saying_what_would_work(tmp_path, files, named):
    tree(tmp_path, files)
    error = str(failure(tmp_path))
    assert error.startswith(named) and "set build.command and build.run" in error and "\n" not in error
    assert str(tmp_path) not in error


def test_a_ruby_script_beside_a_python_app_leaves_it_python(tmp_path):
    tree(tmp_path, {"Procfile": "web: gunicorn app:app\n", "requirements.txt": "gunicorn\n", "tools/x.rb": "",
                    "seed.rb": "puts 1\n"})
    assert detect(tmp_path, {}).plan.language == "python"
