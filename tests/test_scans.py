"""Security scans over a build's result: secrets, Python static analysis, OSV dependency vulnerabilities, policy."""

from __future__ import annotations

import json
import logging
import subprocess
import zipfile
from pathlib import Path

import pytest

from cellplane.build import scans
from cellplane.build.osv import OsvDatabase, SemVer, cvss3_base_score, severity_from_score
from cellplane.build.plan import BuildFailure
from cellplane.build.scans import Finding, Policy, scan_dependencies, scan_python, scan_secrets, summarise
from treefiles import write

FIXTURES = Path(__file__).parent / "fixtures"
OSV_SAMPLE = FIXTURES / "osv" / "osv-sample.json"
LOCKS = FIXTURES / "scans"

# AWS's documented example key, assembled here so that this repository holds no literal key.
AWS_EXAMPLE_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"


@pytest.fixture(scope="module")
def db() -> OsvDatabase:
    return OsvDatabase.load(OSV_SAMPLE)


def ids(vulns) -> list[str]:
    return [v.id for v in vulns]


# -- secrets -------------------------------------------------------------------------------------------------------


def test_a_committed_aws_key_is_found_without_its_value(tmp_path, caplog):
    write(tmp_path, "app/config.py", f'import os\n\nREGION = "eu-west-1"\nAWS_ACCESS_KEY_ID = "{AWS_EXAMPLE_KEY}"\n')
    with caplog.at_level(logging.DEBUG):
        findings = scan_secrets(tmp_path)
    aws = [f for f in findings if f.rule == "AWS Access Key"]
    assert [(f.kind, f.file, f.line, f.severity) for f in aws] == [("secret", "app/config.py", 4, "critical")]
    serialised = json.dumps([f.to_dict() for f in findings])
    assert AWS_EXAMPLE_KEY not in serialised
    assert "IOSFODNN7" not in serialised
    assert AWS_EXAMPLE_KEY not in caplog.text


def test_a_clean_tree_has_no_secrets(tmp_path):
    write(tmp_path, "app.py", 'import os\n\nKEY = os.environ["API_KEY"]\nprint("hello", KEY is not None)\n')
    write(tmp_path, "README.md", "# Demo\n\nSet API_KEY before starting.\n")
    write(tmp_path, "package.json", '{"name": "demo", "version": "1.0.0"}\n')
    assert scan_secrets(tmp_path) == []


def test_skipped_directories_binary_and_large_files_are_not_scanned(tmp_path):
    line = f'key = "{AWS_EXAMPLE_KEY}"\n'
    for rel in (
        ".git/config",
        "node_modules/x/index.js",
        ".venv/lib/site.py",
        "__pycache__/m.py",
        "a/node_modules/b.js",
    ):
        write(tmp_path, rel, line)
    write(tmp_path, "blob.bin", b"\x00\x01" + line.encode())
    write(tmp_path, "big.txt", line + "x" * (scans.MAX_SCANNED_BYTES + 1))
    assert scan_secrets(tmp_path) == []


def test_other_high_confidence_keys_are_critical_and_keywords_high(tmp_path):
    header = "-----BEGIN " + "RSA PRIVATE KEY-----"
    write(tmp_path, "deploy/id_rsa", f"{header}\nMIIEowIBAAKCAQEAx\n-----END RSA PRIVATE KEY-----\n")
    write(tmp_path, "settings.py", 'DB_PASSWORD = "' + "c0rrect" + "-horse-battery" + '"\n')
    found = {(f.rule, f.file, f.severity) for f in scan_secrets(tmp_path)}
    assert ("Private Key", "deploy/id_rsa", "critical") in found
    assert ("Secret Keyword", "settings.py", "high") in found


def test_entropy_findings_in_lockfiles_are_dropped(tmp_path):
    digest = '{\n  "sha": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"\n}\n'
    for rel in ("deps.json", "deps.lock", "requirements-prod.lock", "package-lock.json"):
        write(tmp_path, rel, digest)
    assert [(f.rule, f.file) for f in scan_secrets(tmp_path)] == [("Hex High Entropy String", "deps.json")]


# -- Python static analysis ----------------------------------------------------------------------------------------

RISKY = "import subprocess\n\n\ndef run(x):\n    subprocess.call(x, shell=True)\n    return eval(x)\n"


