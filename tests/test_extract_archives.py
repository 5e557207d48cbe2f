"""Hostile-archive behaviour of ingest.archives and ingest.sevenzip: nothing is extracted, every
member is accounted for, and bad input becomes a stable reason instead of an exception."""

import io
import os
import tarfile
import zipfile

import py7zr
import pytest

from ingest.archive_members import ArchiveLimits, safe_member_name
from ingest.archives import archive_stem, iter_archive
from ingest.safeio import SafeIOError

SMALL = ArchiveLimits(max_member_bytes=1000, max_total_bytes=100_000)


def _tar_add(tar, name, data=b"", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _outcomes(path, limits=SMALL, select=None):
    """[(name, data-or-reason)] for every member, reading each readable member."""
    out = []
    for m in iter_archive(path, limits, select):
        if m.reason:
            out.append((m.name, m.reason))
            continue
        try:
            out.append((m.name, m.read()))
        except SafeIOError as exc:
            out.append((m.name, exc.reason))
    return out


@pytest.fixture
def hostile_tar(tmp_path):
    path = tmp_path / "repo.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _tar_add(tar, "repo/ok.py", b"print(1)\n")
        _tar_add(tar, "../escape.py", b"evil")
        _tar_add(tar, "/etc/abs.py", b"evil")
        _tar_add(tar, "repo/sub/../../up.py", b"evil")
        _tar_add(tar, "repo/link", kind=tarfile.SYMTYPE, link="/etc/passwd")
        _tar_add(tar, "repo/hard", kind=tarfile.LNKTYPE, link="repo/ok.py")
        _tar_add(tar, "repo/dev", kind=tarfile.CHRTYPE)
        _tar_add(tar, "repo/big.txt", b"x" * 5000)
        _tar_add(tar, "repo/last.py", b"x = 2\n")
    return path


def test_tar_unsafe_members_are_reported_not_extracted(hostile_tar, tmp_path):
    before = sorted(os.listdir(tmp_path))
    got = _outcomes(hostile_tar)
    assert got == [
        ("repo/ok.py", b"print(1)\n"),
        ("../escape.py", "unsafe_path"),
        ("/etc/abs.py", "unsafe_path"),
        ("repo/sub/../../up.py", "unsafe_path"),
        ("repo/link", "unsafe_path"),
        ("repo/hard", "unsafe_path"),
        ("repo/dev", "unsafe_path"),
        ("repo/big.txt", "too_large"),
        ("repo/last.py", b"x = 2\n"),
    ]
    assert sorted(os.listdir(tmp_path)) == before  # nothing written next to the archive
    assert not os.path.exists("/etc/abs.py") and not (tmp_path.parent / "escape.py").exists()


def test_tar_total_cap_is_a_bomb(hostile_tar):
    got = _outcomes(hostile_tar, ArchiveLimits(max_member_bytes=10_000, max_total_bytes=3000))
    assert got[-1] == ("", "bomb")
    assert ("repo/last.py", b"x = 2\n") not in got


def test_tar_declared_small_but_compressed_bomb(tmp_path):
    """A member of zeros that is tiny compressed but over the member cap once expanded."""
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _tar_add(tar, "zeros.txt", bytes(2_000_000))
        _tar_add(tar, "after.txt", b"still read")
    assert path.stat().st_size < 10_000
    roomy = ArchiveLimits(max_member_bytes=1000, max_total_bytes=10_000_000)
    assert _outcomes(path, roomy) == [("zeros.txt", "too_large"), ("after.txt", b"still read")]
    assert _outcomes(path, SMALL) == [("", "bomb")]  # 2 MB expanded > the 100 kB archive cap


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_tar_gz(hostile_tar, tmp_path, cut):
    blob = hostile_tar.read_bytes()
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(blob[: int(len(blob) * cut)])
    got = _outcomes(path)
    assert got[-1][1] == "corrupt:tar"  # never a silent clean end
    assert all(reason != "corrupt:tar" for _, reason in got[:-1] if isinstance(reason, str))
    assert len(got) <= 10


def test_garbage_and_bz2_corruption(tmp_path):
    garbage = tmp_path / "x.tar.gz"
    garbage.write_bytes(b"\x1f\x8b" + os.urandom(500))
    assert _outcomes(garbage) == [("", "corrupt:tar")]
    good = tmp_path / "good.tar.bz2"
    with tarfile.open(good, "w:bz2") as tar:
        _tar_add(tar, "a.tex", b"\\section{A}" * 200)
    blob = bytearray(good.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    bad = tmp_path / "bad.tar.bz2"
    bad.write_bytes(bytes(blob))
    got = _outcomes(bad)
    assert got and got[-1][1] == "corrupt:tar"


def test_zip_traversal_symlink_bomb_and_truncation(tmp_path):
    path = tmp_path / "repo.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ok.txt", "hello")
        z.writestr("../up.txt", "evil")
        z.writestr("C:/windows.txt", "evil")
        link = zipfile.ZipInfo("link")
        link.external_attr = 0o120777 << 16
        z.writestr(link, "/etc/passwd")
        z.writestr("zeros.txt", bytes(1_000_000))
    got = _outcomes(path, ArchiveLimits(max_member_bytes=1000, max_total_bytes=10_000_000))
    assert got == [
        ("ok.txt", b"hello"),
        ("../up.txt", "unsafe_path"),
        ("C:/windows.txt", "unsafe_path"),
        ("link", "unsafe_path"),
        ("zeros.txt", "too_large"),
    ]
    cut = tmp_path / "cut.zip"
    cut.write_bytes(path.read_bytes()[:-40])  # central directory damaged
    assert _outcomes(cut) == [("", "corrupt:zip")]


def _sevenzip(path, members):
    with py7zr.SevenZipFile(path, "w") as z:
        for name, data in members:
            z.writestr(data, name)
    return path


def test_7z_streams_members_in_order(tmp_path):
    path = _sevenzip(tmp_path / "site.7z", [("Posts.xml", b"<posts/>" * 3000), ("Tags.xml", b"<tags/>"),
                                            ("big.xml", bytes(5000))])
    got = _outcomes(path, ArchiveLimits(max_member_bytes=30_000, max_total_bytes=100_000))
    assert got == [("Posts.xml", b"<posts/>" * 3000), ("Tags.xml", b"<tags/>"), ("big.xml", b"\x00" * 5000)]
    got = _outcomes(path, ArchiveLimits(max_member_bytes=4000, max_total_bytes=100_000))
    assert got[0] == ("Posts.xml", "too_large") and got[2] == ("big.xml", "too_large")
    assert _outcomes(path, ArchiveLimits(max_member_bytes=30_000, max_total_bytes=25_000))[-1] == ("", "bomb")
    assert _outcomes(path, select=lambda n: n == "Tags.xml") == [("Tags.xml", b"<tags/>")]


def test_7z_truncated_or_corrupt(tmp_path):
    path = _sevenzip(tmp_path / "site.7z", [("Posts.xml", os.urandom(3000).hex().encode())])
    blob = path.read_bytes()
    cut = tmp_path / "cut.7z"
    cut.write_bytes(blob[: len(blob) // 2])
    assert _outcomes(cut) == [("", "corrupt:7z")]
    flipped = bytearray(blob)
    flipped[64] ^= 0xFF  # inside the packed stream
    bad = tmp_path / "bad.7z"
    bad.write_bytes(bytes(flipped))
    got = _outcomes(bad, ArchiveLimits(max_member_bytes=100_000, max_total_bytes=100_000))
    assert got[0] == ("Posts.xml", "corrupt:7z")


def test_7z_early_close_stops_the_reader_thread(tmp_path):
    import threading

    path = _sevenzip(tmp_path / "site.7z", [(f"f{i}.xml", os.urandom(200_000)) for i in range(4)])
    members = iter_archive(path, ArchiveLimits(max_member_bytes=1 << 20, max_total_bytes=1 << 22))
    first = next(members)
    assert first.open().read(10)
    members.close()
    assert not [t for t in threading.enumerate() if t.name == "7z-pump"]


def test_names_and_stems():
    assert safe_member_name("./a//b/./c.py") == "a/b/c.py"
    for bad in ("../x", "a/../../x", "/abs", "\\\\server\\x", "C:\\x", "a\x00b", "..", ""):
        assert safe_member_name(bad) is None, bad
    assert safe_member_name("a/../b") is None  # any '..' is refused, even if it stays inside
    from pathlib import Path

    assert archive_stem(Path("2101.00001.tar.gz")) == "2101.00001"
    assert archive_stem(Path("math.stackexchange.com.7z")) == "math.stackexchange.com"
