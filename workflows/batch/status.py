"""How the submitter learns a job's state: the job's exit file first, then the batch system.

law's job managers submit and cancel as they are; their status query is replaced:

* every job id is first looked up in the exit files (:func:`.records.read_exit`) that
  :mod:`.job` writes as it ends: exit code 0 is FINISHED, anything else FAILED with the job's own
  error line. This answers as soon as the job ends, without asking the batch system;
* the jobs without one are asked of the batch system, each at most every
  :data:`SYSTEM_QUERY_INTERVAL_S` (the answer is kept in between). On Slurm that is one ``squeue
  --states=all`` per poll (it lists pending, running and ended jobs for ``MinJobAge`` after their
  end), because law's Slurm manager asks ``sacct`` for every job squeue no longer lists, and
  sacct fails without Slurm accounting (``accounting_storage/none``, the test cluster). A job
  neither has (killed, then forgotten by slurmctld) is FAILED. HTCondor and LSF keep law's own
  queries (condor_q/condor_history, bjobs).

Contract with :mod:`.stage`: managers are made with ``output_root`` (where the exit files are)
and keep, in ``noticed``, when each job was first seen ended (the benchmark's "end to noticed").
This module imports law and is imported only on the ``--batch`` path.
"""
from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import law
from law.util import interruptable_popen, make_list, quote_cmd

from tracerflow.workflows.batch import records

law.contrib.load("slurm", "htcondor", "lsf")

#: Each job is asked of the batch system at most this often (its exit file is looked at on every
#: poll): a job that ends normally is noticed by its exit file within ``batch.poll_interval``; one
#: killed without an exit file, and a pending job starting, within this.
SYSTEM_QUERY_INTERVAL_S = 2.0


class ExitFiles:
    """Mixin of a law job manager: ``query`` answers from exit files, then from ``query_system``."""

    def __init__(self, *args: Any, output_root: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.output_root = Path(output_root)
        self.noticed: dict[str, float] = {}
        self.submit_errors: dict[str, str] = {}
        self._answers: dict[Any, tuple[float, dict]] = {}  # job id -> (when asked, the system's answer)

    def submit(self, job_file: Any, *args: Any, **kwargs: Any) -> Any:
        """law's submission; the batch system's refusal is kept by job file for the job record."""
        try:
            return super().submit(job_file, *args, **kwargs)  # type: ignore[misc]
        except Exception as err:
            text = str(err)
            text = text.split("failed:", 1)[1] if "failed:" in text else text
            self.submit_errors[str(job_file)] = " ".join(text.split())[:500] or "submission failed"
            raise

    def query(self, job_id: Any, *args: Any, silent: bool = False, **kwargs: Any) -> Any:
        chunking = isinstance(job_id, (list, tuple))
        ids = make_list(job_id)
        found: dict[Any, dict] = {}
        rest = []
        for jid in ids:
            data = records.read_exit(self.output_root, jid)
            if data is None:
                rest.append(jid)
                continue
            code = data.get("exit_code")
            if code == 0:
                found[jid] = self.job_status_dict(job_id=jid, status=self.FINISHED, code=0)
            else:
                error = data.get("error") or "no error message"
                found[jid] = self.job_status_dict(job_id=jid, status=self.FAILED, code=code,
                                                  error=f"exit code {code}: {error}")
        asked = time.monotonic()
        due = [jid for jid in rest if asked - self._answers.get(jid, (-SYSTEM_QUERY_INTERVAL_S, {}))[0]
               >= SYSTEM_QUERY_INTERVAL_S]
        if due:
            try:
                answer = self.query_system(due, *args, **kwargs)
            except Exception:
                if silent:
                    return None
                raise
            self._answers.update({jid: (asked, data) for jid, data in answer.items()})
        found.update({jid: self._answers[jid][1] for jid in rest})
        now = time.time()
        for jid, data in found.items():
            if data["status"] in (self.FINISHED, self.FAILED):
                self.noticed.setdefault(str(jid), now)
        return found if chunking else found[job_id]

    def query_system(self, job_ids: list, *args: Any, **kwargs: Any) -> dict:
        """The states of ``job_ids`` as the batch system knows them (law's own query)."""
        answer = super().query(list(job_ids), *args, **kwargs)  # type: ignore[misc]
        return dict(answer)


class SlurmJobs(ExitFiles, law.slurm.SlurmJobManager):
    """law's Slurm manager with a status query that needs no accounting (see the module docstring)."""

    def query_system(self, job_ids: list, partition: Any = None, _processes: Any = None, **kwargs: Any) -> dict:
        cmd = [*shlex.split(law.config.Config.instance().get_expanded("job", "slurm_cmd_squeue")), "--noheader",
               "--states=all", "--format=%i|%T|%r", "--jobs", ",".join(map(str, job_ids))]
        code, out, err = interruptable_popen(quote_cmd(cmd), shell=True, executable="/bin/bash",
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, kill_timeout=2,
                                             processes=_processes)
        if code != 0 and "invalid job id" not in err.lower():
            raise RuntimeError(f"squeue exited {code}: {err.strip()}")
        states: dict[str, tuple[str, str]] = {}
        for line in (out if code == 0 else "").splitlines():
            parts = line.strip().split("|", 2)
            if len(parts) == 3:
                states[parts[0]] = (parts[1], parts[2])
        answer = {}
        for jid in job_ids:
            if str(jid) not in states:
                answer[jid] = self.job_status_dict(job_id=jid, status=self.FAILED,
                                                   error="Slurm no longer knows the job and it left no exit file "
                                                         "(killed, then forgotten after MinJobAge)")
                continue
            state, reason = states[str(jid)]
            status = self.map_status(state)
            error = None if status != self.FAILED else f"{state}" + (f" ({reason})" if reason not in ("", "None")
                                                                      else "")
            answer[jid] = self.job_status_dict(job_id=jid, status=status, error=error)
        return answer


class HTCondorJobs(ExitFiles, law.htcondor.HTCondorJobManager):
    """law's HTCondor manager, answering from exit files first."""


class LSFJobs(ExitFiles, law.lsf.LSFJobManager):
    """law's LSF manager, answering from exit files first."""


MANAGERS = {"slurm": SlurmJobs, "htcondor": HTCondorJobs, "lsf": LSFJobs}