def test_bandit_finds_shell_true_and_eval(tmp_path):
    write(tmp_path, "src/app.py", RISKY)
    write(tmp_path, "tests/test_app.py", "def test_it():\n    assert eval('1') == 1\n")
    write(tmp_path, ".venv/lib/site.py", RISKY)
    write(tmp_path, "web/node_modules/pkg/gyp.py", RISKY)
    findings = scan_python(tmp_path)
    by_rule = {(f.rule, f.file): f for f in findings}
    shell = by_rule["B602:subprocess_popen_with_shell_equals_true", "src/app.py"]
    assert (shell.kind, shell.severity, shell.line) == ("static-analysis", "high", 5)
    assert "shell=True" in shell.message
    evaluated = by_rule["B307:blacklist", "src/app.py"]
    assert (evaluated.severity, evaluated.line) == ("medium", 6)
    assert ("B307:blacklist", "tests/test_app.py") in by_rule  # tests are scanned too
    assert {f.file for f in findings} == {"src/app.py", "tests/test_app.py"}


def test_no_python_files_means_no_bandit_run(tmp_path, monkeypatch):
    write(tmp_path, "index.html", "<h1>hi</h1>\n")
    write(tmp_path, ".venv/lib/site.py", RISKY)  # not the app's code

    def boom(*args, **kwargs):
        raise AssertionError("bandit must not run")

    monkeypatch.setattr(subprocess, "run", boom)
    assert scan_python(tmp_path) == []


# -- OSV database --------------------------------------------------------------------------------------------------


def test_ranges_with_introduced_zero_and_fixed(db):
    assert ids(db.match("PyPI", "cellplane-vulnerable-demo", "1.0.0")) == ["CELLPLANE-TEST-0001"]
    assert ids(db.match("PyPI", "cellplane-vulnerable-demo", "0.0.1")) == ["CELLPLANE-TEST-0001"]
    assert db.match("PyPI", "cellplane-vulnerable-demo", "1.0.1") == []
    assert db.match("PyPI", "cellplane-vulnerable-demo", "2.0") == []
    [vuln] = db.match("PyPI", "cellplane-vulnerable-demo", "1.0.0")
    assert vuln.severity == "critical" and vuln.fixed == ("1.0.1",) and vuln.aliases == ("CVE-2099-10001",)


def test_withdrawn_entries_are_ignored(db):
    assert "CELLPLANE-TEST-0002" not in ids(db.match("PyPI", "cellplane-vulnerable-demo", "5.0"))
    assert "CELLPLANE-TEST-0002" not in ids(db.match("PyPI", "cellplane-vulnerable-demo", "0.1"))


def test_a_real_package_only_matches_old_versions(db):
    assert ids(db.match("PyPI", "flask", "0.12.2")) == ["GHSA-2c7v-qf8x-9m4h"]
    assert db.match("PyPI", "Flask", "0.12.3") == []
    assert db.match("PyPI", "flask", "3.0.3") == []
    [vuln] = db.match("PyPI", "flask", "0.10")
    assert vuln.severity == "high"  # database_specific wins over the CVSS vector (7.5, also high)


def test_pep_503_names(db):
    for name in ("Cellplane_Vulnerable.Demo", "CELLPLANE--vulnerable__demo", "cellplane.vulnerable.demo"):
        assert ids(db.match("PyPI", name, "1.0")) == ["CELLPLANE-TEST-0001"], name
    assert ids(db.match("PyPI", "cellplane-cvss-demo", "2.1")) == ["CELLPLANE-TEST-0003"]
    assert db.match("npm", "Express", "3.0.0") == []  # npm names are exact
    assert db.match("npm", "cellplane-vulnerable-demo", "1.0.0") == []  # and another ecosystem


def test_last_affected_is_inclusive_and_cvss_gives_severity(db):
    assert db.match("PyPI", "cellplane-cvss-demo", "1.9") == []
    assert ids(db.match("PyPI", "cellplane-cvss-demo", "2.0")) == ["CELLPLANE-TEST-0003"]
    assert ids(db.match("PyPI", "cellplane-cvss-demo", "2.3")) == ["CELLPLANE-TEST-0003"]
    assert ids(db.match("PyPI", "cellplane-cvss-demo", "2.3.0")) == ["CELLPLANE-TEST-0003"]
    assert db.match("PyPI", "cellplane-cvss-demo", "2.3.1") == []
    [vuln] = db.match("PyPI", "cellplane-cvss-demo", "2.2")
    assert vuln.severity == "medium" and vuln.fixed == ()  # CVSS 6.1, no fix known


