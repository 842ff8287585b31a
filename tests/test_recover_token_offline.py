"""`cellplane admin recover-token` reads the control plane's token key itself, with no control plane running
(controlplane/recovery.py): a key it cannot read or decode is one error line that says which and what to do, and
the database is left alone."""

from __future__ import annotations

from pathlib import Path

from cellplane.controlplane.platform import Platform
from liveserver import fails, ok, run_cli


def _data_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / "cp"
    Platform(data_dir).close()  # a first start: database, token.key, bootstrap admin
    return data_dir


def test_recover_token_says_when_the_token_key_is_missing_or_not_a_key_and_works_from_the_environment(
        tmp_path: Path) -> None:
    data_dir = _data_dir(tmp_path)
    key = (data_dir / "token.key").read_text()

    (data_dir / "token.key").unlink()
    line = fails(run_cli(None, "admin", "recover-token", "--data-dir", str(data_dir)))
    assert f"{data_dir / 'token.key'}: cannot read the token key" in line and "CELLPLANE_TOKEN_KEY" in line

    (data_dir / "token.key").write_text("AAAA\n")  # base64, 3 bytes
    line = fails(run_cli(None, "admin", "recover-token", "--data-dir", str(data_dir)))
    assert "the token key is not valid: a key must be 32 bytes" in line

    token = ok(run_cli(None, "admin", "recover-token", "--data-dir", str(data_dir),
                       env={"CELLPLANE_TOKEN_KEY": key.strip()})).stdout.strip()
    assert token.startswith("cpt_")
