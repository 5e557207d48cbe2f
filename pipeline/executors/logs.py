"""Console and task logging of passes.

datatrove prints a banner and INFO lines for every task on the console; a corpus build runs hundreds of
tasks, so task logs go to their files in full and only warnings reach the console
(``LLAMIX_TASK_LOG_LEVEL`` changes that). datatrove's executors call ``add_task_logger`` and
``close_task_logger`` from their base module; ``install_task_logging()`` points those names at ours, once,
when an executor is made (not at import time).
"""

from __future__ import annotations

import os
import sys

from loguru import logger

CONSOLE_LEVEL = os.environ.get("LLAMIX_LOG_LEVEL", "INFO")
TASK_CONSOLE_LEVEL = os.environ.get("LLAMIX_TASK_LOG_LEVEL", "WARNING")

def _FORMAT(record) -> str:
    """One line per record on the console; tracebacks go to the task log files only."""
    return "{time:HH:mm:ss} | {level: <7} | {message}\n"


def _console_filter(record) -> bool:
    """datatrove's own progress chatter only when it is a warning; ours from INFO."""
    if record["name"].startswith("datatrove"):
        return record["level"].no >= logger.level(TASK_CONSOLE_LEVEL).no
    return True


def setup_console_logging(level: str = CONSOLE_LEVEL) -> None:
    logger.remove()
    logger.add(sys.stderr, level=level, format=_FORMAT, filter=_console_filter)


def _quiet_add_task_logger(logging_dir, rank: int, local_rank: int = 0, node_rank: int = -1):
    logger.remove()
    logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
    logger.add(sys.stderr, level=TASK_CONSOLE_LEVEL if local_rank == 0 else "ERROR", format=_FORMAT)
    logger.add(_file_sink(logfile), level="DEBUG")
    return logfile


def _file_sink(logfile):
    """The task log file as a sink that stops writing when the disk refuses (a full disk): the error is
    on the console already, and loguru would otherwise print its own traceback for every record."""
    refused: list[OSError] = []

    def write(message) -> None:
        if refused:
            return
        try:
            logfile.write(message)
        except OSError as e:
            refused.append(e)

    return write


def _quiet_close_task_logger(logfile):
    logger.complete()
    setup_console_logging()
    try:
        logfile.close()
    except OSError:  # the buffered tail of a task log on a full disk
        pass


def install_task_logging() -> None:
    """Task logs in full to their files, only warnings on the console (datatrove's executors look these
    names up in their base module when a task starts, in this process or in a forked worker)."""
    import datatrove.executor.base as dt_base

    dt_base.add_task_logger = _quiet_add_task_logger
    dt_base.close_task_logger = _quiet_close_task_logger