def test_explicit_version_lists(db):
    assert ids(db.match("npm", "cellplane-left-pad-demo", "1.3.0")) == ["CELLPLANE-TEST-0004"]
    assert ids(db.match("npm", "cellplane-left-pad-demo", "1.3.1")) == ["CELLPLANE-TEST-0004"]
    assert db.match("npm", "cellplane-left-pad-demo", "1.3.2") == []
    assert db.match("npm", "cellplane-left-pad-demo", "1.2.9") == []
    assert db.match("npm", "cellplane-left-pad-demo", "1.3.1")[0].severity == "low"  # ecosystem_specific


def test_npm_semver_ranges_and_prereleases(db):
    assert ids(db.match("npm", "express", "3.21.2")) == ["GHSA-8xww-x3g3-6jcv"]
    assert db.match("npm", "express", "3.21.2")[0].severity == "medium"  # MODERATE
    assert db.match("npm", "express", "4.0.0") == []
    assert db.match("npm", "express", "4.18.2") == []
    assert ids(db.match("npm", "express", "4.0.0-rc4")) == ["GHSA-8xww-x3g3-6jcv"]  # pre-release of the fix
    scoped = "@cellplane/scoped-demo"
    assert db.match("npm", scoped, "2.0.0-alpha.1") == []
    assert ids(db.match("npm", scoped, "2.0.0-alpha.10")) == ["CELLPLANE-TEST-0005"]  # numeric, not lexical
    assert ids(db.match("npm", scoped, "2.0.0-beta.3")) == ["CELLPLANE-TEST-0005"]
    assert db.match("npm", scoped, "2.0.0-rc.1") == []
    assert db.match("npm", scoped, "2.0.0") == []
    assert db.match("npm", scoped, "1.9.9") == []


def test_semver_precedence():
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
             "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "2.0.0"]  # fmt: skip
    parsed = [SemVer.parse(v) for v in order]
    assert parsed == sorted(reversed(parsed))
    assert SemVer.parse("v1.2.3+build.7") == SemVer.parse("1.2.3")
    for bad in ("1.2", "01.2.3", "latest", "file:../x", ""):
        with pytest.raises(ValueError):
            SemVer.parse(bad)


def test_unparsable_versions_skip_the_range_without_crashing(db):
    odd = "cellplane-odd-versions"
    assert db.match("PyPI", odd, "1.0") == []  # the range with "not a version!" says nothing
    assert ids(db.match("PyPI", odd, "0.4")) == ["CELLPLANE-TEST-0006"]  # the other range still applies
    assert db.match("PyPI", odd, "totally-bogus") == []
    assert db.match("PyPI", "cellplane-vulnerable-demo", "not.a.version!") == []
    assert db.match("npm", "express", "git+https://example.invalid/express.git") == []


def test_aliases_of_one_flaw_are_reported_once():
    common = {
        "affected": [{"package": {"ecosystem": "PyPI", "name": "demo"}, "versions": ["1.0"]}],
    }
    local = OsvDatabase(
        [
            {"id": "PYSEC-2099-1", "aliases": ["GHSA-xxxx-yyyy-zzzz"], **common},
            {
                "id": "GHSA-xxxx-yyyy-zzzz",
                "aliases": ["PYSEC-2099-1"],
                "database_specific": {"severity": "HIGH"},
                **common,
            },
        ]
    )
    [vuln] = local.match("PyPI", "demo", "1.0")
    assert vuln.id == "GHSA-xxxx-yyyy-zzzz" and vuln.severity == "high" and "PYSEC-2099-1" in vuln.aliases


