"""``python -m pipeline``: run the manifest, one stage, reports, inspection, sizing, Hugging Face export.

Errors a user can fix (bad manifest, missing input, bad flag) print one line and exit 2; a stage
failure prints one line naming the stage and where its task logs are, and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from loguru import logger


def _cmd_run(args) -> int:
    from pipeline.executors import make_executor, setup_console_logging
    from pipeline.manifest import load
    from pipeline.registry import stage_class
    from pipeline.runner import Runner, check_download_caps, check_selection

    manifest = load(args.manifest, profile=args.profile)
    sources = [s for s in args.sources.split(",") if s] if args.sources else None
    stages = [s for s in args.stages.split(",") if s] if args.stages else None
    check_selection(manifest, sources, stages)
    mirror = args.mirror if args.mirror is not None else os.environ.get("LLAMIX_MIRROR")
    if mirror and mirror.strip():  # checked now: a typo is one line, not a failed download later
        manifest.mirror = stage_class("download").check_mirror(mirror)
    if args.max_files is not None:
        manifest.cap_downloads(args.max_files)
    check_download_caps(manifest, sources)
    setup_console_logging()  # loading the stages imported datatrove, which set up its own console logging
    # on a cluster out_dir is often another filesystem: say where this run writes, every time
    logger.info(f"output root: {manifest.out_root.resolve()}")
    kind = args.executor or manifest.executor.get("name", "local")
    workers = args.workers or manifest.executor.get("workers", "auto")
    options = {}
    if kind == "slurm":
        options = {"resources": manifest.resources, "dry_run": args.dry_run, "out_root": manifest.out_root}
        poll = manifest.executor.get("poll_s")  # seconds between checks of a submitted pass's completion markers
        if poll is not None:
            if isinstance(poll, bool) or not isinstance(poll, (int, float)) or poll <= 0:
                raise ValueError(f"executor.poll_s: expected a number of seconds > 0, got {poll!r}")
            options["poll_s"] = float(poll)
    elif kind == "ray":  # a task on a Ray cluster reserves its stage's resources
        options = {"resources": manifest.resources}
    executor = make_executor(kind, workers, **options)
    if kind == "slurm" and args.dry_run:  # nothing runs, so later stages' task counts are estimated
        from pipeline.executors.slurm_dry_run import SlurmDryRun

        SlurmDryRun(manifest, executor, sources=sources, stages=stages).run()
        return 0
    Runner(manifest, executor, sources=sources, stages=stages).run()
    return 0


def _cmd_stage(args) -> int:
    from pipeline.standalone import parse_sets, run_standalone

    record = run_standalone(
        args.name,
        args.input,
        args.output,
        params=parse_sets(args.set),
        source=args.source,
        models_root=args.models_root,
        workers=args.workers or "auto",
        force=args.force,
    )
    print(f"{args.name}: {record['docs_in']} in, {record['docs_out']} kept, {record['docs_excluded']} excluded {record['excluded']}")
    return 0


def _delegate(module: str):
    def run(args) -> int:
        return importlib.import_module(module).main(args.rest) or 0

    return run


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline", description="Build LLaMA-style pre-training corpora.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the manifest (all sources and stages, or a selection)")
    r.add_argument("--manifest", default=None, help="path to data_manifest.yaml (default: the repo's)")
    r.add_argument("--profile", default=None, help="manifest profile (default: sample)")
    r.add_argument("--stages", default=None, help="comma-separated stages to run (with what they need)")
    r.add_argument("--sources", default=None, help="comma-separated sources to run")
    r.add_argument("--executor", choices=["local", "slurm", "ray"], default=None)
    r.add_argument("--workers", default=None, help="local/ray: parallel processes (default: cores)")
    r.add_argument("--dry-run", action="store_true", help="slurm: write the sbatch scripts, submit nothing")
    r.add_argument("--mirror", default=None, metavar="BASE",
                   help="read every remote input from a mirror keeping the upstream layout (https://HOST/PATH as "
                        "BASE/HOST/PATH, s3://BUCKET/KEY as BASE/s3/BUCKET/KEY): an http(s):// URL or a local folder "
                        "(default: $LLAMIX_MIRROR)")
    r.add_argument("--max-files", type=_positive_int, default=None, metavar="N",
                   help="at most N files of each input entry (path list, template, URL list, listing): a trial run")
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("stage", help="run one stage on a folder of Parquet documents")
    s.add_argument("name")
    s.add_argument("--input", required=True, help="folder of Parquet shards (id, text, source, metadata)")
    s.add_argument("--output", required=True, help="output folder (kept docs; excluded in OUTPUT/excluded)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="stage parameter (repeatable)")
    s.add_argument("--source", default="custom", help="source name recorded in stats")
    s.add_argument("--models-root", default=None, help="out/<profile> folder holding models/ and tokenizer/")
    s.add_argument("--workers", default=None)
    s.add_argument("--force", action="store_true", help="rerun even if OUTPUT is complete")
    s.set_defaults(func=_cmd_stage)

    for name, module, help_ in (
        ("report", "report.build", "write out/<profile>/report/index.html and print a summary"),
        ("inspect", "report.inspect", "print documents from a stage folder or a token shard"),
        ("plan", "ops.sizing", "size a profile: tasks, disk, memory, core-hours per stage"),
        ("export-hf", "report.hf_dataset", "write a profile's kept documents as a Hugging Face dataset folder"),
    ):
        c = sub.add_parser(name, help=help_, add_help=False)
        c.add_argument("rest", nargs=argparse.REMAINDER)
        c.set_defaults(func=_delegate(module))
    return p


def main(argv: list[str] | None = None) -> int:
    from pipeline.executors import setup_console_logging
    from pipeline.manifest import ManifestError

    setup_console_logging()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse leaves a delegated command's leading --options out of its REMAINDER
        if not hasattr(args, "rest"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.rest = extra + args.rest
    try:
        return args.func(args)
    except ManifestError as e:
        print(f"manifest error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # a stage failed: one line, details are in the task logs
        logger.debug("failure", exc_info=True)
        print(f"failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
