"""The ``tracerflow`` command: run, generate, validate and show an analysis.

Every subcommand validates the config first (exit code 2 on a config error); ``run`` exits
1 when any task failed or could not run, so batch systems and CI see failures, and also, before
any task runs, when the output directory cannot be written (a file, read-only, no permission:
not a config error, since the config itself is valid). A full disk, a read-only directory or a
file in the way met while running fails the task with a message naming the path. Each failed
task is reported in one block (task, message, hint); tracebacks go to
``<output_dir>/logs/<project name>.log`` and, with ``-v``, to the terminal. ``run --batch
slurm|htcondor|lsf`` runs every task as a batch job (:mod:`tracerflow.workflows.batch`, imported
only then); with ``--dry-run`` it lists the jobs and exits 3 when any would be submitted.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import luigi

from tracerflow.config import ConfigError, load_config, resolve_config
from tracerflow.config.schema import scheduler_url_problem
from tracerflow.io import faults, status_index
from tracerflow.tasks import STAGES
from tracerflow.workflows import display, reporting, scheduler
from tracerflow.workflows.analysis import LAST, Analysis, remove_stale_until, stage_tasks
from tracerflow.workflows.inspect import describe_dag
from tracerflow.workflows.retcodes import install_retcodes

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_WORK_REMAINS = 3  # run --batch ... --dry-run: jobs would be submitted
BATCH_SYSTEMS = ("slurm", "htcondor", "lsf")


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
    run.add_argument("--central", action="store_true",
                     help="use the central scheduler luigid (scheduler.url, else scheduler.host/port)")
    run.add_argument("--scheduler-url", type=_scheduler_url_arg, default=None, metavar="URL",
                     help="the central scheduler's URL, e.g. http://127.0.0.1:8082 (implies --central; "
                          "start one with `tracerflow scheduler start`)")
    run.add_argument("--scheduler-host", default=None, help="luigid host (implies --central)")
    run.add_argument("--scheduler-port", type=scheduler.port_arg, default=None, help="luigid port (implies --central)")
    run.add_argument("--batch", choices=BATCH_SYSTEMS, default=None,
                     help="run every task as a job of this batch system (settings: the config's batch block; "
                          "logs and job records under <output_dir>/logs/<project>/batch)")
    run.add_argument("--dry-run", action="store_true",
                     help="with --batch: list the jobs that would be submitted and their settings, submit nothing; "
                          f"exit {EXIT_WORK_REMAINS} when any would be")
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
    scheduler.add_parser(sub, _common)
    return parser


def _scheduler_url_arg(text: str) -> str:
    problem = scheduler_url_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text.rstrip("/")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tracerflow`` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "scheduler_url", None) and (args.scheduler_host or args.scheduler_port):
        parser.error("--scheduler-url names the scheduler; leave out --scheduler-host and --scheduler-port")
    if getattr(args, "dry_run", False) and not args.batch:
        parser.error("--dry-run lists the jobs of a batch run: give --batch slurm|htcondor|lsf")
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
    if args.command == "scheduler":
        return scheduler.command(args, cfg)
    until = "GenerateSample" if args.command == "generate" else args.until
    try:
        stage_tasks(config, overrides, until)
    except ConfigError as err:
        print(f"tracerflow: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "show":
        print(describe_dag(Analysis(config=config, overrides=overrides, until=until)))
        return 0
    if getattr(args, "batch", None) and args.dry_run:
        from tracerflow.workflows import batch

        return batch.dry_run(args.batch, cfg, config, overrides, until)
    if until == "GenerateSample" and not any(s["generate"] for s in cfg["samples"].values()):
        print("tracerflow: no sample has a generate block; nothing to generate", file=sys.stderr)
        return 0
    return _run(args, cfg, config, overrides, until)


def _run(args: argparse.Namespace, cfg, config: str, overrides: tuple[str, ...], until: str) -> int:
    if getattr(args, "batch", None):
        from tracerflow.workflows import batch

        problem = batch.unavailable(args.batch)
        if problem is not None:
            print(f"tracerflow: {problem}", file=sys.stderr)
            return EXIT_FAILED
    install_retcodes()
    kwargs = {"workers": args.workers or cfg["scheduler"]["workers"], "detailed_summary": True,
              "log_level": "INFO" if getattr(args, "verbose", False) else "WARNING"}
    url = _central_url(args, cfg["scheduler"])
    if url is None:
        kwargs["local_scheduler"] = True
    else:
        try:
            scheduler.check(url)
        except scheduler.SchedulerError as err:
            print(f"tracerflow: {err}", file=sys.stderr)
            return EXIT_FAILED
        scheduler.client_settings(verbose=getattr(args, "verbose", False))
        kwargs["scheduler_url"] = url
    blocked = faults.unwritable(cfg.output_root, reporting.log_path(cfg.output_root).parent)
    if blocked is not None:
        print(f"tracerflow: {faults.refusal(cfg.output_root, blocked)}\n    hint: {faults.hint(blocked)}",
              file=sys.stderr)
        return EXIT_FAILED
    log = reporting.setup(cfg.output_root, verbose=getattr(args, "verbose", False))
    remove_stale_until(cfg, until)
    if getattr(args, "batch", None):
        from tracerflow.workflows import batch

        return batch.submit(args.batch, cfg, config, overrides, until, url, getattr(args, "verbose", False), log)
    try:
        with display.RunDisplay(sys.stderr, interval=cfg["scheduler"]["progress_interval"]):
            result = luigi.build([Analysis(config=config, overrides=overrides, until=until)],
                                 worker_scheduler_factory=display.WorkerFactory(), **kwargs)
    except luigi.rpc.RPCError:
        print(f"tracerflow: FAILED: the scheduler at {url} stopped answering; finished targets are kept, see {log}",
              file=sys.stderr)
        return EXIT_FAILED
    finally:
        status_index.save()  # what this run learnt of its targets, so the next one need not open them
    print(display.summary(result.worker))
    ok = result.status in (luigi.execution_summary.LuigiStatusCode.SUCCESS,
                           luigi.execution_summary.LuigiStatusCode.SUCCESS_WITH_RETRY)
    if ok:
        print(f"tracerflow: done; outputs in {cfg.output_root}")
        return 0
    log = reporting.current_log()  # None once a full disk stopped it
    print(f"tracerflow: FAILED ({result.status.name}); see the messages above" + (f" and {log}" if log else ""),
          file=sys.stderr)
    return EXIT_FAILED


def _central_url(args: argparse.Namespace, block: dict) -> str | None:
    """The central scheduler's URL, or None for luigi's local scheduler: --scheduler-url, else
    --scheduler-host/--scheduler-port (the others from the config), else with --central or
    scheduler.local false the config's scheduler.url or http://scheduler.host:scheduler.port."""
    url, host, port = (getattr(args, name, None) for name in ("scheduler_url", "scheduler_host", "scheduler_port"))
    if url:
        return url
    if host or port:
        return scheduler.address(host or block["host"], port or block["port"])
    if getattr(args, "central", False) or not block["local"]:
        return (block["url"] or scheduler.address(block["host"], block["port"])).rstrip("/")
    return None


if __name__ == "__main__":
    sys.exit(main())