def test_a_single_record_file_a_zip_and_a_directory_load(tmp_path):
    records = json.loads(OSV_SAMPLE.read_text())
    (tmp_path / "PyPI").mkdir()
    with zipfile.ZipFile(tmp_path / "PyPI" / "all.zip", "w") as archive:
        for record in records:
            if record["affected"][0]["package"]["ecosystem"] == "PyPI":
                archive.writestr(f"{record['id']}.json", json.dumps(record))
    zipped = OsvDatabase.load(tmp_path / "PyPI" / "all.zip")
    assert ids(zipped.match("PyPI", "cellplane-vulnerable-demo", "1.0")) == ["CELLPLANE-TEST-0001"]
    assert zipped.match("npm", "express", "3.0.0") == []

    express = next(r for r in records if r["id"] == "GHSA-8xww-x3g3-6jcv")
    write(tmp_path, "npm/nested/express.json", json.dumps(express))
    write(tmp_path, "notes.txt", "not part of the database")
    single = OsvDatabase.load(tmp_path / "npm" / "nested" / "express.json")
    assert ids(single.match("npm", "express", "3.0.0")) == ["GHSA-8xww-x3g3-6jcv"]
    both = OsvDatabase.load(tmp_path)
    assert len(both) == 5  # 4 PyPI records (the withdrawn one left out) and express
    assert ids(both.match("npm", "express", "3.0.0")) == ["GHSA-8xww-x3g3-6jcv"]
    assert ids(both.match("PyPI", "flask", "0.1")) == ["GHSA-2c7v-qf8x-9m4h"]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("broken.json", b'{"id": "X", ', "not valid JSON"),
        ("list.json", b'[{"id": "A"}, {"summary": "no id"}]', "entry 1"),
        ("scalar.json", b"42", "not an OSV vulnerability"),
        ("affected.json", b'{"id": "A", "affected": {}}', "affected is not a list"),
        ("broken.zip", b"PK\x03\x04 definitely not a zip", "not a readable zip"),
    ],
)
def test_a_broken_database_file_is_a_build_failure(tmp_path, name, content, reason):
    path = write(tmp_path, name, content)
    with pytest.raises(BuildFailure) as e:
        OsvDatabase.load(path)
    assert str(e.value).startswith(f"OSV database {path}: ") and reason in str(e.value)
    assert e.value.where == str(path)


def test_a_broken_member_of_a_zip_or_a_missing_path_is_a_build_failure(tmp_path):
    with zipfile.ZipFile(tmp_path / "all.zip", "w") as archive:
        archive.writestr("GOOD.json", json.dumps({"id": "GOOD"}))
        archive.writestr("BAD.json", "{nope")
    with pytest.raises(BuildFailure, match=r"all\.zip!BAD\.json: not valid JSON"):
        OsvDatabase.load(tmp_path / "all.zip")
    with pytest.raises(BuildFailure, match="no such file or directory") as e:
        OsvDatabase.load(tmp_path / "missing")
    assert e.value.where == str(tmp_path / "missing")


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
        ("CVSS:3.1/AV:N/AC:H/PR:L/UI:R/S:C/C:L/I:N/A:N", 3.0),
        ("CVSS:3.1/AV:N/AC:L/PR:H/UI:R/S:C/C:L/I:L/A:N", 4.8),
        ("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:C/C:L/I:L/A:N", 5.5),
        ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N", 0.0),
    ],
)
def test_cvss3_base_scores(vector, score):
    assert cvss3_base_score(vector) == score


def test_cvss_ratings_and_bad_vectors():
    assert [severity_from_score(s) for s in (10.0, 9.0, 8.9, 7.0, 6.9, 4.0, 3.9, 0.1, 0.0)] == [
        "critical", "critical", "high", "high", "medium", "medium", "low", "low", "unknown"
    ]  # fmt: skip
    for bad in ("CVSS:2.0/AV:N", "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:X/C:H/I:H/A:H"):
        with pytest.raises(ValueError):
            cvss3_base_score(bad)


# -- dependency scan -----------------------------------------------------------------------------------------------


def test_requirements_pins_are_parsed_robustly():
    pins = scans.parse_requirements_pins((LOCKS / "requirements.lock").read_text())
    assert pins == [
        ("blinker", "1.8.2", 9),
        ("Cellplane_Vulnerable.Demo", "1.0.0", 13),
        ("cellplane-cvss-demo", "2.1", 14),
        ("cellplane-odd-versions", "0.4", 16),
        ("flask", "3.0.3", 17),
        ("six", "1.16.0", 22),
    ]


def test_vulnerable_python_pins_are_findings(db):
    findings = scan_dependencies(db, LOCKS / "requirements.lock", None)
    assert [(f.rule, f.severity, f.line) for f in findings] == [
        ("CELLPLANE-TEST-0001", "critical", 13),
        ("CELLPLANE-TEST-0003", "medium", 14),
        ("CELLPLANE-TEST-0006", "unknown", 16),
    ]
    first = findings[0]
    assert first.kind == "vulnerability" and first.file == "requirements.lock"
    assert "Cellplane_Vulnerable.Demo@1.0.0" in first.message and "fixed in 1.0.1" in first.message
    assert "Remote code execution" in first.message
    assert "no fixed version known" in findings[1].message


