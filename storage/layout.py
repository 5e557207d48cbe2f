"""``Layout``: every path of an output tree ``out/<profile>/``, asked for by name.

The on-disk layout is an interface (users, scripts, the report and the trainer read it), so it is
written down once, here; every module asks a ``Layout`` instead of joining path parts itself::

    download/<source>/                raw upstream files          (the download stage's output)
    <stage>/<source>/                 kept Parquet documents of a document stage
    <stage>/<source>/excluded/        excluded documents, metadata.reason
    <stage>/<source>/.work/           scratch: pass logs and markers, per-task accounting, dedup files
    <stage>/<source>/cited_urls/      hashes of the URLs the documents cite (extract/wikipedia: NNNNN_PPP.npy)
    tokens/<source>/                  token shards (the tokenize stage's output)
    models/<name>/                    model artefacts (lm, wikiref_train)
    tokenizer/tokenizer.model         the tokenizer (the tokenizer model stage's output)
    tokenizer/tokenizer.json          its settings and per-source sampling record
    train/<run>/                      training runs
    report/stats.json, index.html     accounting of every stage, the HTML report
    slurm/                            sbatch scripts of a Slurm dry run
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

# stages whose output folder is not named after the stage
STAGE_FOLDERS = {"tokenize": "tokens"}
# model stages whose artefacts are not under models/<name>
MODEL_FOLDERS = {"tokenizer": "tokenizer"}
EXCLUDED = "excluded"
WORK = ".work"
SUCCESS = "_SUCCESS"
TOKENIZER_FILE = "tokenizer.model"
TOKENIZER_SUMMARY = "tokenizer.json"  # the settings and sampling record of a trained tokenizer
STATS_FILE = "stats.json"
PASSES = "passes"  # <stage folder>/.work/passes/<pass>/: datatrove logs and completion markers of each pass
CITED_URLS = "cited_urls"  # <stage folder>/cited_urls/: 64-bit hashes of cited URLs, per task (ingest/cited_urls.py)

# What a stage writes at the top of its folder (``stage_folder_problem``): document shards, token shards
# (``NNNNN_PPP.ds`` + ``.ds.index`` + ``.json``), and hidden write-then-rename temporaries of either.
_SHARD = re.compile(r"\d{5,}\.parquet")
_TOKEN_SHARD = re.compile(r"\d{5,}_\d{3,}\.(ds|ds\.index|json)")
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.\d+\.tmp")
_CITED_PART = re.compile(r"\d{5,}_\d{3,}\.npy")


@dataclass(frozen=True)
class Layout:
    """The output tree of one profile, rooted at ``out/<profile>``."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of_profile(cls, out_dir: str | os.PathLike, profile: str) -> "Layout":
        return cls(Path(out_dir) / profile)

    # ---- stages ---------------------------------------------------------------------------------
    def stage_dir(self, stage: str, source: str | None = None) -> Path:
        """A document stage's output folder (``tokens/`` for tokenize), or the stage's parent folder."""
        base = self.root / STAGE_FOLDERS.get(stage, stage)
        return base / source if source else base

    def excluded_dir(self, stage: str, source: str) -> Path:
        return self.stage_dir(stage, source) / EXCLUDED

    @staticmethod
    def work_dir(output_dir: Path) -> Path:
        """Scratch of a stage (or model) folder, inside it: deleting the folder resets the stage."""
        return Path(output_dir) / WORK

    @staticmethod
    def cited_urls_dir(output_dir: Path) -> Path:
        """Hashes of the URLs a stage's documents cite (the Wikipedia extract writes them; wikiref_train reads them)."""
        return Path(output_dir) / CITED_URLS

    @staticmethod
    def success_marker(output_dir: Path) -> Path:
        return Path(output_dir) / SUCCESS

    def download_dir(self, source: str) -> Path:
        return self.stage_dir("download", source)

    def tokens_dir(self, source: str | None = None) -> Path:
        return self.stage_dir("tokenize", source)

    # ---- models ---------------------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, name: str) -> Path:
        return self.root / MODEL_FOLDERS[name] if name in MODEL_FOLDERS else self.models_dir / name

    @property
    def tokenizer_dir(self) -> Path:
        return self.model_dir("tokenizer")

    @property
    def tokenizer_model(self) -> Path:
        return self.tokenizer_dir / TOKENIZER_FILE

    @property
    def tokenizer_summary(self) -> Path:
        return self.tokenizer_dir / TOKENIZER_SUMMARY

    # ---- training, report, cluster scripts ------------------------------------------------------
    def train_dir(self, run: str | None = None) -> Path:
        base = self.root / "train"
        return base / run if run else base

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def stats_path(self) -> Path:
        return self.report_dir / STATS_FILE

    @property
    def report_html(self) -> Path:
        return self.report_dir / "index.html"

    @property
    def slurm_dir(self) -> Path:
        return self.root / "slurm"

    @property
    def scratch_dir(self) -> Path:
        """Profile-wide scratch (e.g. matplotlib's cache while the report is drawn)."""
        return self.root / WORK

    # ---- finding a tree from a path inside it ---------------------------------------------------
    @classmethod
    def containing(cls, path: str | os.PathLike) -> "Layout | None":
        """The output tree that holds ``path`` (a stage folder, a shard): the nearest folder upward
        that has a ``tokenizer/tokenizer.model`` or a ``report/stats.json``."""
        path = Path(path).resolve()
        for folder in [path, *path.parents] if path.is_dir() else list(path.parents):
            candidate = cls(folder)
            if candidate.tokenizer_model.exists() or candidate.stats_path.exists():
                return candidate
        return None


