"""Packing trees reproducibly, and refusing hostile uploads before writing anything."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from cellplane.build.archive import DEFAULT_EXCLUDES, UploadLimits, default_exclude, exclude_matching, pack, unpack
from cellplane.errors import InvalidError

# ------------------------------------------------------------------------------------------ helpers


def write(path: Path, text: str = "x", mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def sample_tree(root: Path) -> Path:
    write(root / "README.md", "hello\n")
    write(root / "bin" / "run", "#!/bin/sh\necho hi\n", mode=0o775)
    write(root / "src" / "app" / "main.py", "print('hi')\n")
    write(root / "src" / "app" / "data.bin", "\x00\x01" * 1000)
    (root / "empty").mkdir()
    (root / "src" / "link.py").symlink_to("app/main.py")
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def names(archive: Path) -> list[str]:
    with tarfile.open(archive, "r:gz") as tar:
        return tar.getnames()


def reg(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def entry(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return entry(name, tarfile.SYMTYPE, target)


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return entry(name, tarfile.LNKTYPE, target)


def directory(name: str) -> tuple[tarfile.TarInfo, None]:
    info, _ = entry(name, tarfile.DIRTYPE)
    info.mode = 0o755
    return info, None


def make_tgz(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A .tar.gz holding exactly ``members``, written as given (no name sanitising)."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.fixture
def place(tmp_path: Path) -> dict[str, Path]:
    """dest (not yet created), a sentinel directory next to it, and where to put the archive."""
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    return {"dest": tmp_path / "dest", "sentinel": sentinel, "archive": tmp_path / "upload.tar.gz"}


def assert_rejected(place: dict[str, Path], members: list, fragment: str, limits: UploadLimits | None = None) -> None:
    archive = make_tgz(place["archive"], members)
    with pytest.raises(InvalidError) as caught:
        unpack(archive, place["dest"], limits or UploadLimits())
    err = caught.value
    assert fragment in err.message, err.message
    assert err.status == 422
    assert [d.field for d in err.details] == ["archive"]
    assert list(place["sentinel"].iterdir()) == [], "something was written outside dest"
    assert not place["dest"].exists(), "something was written to dest"


# --------------------------------------------------------------------------------------------- pack


def test_round_trip(tmp_path: Path) -> None:
    root = sample_tree(tmp_path / "src")
    archive = tmp_path / "out.tar.gz"
    pack(root, archive)
    dest = tmp_path / "dest"
    assert unpack(archive, dest) == 4
    assert (dest / "README.md").read_text() == "hello\n"
    assert (dest / "src" / "app" / "data.bin").read_bytes() == (root / "src" / "app" / "data.bin").read_bytes()
    assert (dest / "empty").is_dir()
    assert os.readlink(dest / "src" / "link.py") == "app/main.py"
    assert (dest / "src" / "link.py").read_text() == "print('hi')\n"
    assert os.access(dest / "bin" / "run", os.X_OK)
    assert not os.access(dest / "README.md", os.X_OK)


def test_members_are_relative_sorted_and_normalised(tmp_path: Path) -> None:
    root = sample_tree(tmp_path / "src")
    os.mkfifo(root / "a-fifo")
    archive = tmp_path / "out.tar.gz"
    pack(root, archive)
    assert names(archive) == ["README.md", "bin", "bin/run", "empty", "src", "src/app", "src/app/data.bin",
                              "src/app/main.py", "src/link.py"]
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")
            expected = {"bin": 0o755, "bin/run": 0o755, "empty": 0o755, "src": 0o755, "src/app": 0o755,
                        "src/link.py": 0o777}.get(member.name, 0o644)
            assert member.mode == expected, member.name
    with gzip.open(archive) as gz:
        gz.read(1)
    assert archive.read_bytes()[4:8] == b"\x00\x00\x00\x00"  # gzip header mtime


def test_packs_are_byte_identical(tmp_path: Path) -> None:
    root = sample_tree(tmp_path / "src")
    first, second = tmp_path / "one.tar.gz", tmp_path / "two.tar.gz"
    pack(root, first)
    for path in root.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (1_000_000, 1_000_000))
    (root / "README.md").chmod(0o664)
    pack(root, second)
    assert first.read_bytes() == second.read_bytes()
    assert sha256(first) == sha256(second)


def test_not_reproducible_keeps_times(tmp_path: Path) -> None:
    root = tmp_path / "src"
    os.utime(write(root / "f.txt"), (1_000_000, 1_000_000))
    archive = tmp_path / "out.tar.gz"
    pack(root, archive, reproducible=False)
    with tarfile.open(archive, "r:gz") as tar:
        assert tar.getmember("f.txt").mtime == 1_000_000


def test_excluded_paths_are_not_packed(tmp_path: Path) -> None:
    root = tmp_path / "src"
    for rel in (".git/HEAD", "node_modules/x/index.js", ".venv/bin/python", "venv/lib/x.py", "pkg/__pycache__/m.pyc",
                "pkg/m.pyc", "pkg/.DS_Store", "pkg/mod.py", ".gitignore", "gitnotes.txt"):
        write(root / rel)
    archive = tmp_path / "out.tar.gz"
    pack(root, archive, exclude=default_exclude)
    assert names(archive) == [".gitignore", "gitnotes.txt", "pkg", "pkg/mod.py"]
    assert ".git" in DEFAULT_EXCLUDES
    pack(root, archive, exclude=exclude_matching(["pkg"]))
    assert "pkg" not in names(archive)
    assert ".git/HEAD" in names(archive)


def test_dest_inside_root_is_not_packed_into_itself(tmp_path: Path) -> None:
    root = tmp_path / "src"
    write(root / "a.txt")
    archive = root / "out.tar.gz"
    pack(root, archive)
    pack(root, archive)
    assert names(archive) == ["a.txt"]
    assert sorted(p.name for p in root.iterdir()) == ["a.txt", "out.tar.gz"]


# --------------------------------------------------------------------------------- unpack: rejected


@pytest.mark.parametrize(("members", "fragment"), [
    pytest.param([reg("ok.txt"), reg("/abs/evil")], "'/abs/evil' has an absolute path", id="absolute"),
    pytest.param([reg("../evil")], "'../evil' leaves the upload's tree", id="dotdot"),
    pytest.param([reg("a/../../sentinel/evil")], "leaves the upload's tree", id="dotdot-inside"),
    pytest.param([reg("ok"), entry("dev", tarfile.CHRTYPE)], "'dev' is a device file", id="chardev"),
    pytest.param([entry("blk", tarfile.BLKTYPE)], "'blk' is a device file", id="blockdev"),
    pytest.param([entry("pipe", tarfile.FIFOTYPE)], "'pipe' is a fifo", id="fifo"),
    pytest.param([sym("up", "../sentinel")], "'up' is a symlink to '../sentinel', which leaves", id="symlink-up"),
    pytest.param([sym("d/up", "../../x")], "which leaves", id="symlink-up-nested"),
    pytest.param([sym("d/b", ".."), sym("d/c", "b/..")], "'d/c' is a symlink to 'b/..'", id="symlink-chain"),
    pytest.param([sym("d/c", "b/.."), sym("d/b", "..")], "'d/c' is a symlink to 'b/..'", id="symlink-chain-later"),
    pytest.param([sym("a", "b"), sym("b", "a")], "'a' is a symlink to 'b', which loops", id="symlink-loop"),
    pytest.param([sym("a", "b"), reg("a/x")], "'a/x' goes through the symlink 'a'", id="write-through-symlink"),
    pytest.param([sym("a", ".."), reg("a/../../x")], "leaves the upload's tree", id="symlink-dotdot"),
    pytest.param([reg("a/x"), sym("a", "b")], "'a' duplicates an earlier member", id="symlink-over-dir"),
    pytest.param([reg("f"), reg("f/x")], "'f/x' goes through the file 'f'", id="write-through-file"),
    pytest.param([reg("f"), reg("f", b"again")], "'f' duplicates an earlier member", id="duplicate"),
    pytest.param([hard("h", "/etc/passwd")], "'h' is a hard link to '/etc/passwd'", id="hardlink-absolute"),
    pytest.param([hard("h", "../sentinel/x")], "outside the upload's tree", id="hardlink-up"),
    pytest.param([hard("h", "later"), reg("later")], "which is not an earlier file", id="hardlink-forward"),
    pytest.param([directory("d"), hard("h", "d")], "which is not an earlier file", id="hardlink-dir"),
    pytest.param([sym("s", "f"), reg("f"), hard("h", "s")], "which is not an earlier file", id="hardlink-symlink"),
    pytest.param([reg("file"), entry(".", tarfile.REGTYPE)], "'.' names the top of the tree", id="top-not-dir"),
])
def test_malicious_members_are_rejected(place: dict[str, Path], members: list, fragment: str) -> None:
    assert_rejected(place, members, fragment)


def test_absolute_symlink_into_sentinel_is_rejected(place: dict[str, Path]) -> None:
    target = str(place["sentinel"])
    assert_rejected(place, [sym("a", target), reg("a/x")], f"'a' is a symlink to the absolute path {target!r}")


def test_nul_in_a_name_is_rejected(place: dict[str, Path]) -> None:
    info, data = reg("evil")
    info.pax_headers = {"path": "ok\x00/../../sentinel/x"}
    assert_rejected(place, [(info, data)], "NUL")


LONG_PATH = "/".join(["d" * 200] * 16)  # 3215 bytes, each component well under 255


@pytest.mark.parametrize(("members", "fragment"), [
    pytest.param([reg("a" * 256)], "with a component of 256 bytes (at most 255)", id="long-name"),
    pytest.param([reg("é" * 128)], "with a component of 256 bytes", id="long-name-in-utf-8-bytes"),
    pytest.param([directory("d" * 300 + "/")], "with a component of 300 bytes", id="long-directory-name"),
    pytest.param([reg(f"src/{'b' * 300}/x")], "with a component of 300 bytes", id="long-name-inside-a-path"),
    pytest.param([reg(LONG_PATH)], "has a path of 3215 bytes (at most 3072)", id="long-path"),
    pytest.param([reg("/".join(["d" * 200] * 25))], "has a path of 5024 bytes", id="path-over-linux-path-max"),
    pytest.param([sym("s", "x" * 256)], "'s' has a link target with a component of 256 bytes", id="symlink-name"),
    pytest.param([sym("s", "x" * 5000)], "'s' has a link target with a component of 5000", id="symlink-huge"),
    pytest.param([sym("s", LONG_PATH)], "'s' has a link target of 3215 bytes", id="symlink-long-path"),
    pytest.param([reg("f"), hard("h", "./" * 1600 + "f")], "'h' has a link target of 3201 bytes", id="hardlink"),
])
def test_names_the_file_system_would_refuse_are_rejected(place: dict[str, Path], members: list,
                                                          fragment: str) -> None:
    assert_rejected(place, members, fragment)


def test_a_long_name_is_cut_in_the_error(place: dict[str, Path]) -> None:
    with pytest.raises(InvalidError) as caught:
        unpack(make_tgz(place["archive"], [reg("n" * 100_000)]), place["dest"])
    message = caught.value.message
    assert message.startswith("archive member '" + "n" * 80 + "'... (100000 characters) has a")
    assert len(message) < 200 and len(caught.value.details[0].problem) < 200


def test_names_and_paths_at_the_limits_unpack(place: dict[str, Path]) -> None:
    longest = "/".join(["d" * 255] * 11 + ["e" * 254, "f"])  # 3072 bytes, components of 255 at most
    assert len(longest) == 3072
    assert unpack(make_tgz(place["archive"], [reg(longest), sym("s", longest)]), place["dest"]) == 1
    assert (place["dest"] / longest).read_bytes() == b"x" and (place["dest"] / "s").read_bytes() == b"x"


def test_rejection_leaves_an_existing_empty_dest_empty(place: dict[str, Path]) -> None:
    place["dest"].mkdir()
    archive = make_tgz(place["archive"], [reg("good.txt"), reg("../evil")])
    with pytest.raises(InvalidError, match=r"'\.\./evil' leaves"):
        unpack(archive, place["dest"])
    assert list(place["dest"].iterdir()) == []


def test_error_shape(place: dict[str, Path]) -> None:
    archive = make_tgz(place["archive"], [reg("../evil")])
    with pytest.raises(InvalidError) as caught:
        unpack(archive, place["dest"])
    assert caught.value.as_dict() == {"error": {
        "code": "invalid",
        "message": "archive member '../evil' leaves the upload's tree",
        "details": [{"field": "archive", "problem": "member '../evil' leaves the upload's tree"}],
    }}


# ------------------------------------------------------------------------------------ unpack: limits


def test_unpacked_size_limit(place: dict[str, Path]) -> None:
    members = [reg("a", b"x" * 600), reg("b", b"y" * 600)]
    assert_rejected(place, members, "unpacks to more than 1000 bytes (at member 'b')", UploadLimits(max_unpacked=1000))


def test_member_count_limit(place: dict[str, Path]) -> None:
    members = [reg(f"f{i}") for i in range(6)]
    assert_rejected(place, members, "more than 5 members", UploadLimits(max_members=5))


def test_compressed_size_limit(place: dict[str, Path]) -> None:
    members = [reg("random", os.urandom(4096))]
    assert_rejected(place, members, "more than the 1024 allowed", UploadLimits(max_compressed=1024))


def test_decompression_bomb_in_headers(place: dict[str, Path]) -> None:
    """A few KiB of gzip that inflates to megabytes of pax header, declaring no data at all."""
    info, data = reg("small")
    info.pax_headers = {"comment": "A" * (8 * 1024 * 1024)}
    archive = make_tgz(place["archive"], [(info, data)])
    assert archive.stat().st_size < 100_000
    with pytest.raises(InvalidError, match="decompression bomb"):
        unpack(archive, place["dest"])
    assert not place["dest"].exists()


def test_limits_allow_exactly_the_limit(place: dict[str, Path]) -> None:
    archive = make_tgz(place["archive"], [reg("a", b"x" * 500), reg("b", b"y" * 500)])
    assert unpack(archive, place["dest"], UploadLimits(max_unpacked=1000, max_members=2)) == 2


# ---------------------------------------------------------------------------------- unpack: not tar


def test_not_gzip(place: dict[str, Path]) -> None:
    place["archive"].write_text("just some text, not an archive\n")
    with pytest.raises(InvalidError, match="not a gzip'd tar archive") as caught:
        unpack(place["archive"], place["dest"])
    assert caught.value.details[0].field == "archive"
    assert not place["dest"].exists()


def test_gzip_but_not_tar(place: dict[str, Path]) -> None:
    place["archive"].write_bytes(gzip.compress(b"hello, this is not a tar stream\n" * 100))
    with pytest.raises(InvalidError, match="not a valid gzip'd tar archive"):
        unpack(place["archive"], place["dest"])
    assert not place["dest"].exists()


def test_truncated_gzip(place: dict[str, Path], tmp_path: Path) -> None:
    good = make_tgz(tmp_path / "good.tar.gz", [reg("a", os.urandom(20_000))])
    place["archive"].write_bytes(good.read_bytes()[:-2000])
    with pytest.raises(InvalidError, match="not a valid gzip'd tar archive"):
        unpack(place["archive"], place["dest"])
    assert not place["dest"].exists()


# ------------------------------------------------------------------------------------- unpack: misc


def test_dest_must_be_empty(place: dict[str, Path]) -> None:
    write(place["dest"] / "existing")
    archive = make_tgz(place["archive"], [reg("a")])
    with pytest.raises(ValueError, match="not empty"):
        unpack(archive, place["dest"])


def test_benign_archive_with_dot_prefix_links_and_redeclared_dirs(place: dict[str, Path]) -> None:
    members = [directory("."), directory("./d"), reg("./d/f", b"data"), directory("d"), sym("d/up", "../top"),
               reg("top", b"top"), hard("d/h", "d/f"), sym("d/sub/back", "../f")]
    archive = make_tgz(place["archive"], members)
    dest = place["dest"]
    assert unpack(archive, dest) == 3
    assert (dest / "d" / "up").read_text() == "top"
    assert (dest / "d" / "h").read_bytes() == b"data"
    assert os.stat(dest / "d" / "h").st_ino == os.stat(dest / "d" / "f").st_ino
    assert (dest / "d" / "sub" / "back").read_bytes() == b"data"


def test_modes_are_sanitised(place: dict[str, Path]) -> None:
    info, data = reg("setuid", b"#!/bin/sh\n")
    info.mode = 0o4777
    archive = make_tgz(place["archive"], [(info, data)])
    unpack(archive, place["dest"])
    mode = stat.S_IMODE(os.stat(place["dest"] / "setuid").st_mode)
    assert mode & stat.S_ISUID == 0
    assert mode & 0o022 == 0
