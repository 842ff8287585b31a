"""A control plane restarted on the same data directory picks up where it was (what a second `make run` does)."""

from __future__ import annotations

from pathlib import Path

from liveserver import doc, start_server


def test_a_restart_keeps_data_keys_and_the_admin_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_server(data)
    try:
        token = first.admin_token
        api = first.client()
        assert api.post("/apply", json={"organization": "default", "documents": [
            doc("Project", "shop"), doc("Component", "api", project="shop")]}).status_code == 200
        path = "/organizations/default/projects/shop/components/api/config/DB_PASSWORD"
        assert api.put(path, json={"value": "kept-secret", "secret": True}).json()["changed"] is True
    finally:
        first.stop()
    files = {p.name: p.read_bytes() for p in data.iterdir() if p.suffix in (".key", ".token")}

    second = start_server(data)
    try:
        assert second.admin_token == token, "no new admin is made on a second start"
        assert "Created user 'admin'" not in second.log()
        assert {p.name: p.read_bytes() for p in data.iterdir() if p.suffix in (".key", ".token")} == files
        api = second.client()
        assert api.get("/organizations/default/projects/shop/components/api").status_code == 200
        # the same master key decrypts what the first run stored: the same value is no change
        assert api.put(path, json={"value": "kept-secret", "secret": True}).json()["changed"] is False
    finally:
        second.stop()
