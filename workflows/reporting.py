"""What ``tracerflow run`` tells the terminal and its log file.

Every record of luigi and tracerflow goes to ``<output_dir>/logs/<project name>.log`` with
tracebacks (beside the project's outputs, not among them, so a run that changes nothing leaves
the outputs as they were). The terminal gets one block per failed task: the task (family and
parameters), the error message and a hint. Failures that are the user's to fix (see
:func:`is_user_error`) show no traceback there unless ``-v``; anything else (a bug) shows
luigi's traceback as well.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import luigi
import luigi.configuration
from luigi.task import flatten

from tracerflow.config import ConfigError
from tracerflow.events.build import InputError
from tracerflow.events.remote import RemoteError
from tracerflow.events.source import SourceError
from tracerflow.io import faults
from tracerflow.io.h5target import SchemaMismatch
from tracerflow.resample.stream import EmptySplit
from tracerflow.templates.event import TemplateError
from tracerflow.templates.expressions import ExpressionError
from tracerflow.workflows.batch.records import JobsFailed
from tracerflow.workflows.display import clear_line

USER_ERRORS = (ConfigError, TemplateError, InputError, SourceError, RemoteError, ExpressionError, SchemaMismatch, EmptySplit,
               luigi.rpc.RPCError, JobsFailed)
READER_ERRORS = (KeyError, ValueError)
LOGGERS = ("luigi-interface", "luigi", "tracerflow")
HINTS = (
    (SourceError, "the input file cannot give what the config asks for: check samples.<name>.files, the tree "
                  "and the branches event.template reads (uproot.open(file)[tree].keys() lists them)"),
    (RemoteError, "the server named above did not answer or stopped mid-read: check that it is up (xrdfs HOST "
                  "stat PATH, curl -I URL) and your credentials; remote.retries and remote.timeout say how long "
                  "tracerflow waits; the same command reads what failed again"),
    (ConfigError, "fix the key named above; `tracerflow validate --config ...` checks a config without running it"),
    (luigi.rpc.RPCError, "the central scheduler stopped answering: `tracerflow scheduler status` says whether it "
                         "runs, `tracerflow scheduler start` starts it again"),
    (InputError, "check the sample's files and the entry filters of the event block"),
    (JobsFailed, "each job's log says why; the same `tracerflow run --batch ...` submits what failed again"),
    (EmptySplit, "look at the cutflow of the selections (report.html or selections/*.h5) and at the classes "
                 "the samples give"),
    (SchemaMismatch, "the file was written by another tracerflow version or stage: remove it and run again"),
    (ExpressionError, "fix the expression in the template named above (`tracerflow validate` checks its names)"),
    (TemplateError, "the template does not fit this file: check the branches, collections and expressions it "
                    "names against the file"),
    (READER_ERRORS, "the file named above does not hold what this stage reads: rerun the stage that wrote it, "
                    "or check the config keys that name its columns"),
)
_PATH = re.compile(r"(?:^|[\s'\"(=])(?:/[^\s'\":,)]+|[\w.-]+\.(?:h5|root|json|ya?ml|txt|pt|csv))")
_state: dict[str, Any] = {"active": False, "log": None, "verbose": False}


def is_user_error(exc: BaseException | None) -> bool:
    """True for the errors a user fixes in the config, the inputs or the machine: tracerflow's
    config, template, input and file-schema errors, faults of the file system (disk full,
    read-only, ...: :mod:`tracerflow.io.faults`), and KeyError/ValueError raised by tracerflow's
    own code with a message naming a file."""
    if isinstance(exc, USER_ERRORS) or faults.fault_of(exc) is not None:
        return True
    if not isinstance(exc, READER_ERRORS) or exc.__traceback__ is None:
        return False
    return _module_of(exc.__traceback__).startswith("tracerflow") and bool(_PATH.search(message_of(exc)))


def _module_of(tb: Any) -> str:
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", ""))


def message_of(exc: BaseException, where: str | None = None) -> str:
    """The exception's message (a KeyError's without the quotes ``str`` adds); for a fault of the
    file system (disk full, read-only, ...) its cause in words and its path (``where`` when the
    error names none)."""
    fault = faults.fault_of(exc)
    if fault is not None:
        return faults.describe(fault, where)
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str) \
            and type(exc).__str__ is KeyError.__str__:
        return exc.args[0]
    return str(exc) or type(exc).__name__


def hint_for(exc: BaseException) -> str:
    fault = faults.fault_of(exc)
    if fault is not None:
        return faults.hint(fault)
    for kinds, hint in HINTS:
        if isinstance(exc, kinds):
            return hint
    return "this looks like a bug in tracerflow or a library: the traceback says where"


def task_label(task: luigi.Task) -> str:
    """``Family(param=value, ...)`` as the analysis names the task (no config reference)."""
    return task.label() if hasattr(task, "label") else str(task)


def _written_by(task: luigi.Task) -> str | None:
    """What ``task`` writes, for an error that names no path: its one output, or the directory
    that holds all of them."""
    try:
        paths = [Path(target.path) for target in flatten(task.output()) if hasattr(target, "path")]
    except Exception:
        return None
    if not paths:
        return None
    return str(paths[0]) if len(paths) == 1 else os.path.commonpath([str(p.parent) for p in paths])


def failure_block(task: luigi.Task, error: BaseException | str, log: Path | None, verbose: bool) -> str:
    """The lines that report one failed task."""
    if isinstance(error, BaseException):
        message, user = message_of(error, _written_by(task)), is_user_error(error)
        hint = hint_for(error)
        kind = "" if user else f"{type(error).__name__}: "
    else:
        message, user, kind = str(error), False, ""
        hint = "the task's process ended without reporting an error (killed, out of memory, timed out?)"
    message = "\n    ".join(message.splitlines() or [""])  # a message of several lines stays inside the block
    lines = [f"tracerflow: {task_label(task)} failed", f"    {kind}{message}", f"    hint: {hint}"]
    if log is not None and (user and not verbose):
        lines.append(f"    traceback: {log} (or run with -v)")
    elif log is not None:
        lines.append(f"    log: {log}")
    return "\n".join(lines)


def report_failure(task: luigi.Task, error: BaseException | str) -> None:
    """Report a failure of ``task`` in one block, as a failed task's (a batch stage's failed jobs)."""
    _report(task, error)


def _report(task: luigi.Task, error: BaseException | str) -> None:
    if not _state["active"]:
        return
    block = failure_block(task, error, _state["log"], _state["verbose"])
    clear_line(sys.stderr)
    print(block, file=sys.stderr, flush=True)
    logging.getLogger("tracerflow.failures").error("%s", block)


class _QuietUserErrors(logging.Filter):
    """Drops luigi's records of a user error (the failure block says it): its ``logger.exception``
    in the worker and the 'Will not run ...' warnings logged while the error is being handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None and str(record.msg).startswith("Will not run"):
            exc = sys.exc_info()[1]
        return not is_user_error(exc)


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record comes (not when it was made)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _LogFile(logging.FileHandler):
    """The log file, given up (with one line on the terminal) when it cannot be written, such as
    on a full disk: the run and its failure blocks go on without it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8")
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        if not self._give_up(sys.exc_info()[1]):
            super().handleError(record)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as err:
            if not self._give_up(err):
                raise

    def _give_up(self, error: BaseException | None) -> bool:
        """Stop writing the file after a fault of the file system (say so once); False for other errors."""
        fault = faults.fault_of(error)
        if fault is None:
            return False
        if not self.failed:
            self.failed = True
            if _state["log"] == Path(self.baseFilename):
                _state["log"] = None  # failure blocks no longer point at it
            print(f"tracerflow: the log file is no longer written ({faults.describe(fault, self.baseFilename)})",
                  file=sys.stderr, flush=True)
            stream, self.stream = self.stream, None
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        return True


def _owned(handler: logging.Handler) -> logging.Handler:
    handler._tracerflow = True  # type: ignore[attr-defined]
    return handler


def current_log() -> Path | None:
    """The log file being written, None when there is none (or a full disk stopped it)."""
    return _state["log"]


def log_path(output_root: Path) -> Path:
    """The log file of the project whose outputs are in ``output_root`` (``<output_dir>/<name>``)."""
    return output_root.parent / "logs" / f"{output_root.name}.log"


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """tracerflow's own warnings (a null metric, say) as one ``tracerflow: warning: ...`` line on
    the terminal and a record in the log file, not Python's two lines of file, line number and
    source; any other warning as Python shows it."""
    if getattr(category, "__module__", "").startswith("tracerflow"):
        logging.getLogger("tracerflow").warning("warning: %s", message)
    else:
        _state["show_warning"](message, category, filename, lineno, file, line)


def setup(output_root: Path, verbose: bool) -> Path:
    """Send luigi's and tracerflow's logging to :func:`log_path` and the terminal, and report each
    failed task in one block; returns the log file's path.

    A luigi config that sets ``[core] logging_conf_file`` keeps its own logging; the log file
    and the failure blocks come on top. tracerflow's own warnings become records of the
    ``tracerflow`` logger (:func:`_show_warning`).
    """
    log = log_path(output_root)
    log.parent.mkdir(parents=True, exist_ok=True)
    config = luigi.configuration.get_config()
    own_logging = config.has_option("core", "logging_conf_file")
    if not own_logging:
        if not config.has_section("core"):
            config.add_section("core")
        config.set("core", "no_configure_logging", "true")
    to_file = _owned(_LogFile(log))
    to_file.setLevel(logging.INFO)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"))
    for name in (*LOGGERS, "tracerflow.failures"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_tracerflow", False)]:
            logger.removeHandler(old)
            old.close()
    terminal = _owned(_Stderr())
    terminal.setLevel(logging.INFO if verbose else logging.WARNING)
    terminal.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    if not verbose:
        terminal.addFilter(_QuietUserErrors())
    ours = _owned(_Stderr())
    ours.setLevel(logging.INFO)
    ours.setFormatter(logging.Formatter("tracerflow: %(message)s"))
    for name in ("luigi-interface", "luigi"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(to_file)
        if not own_logging:
            logger.addHandler(terminal)
            logger.propagate = False
    tracerflow = logging.getLogger("tracerflow")
    tracerflow.setLevel(logging.INFO)
    tracerflow.propagate = False
    tracerflow.addHandler(to_file)
    tracerflow.addHandler(ours)
    failures = logging.getLogger("tracerflow.failures")
    failures.propagate = False
    failures.addHandler(to_file)
    _state.update(active=True, log=log, verbose=verbose)
    if warnings.showwarning is not _show_warning:  # once, and within pytest's own catcher too
        _state["show_warning"] = warnings.showwarning
        warnings.showwarning = _show_warning
    for event in (luigi.Event.FAILURE, luigi.Event.BROKEN_TASK, luigi.Event.PROCESS_FAILURE, luigi.Event.TIMEOUT):
        luigi.Task.event_handler(event)(_report)
    return log
