"""An upload whose names the file system would refuse is a 422 naming the member, over real HTTP (was a 500)."""

from __future__ import annotations

import io
import tarfile

import pytest

from liveserver import LiveServer, doc

COMPONENT = "/organizations/default/projects/names/components/site"


def _tarball(name: str, linkname: str = "") -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        if linkname:
            info.type, info.linkname = tarfile.SYMTYPE, linkname
            tar.addfile(info)
        else:
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return data.getvalue()


@pytest.mark.parametrize(("name", "linkname", "shown"), [
    pytest.param("a" * 256, "", "'" + "a" * 80 + "'... (256 characters) has a path with a component of 256 bytes",
                 id="name-over-255-bytes"),
    pytest.param("/".join(["d" * 200] * 25), "", "has a path of 5024 bytes", id="path-over-path-max"),
    pytest.param("link", "x" * 5000, "'link' has a link target with a component of 5000 bytes", id="symlink-target"),
])
def test_an_upload_with_a_name_too_long_for_the_file_system_is_refused_naming_the_member(
        live_server: LiveServer, name: str, linkname: str, shown: str) -> None:
    c = live_server.client()
    r = c.post("/apply", json={"documents": [doc("Project", "names", organization="default"),
                                             doc("Component", "site", organization="default", project="names")]})
    assert r.status_code == 200, r.text
    r = c.post(f"{COMPONENT}/builds", content=_tarball(name, linkname), headers={"Content-Type": "application/gzip"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid" and shown in error["message"], error
    assert [d["field"] for d in error["details"]] == ["archive"]
    assert len(r.text) < 1000  # the member's name is cut, not echoed whole
    assert c.get(f"{COMPONENT}/builds").json()["items"] == []
    assert "Traceback" not in live_server.log()
