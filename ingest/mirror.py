"""Where the bytes of a remote input come from: upstream itself, or a mirror that keeps its layout.

Why: an air-gapped cluster, an institutional cache or a test reads the full profile from a copy of the
upstream files laid out as upstream has them (``python -m pipeline run --mirror BASE``, or the
environment variable ``LLAMIX_MIRROR``). Only *where the bytes are read* changes: every item keeps its
upstream URL, which names the downloaded file, goes into its ``.done.json`` sidecar and into document
metadata, so a build read from a mirror is the build read from upstream.

The mapping (``Mirror.locate``), for BASE an ``http(s)://`` URL:

- ``https://HOST/PATH?QUERY`` (or ``http://``) -> ``BASE/HOST/PATH?QUERY``
- ``s3://BUCKET/KEY``                           -> ``BASE/s3/BUCKET/KEY`` (key percent-encoded as in a URL)

and for BASE a local folder, the same path as a file name: each path component percent-decoded, and
the query, when there is one, kept after a literal ``?`` in the last component with every ``/`` of it
written ``%2F`` (the names ``wget --force-directories`` gives on POSIX), e.g.
``https://storage.googleapis.com/storage/v1/b/deepmind-gutenberg/o?prefix=train/`` ->
``BASE/storage.googleapis.com/storage/v1/b/deepmind-gutenberg/o?prefix=train%2F``.
A URL whose path has ``..`` / ``.`` components, or a decoded component holding ``/`` or a NUL, is
refused (it could leave BASE). URLs found inside path lists, URL lists and listings are mapped the
same way, because every fetch goes through here. Local inputs (paths, ``file://``) are never mirrored.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "LLAMIX_MIRROR"
MIRRORED_SCHEMES = ("http", "https", "s3")


class MirrorError(ValueError):
    """A bad ``--mirror`` value or a URL that cannot be mapped into the mirror; ``str()`` is one line."""


def scheme_of(url: str) -> str:
    return urllib.parse.urlsplit(url).scheme.lower() if "://" in url else ""


@dataclass(frozen=True)
class Mirror:
    """``base`` is an ``http(s)://`` URL (no trailing ``/``) or an absolute local folder; ``None``: upstream."""

    base: str | None = None

    @classmethod
    def from_setting(cls, value: str | None) -> "Mirror":
        """The mirror named by ``--mirror`` / ``LLAMIX_MIRROR`` (``None`` or ``""``: none), checked:
        an ``http(s)://HOST[/PATH]`` URL, or an existing folder (a path or a ``file://`` URL)."""
        if value is None or not value.strip():
            return cls(None)
        value = value.strip()
        scheme = scheme_of(value)
        if scheme in ("http", "https"):
            parts = urllib.parse.urlsplit(value)
            if not parts.netloc or parts.query or parts.fragment:
                raise MirrorError(f"mirror {value!r}: expected http(s)://HOST[/PATH] without a query")
            return cls(value.rstrip("/"))
        if scheme == "file":
            value = urllib.parse.unquote(urllib.parse.urlsplit(value).path)
        elif scheme:
            raise MirrorError(f"mirror {value!r}: a mirror is an http(s):// URL or a local folder, not {scheme}://")
        folder = Path(value).expanduser()
        if not folder.is_dir():
            raise MirrorError(f"mirror {value!r}: no such folder (a mirror is an http(s):// URL or a local folder)")
        return cls(str(folder.resolve()))

    @classmethod
    def from_env(cls) -> "Mirror":
        return cls.from_setting(os.environ.get(ENV_VAR))

    def __bool__(self) -> bool:
        return self.base is not None

    @property
    def is_local(self) -> bool:
        return self.base is not None and scheme_of(self.base) == ""

    def locate(self, url: str) -> str:
        """Where ``url`` is read from: itself without a mirror (or when it is local), else its copy in
        the mirror (a URL for an http(s) mirror, an absolute file path for a folder one)."""
        scheme = scheme_of(url)
        if self.base is None or scheme not in MIRRORED_SCHEMES:
            return url
        parts = urllib.parse.urlsplit(url)
        if scheme == "s3":
            bucket, _, key = url[5:].partition("/")
            if not bucket or not key:
                raise MirrorError(f"{url}: expected s3://BUCKET/KEY")
            # an S3 key is raw text (``?``, ``#`` included): written into a URL it is percent-encoded
            components = ["s3", bucket, *urllib.parse.quote(key, safe="/~").split("/")]
            parts = urllib.parse.SplitResult("s3", bucket, "", "", "")
        else:
            if not parts.netloc:
                raise MirrorError(f"{url}: no host")
            components = [parts.netloc.lower(), *parts.path.lstrip("/").split("/")]
        for c in components[1:]:
            decoded = urllib.parse.unquote(c)
            if decoded in (".", "..") or "/" in decoded or "\x00" in decoded or ("\\" in decoded and self.is_local):
                raise MirrorError(f"{url}: path component {c!r} cannot be mapped into the mirror (it could leave it)")
        if not self.is_local:
            return f"{self.base}/{'/'.join(components)}" + (f"?{parts.query}" if parts.query else "")
        names = [urllib.parse.unquote(c) for c in components]
        if parts.query and scheme != "s3":
            names[-1] += "?" + parts.query.replace("/", "%2F")
        if any(not n for n in names[1:-1]) or not names[-1]:
            raise MirrorError(f"{url}: an empty path component cannot be a file in the mirror")
        return str(Path(self.base).joinpath(*names))

    def describe(self, url: str) -> str:
        """``url`` for a log line: with where it was read from when that is a mirror."""
        try:
            where = self.locate(url)
        except MirrorError:
            return url
        return url if where == url else f"{url} (from the mirror: {where})"