def test_npm_locks_nested_paths_scopes_and_v1(db):
    pins = scans.parse_package_lock((LOCKS / "package-lock.json").read_text())
    assert ("express", "3.21.2", 34) in pins and ("express", "4.18.2", 24) in pins
    assert ("@cellplane/scoped-demo", "2.0.0-beta.3", 16) in pins
    assert all(name != "workspace-lib" for name, _, _ in pins)  # links and workspaces are the app's own
    findings = scan_dependencies(db, None, LOCKS / "package-lock.json")
    assert sorted((f.rule, f.line, f.file) for f in findings) == [
        ("CELLPLANE-TEST-0004", 20, "package-lock.json"),
        ("CELLPLANE-TEST-0005", 16, "package-lock.json"),
        ("GHSA-8xww-x3g3-6jcv", 34, "package-lock.json"),
    ]
    express = next(f for f in findings if f.rule.startswith("GHSA"))
    assert "express@3.21.2" in express.message and "fixed in 4.0.0" in express.message

    v1 = scan_dependencies(db, None, LOCKS / "package-lock-v1.json")
    assert sorted(f.message.split(":")[0] for f in v1) == ["express@3.0.0", "express@3.21.2"]  # incl. an alias


def test_dependency_scan_without_a_database_or_with_a_broken_lock(db, tmp_path):
    assert scan_dependencies(None, LOCKS / "requirements.lock", LOCKS / "package-lock.json") == []
    broken = write(tmp_path, "package-lock.json", "[1, 2")
    with pytest.raises(BuildFailure, match=r"package-lock\.json: not a valid package-lock\.json") as e:
        scan_dependencies(db, None, broken)
    assert e.value.where == str(broken)


# -- policy --------------------------------------------------------------------------------------------------------


def finding(kind: str, severity: str) -> Finding:
    return Finding(kind, "rule", severity, "file", 1, "message")


ALL_SEVERITIES = ("critical", "high", "medium", "low", "unknown")


def test_the_default_policy():
    policy = Policy.from_spec(None)
    assert policy == Policy() == Policy.from_spec({}) == Policy.from_spec({"failOn": {}})
    vulns = [finding("vulnerability", s) for s in ALL_SEVERITIES]
    assert [f.severity for f in policy.blocking(vulns)] == ["critical"]
    assert policy.blocking([finding("static-analysis", "high")]) == []
    assert len(policy.blocking([finding("secret", "high"), finding("test", "high")])) == 2
    assert policy.blocking([finding("something-else", "critical")]) == []


@pytest.mark.parametrize(
    ("threshold", "blocked"),
    [
        ("critical", ["critical"]),
        ("high", ["critical", "high"]),
        ("medium", ["critical", "high", "medium"]),
        ("low", ["critical", "high", "medium", "low", "unknown"]),
        ("none", []),
    ],
)
def test_thresholds(threshold, blocked):
    policy = Policy.from_spec({"failOn": {"vulnerabilities": threshold, "staticAnalysis": threshold}})
    for kind in ("vulnerability", "static-analysis"):
        assert [f.severity for f in policy.blocking([finding(kind, s) for s in ALL_SEVERITIES])] == blocked


def test_policy_switches_and_validation():
    policy = Policy.from_spec({"failOn": {"secrets": False, "tests": False, "staticAnalysis": "HIGH"}, "other": 1})
    assert policy == Policy(secrets=False, vulnerabilities="critical", static_analysis="high", tests=False)
    assert policy.blocking([finding("secret", "critical"), finding("test", "high")]) == []
    with pytest.raises(BuildFailure, match=r"failOn\.vulnerabilities: expected one of") as e:
        Policy.from_spec({"failOn": {"vulnerabilities": "severe"}})
    assert e.value.where == "failOn.vulnerabilities"
    with pytest.raises(BuildFailure, match=r"failOn\.secrets: expected true or false"):
        Policy.from_spec({"failOn": {"secrets": "yes"}})
    with pytest.raises(BuildFailure, match="unknown setting 'static_analysis'"):
        Policy.from_spec({"failOn": {"static_analysis": "high"}})
    with pytest.raises(BuildFailure, match="failOn: expected a mapping"):
        Policy.from_spec({"failOn": ["secrets"]})


def test_summarise():
    findings = [finding("secret", "critical"), finding("vulnerability", "low"), finding("vulnerability", "critical")]
    assert summarise(findings) == {
        "total": 3,
        "bySeverity": {"critical": 2, "low": 1},
        "byKind": {"secret": {"critical": 1}, "vulnerability": {"critical": 1, "low": 1}},
    }
    assert summarise([]) == {"total": 0, "bySeverity": {}, "byKind": {}}
    assert finding("test", "high").to_dict() == {
        "kind": "test", "rule": "rule", "severity": "high", "file": "file", "line": 1, "message": "message"
    }  # fmt: skip