def _ours(name: str, fixed: set[str], patterns: tuple[re.Pattern, ...]) -> bool:
    temporary = _TEMPORARY.fullmatch(name)
    name = temporary.group("name") if temporary else name
    return name in fixed or any(p.fullmatch(name) for p in patterns)


def stage_folder_problem(folder: str | os.PathLike, stages: Iterable[str] = ()) -> str | None:
    """Why ``folder`` is not a stage folder of ours (None when it is, or when it is absent or empty).

    A stage folder of ours is a directory that carries a marker, ``_SUCCESS`` (a complete stage) or
    ``.work/passes/`` (a stage that started a pass), and holds nothing else than what a stage writes:
    ``stats.json``, ``.work/``, ``excluded/`` (holding document shards only), ``cited_urls/`` (holding
    hash files ``NNNNN_PPP.npy`` only), document shards ``NNNNN.parquet``, token shards
    ``NNNNN_PPP.ds``/``.ds.index``/``.json``, a stage's summary ``<stage>.json`` for a name in
    ``stages`` (``minhash.json``), and hidden temporaries
    ``.<one of those>.<pid>.tmp``. Only such a folder may be deleted to rerun a stage
    (``pipeline.stages.reset_output``): anything else is somebody's data.
    """
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return None
    if folder.is_symlink() or not folder.is_dir():
        return "not a folder" if not folder.is_symlink() else "a symbolic link"
    entries = sorted(folder.iterdir())
    if not entries:
        return None
    fixed = {SUCCESS, STATS_FILE, WORK, EXCLUDED, CITED_URLS} | {f"{s}.json" for s in stages}
    folders = {WORK: None, EXCLUDED: _SHARD, CITED_URLS: _CITED_PART}  # folder -> what it may hold (None: anything)
    for entry in entries:
        if not _ours(entry.name, fixed, (_SHARD, _TOKEN_SHARD)):
            return f"holds {entry.name!r}, which no stage writes"
        is_dir = entry.is_dir() and not entry.is_symlink()
        if entry.name in folders and not is_dir:
            return f"{entry.name!r} is not a folder"
        if entry.name not in folders and not (entry.is_file() and not entry.is_symlink()):
            return f"{entry.name!r} is not a plain file"
        if folders.get(entry.name) is not None:
            for inner in sorted(entry.iterdir()):
                if not _ours(inner.name, set(), (folders[entry.name],)) or inner.is_symlink() or not inner.is_file():
                    return f"holds {entry.name}/{inner.name!r}, which no stage writes"
    marked = (folder / SUCCESS).is_file() or (folder / WORK / PASSES).is_dir()
    if not marked:
        return f"has neither {SUCCESS} nor {WORK}/{PASSES}/"
    return None
