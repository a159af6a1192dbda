"""The ``tracerflow`` command: run, generate, validate and show an analysis.

Every subcommand validates the config first (exit code 2 on a config error); ``run`` exits
1 when any task failed or could not run, so batch systems and CI see failures. Each failed
task is reported in one block (task, message, hint); tracebacks go to
``<output_dir>/logs/<project name>.log`` and, with ``-v``, to the terminal.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import luigi

from tracerflow.config import ConfigError, load_config, resolve_config
from tracerflow.tasks import STAGES
from tracerflow.workflows import reporting
from tracerflow.workflows.analysis import LAST, Analysis, remove_stale_until, stage_tasks
from tracerflow.workflows.inspect import describe_dag
from tracerflow.workflows.retcodes import install_retcodes

EXIT_FAILED = 1
EXIT_CONFIG = 2


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="", help="analysis YAML, or the name of a shipped analysis "
                        "(configs/<name>.yaml, e.g. toy-events); default: the embedded toy analysis")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set samples.ttbar.generate.n_jets=1000000")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracerflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the DAG (local scheduler unless told otherwise)")
    _common(run)
    run.add_argument("--until", choices=(*STAGES, LAST), default=LAST,
                     help="last stage to run (default: the last one the config describes)")
    run.add_argument("--workers", type=int, default=None, help="parallel worker processes (default: scheduler.workers)")
    run.add_argument("--central", action="store_true", help="use the central scheduler luigid (scheduler.host/port)")
    run.add_argument("--scheduler-host", default=None, help="luigid host (implies --central)")
    run.add_argument("--scheduler-port", type=int, default=None, help="luigid port (implies --central)")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="luigi's INFO log, and tracebacks of failed tasks on the terminal (always in the log file)")
    gen = sub.add_parser("generate", help="write the toy samples only (GenerateSample)")
    _common(gen)
    gen.add_argument("--workers", type=int, default=None)
    val = sub.add_parser("validate", help="check the config and print it with defaults filled in")
    _common(val)
    show = sub.add_parser("show", help="the DAG and which targets are complete")
    _common(show)
    show.add_argument("--until", choices=(*STAGES, LAST), default=LAST)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tracerflow`` command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    config = resolve_config(args.config)
    overrides = tuple(args.overrides)
    try:
        cfg = load_config(config or None, overrides)
    except ConfigError as err:
        print(f"tracerflow: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "validate":
        import yaml

        print(yaml.safe_dump(cfg.as_dict(), sort_keys=False), end="")
        print(f"# {cfg.source}: valid", file=sys.stderr)
        return 0
    until = "GenerateSample" if args.command == "generate" else args.until
    try:
        stage_tasks(config, overrides, until)
    except ConfigError as err:
        print(f"tracerflow: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "show":
        print(describe_dag(Analysis(config=config, overrides=overrides, until=until)))
        return 0
    if until == "GenerateSample" and not any(s["generate"] for s in cfg["samples"].values()):
        print("tracerflow: no sample has a generate block; nothing to generate", file=sys.stderr)
        return 0
    return _run(args, cfg, config, overrides, until)


def _run(args: argparse.Namespace, cfg, config: str, overrides: tuple[str, ...], until: str) -> int:
    install_retcodes()
    scheduler = cfg["scheduler"]
    central = getattr(args, "central", False) or not scheduler["local"] or bool(
        getattr(args, "scheduler_host", None) or getattr(args, "scheduler_port", None))
    kwargs = {"workers": args.workers or scheduler["workers"], "detailed_summary": True,
              "log_level": "INFO" if getattr(args, "verbose", False) else "WARNING"}
    if central:
        kwargs["scheduler_host"] = getattr(args, "scheduler_host", None) or scheduler["host"]
        kwargs["scheduler_port"] = getattr(args, "scheduler_port", None) or scheduler["port"]
    else:
        kwargs["local_scheduler"] = True
    log = reporting.setup(cfg.output_root, verbose=getattr(args, "verbose", False))
    remove_stale_until(cfg, until)
    result = luigi.build([Analysis(config=config, overrides=overrides, until=until)], **kwargs)
    print(result.summary_text)
    ok = result.status in (luigi.execution_summary.LuigiStatusCode.SUCCESS,
                           luigi.execution_summary.LuigiStatusCode.SUCCESS_WITH_RETRY)
    if ok:
        print(f"tracerflow: done; outputs in {cfg.output_root}")
        return 0
    print(f"tracerflow: FAILED ({result.status.name}); see the messages above and {log}", file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
