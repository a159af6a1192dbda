"""The run display: one redrawn line on a terminal, plain lines otherwise, fed by task reports."""
from __future__ import annotations

import io
import time

from tracerflow.tasks import progress as channel
from tracerflow.workflows.display import RunDisplay


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the display did not catch up"
        time.sleep(0.02)


def test_a_terminal_gets_one_redrawn_line_with_tasks_done_and_the_running_task():
    stream = _Terminal()
    with RunDisplay(stream) as display:
        display.to_run.update({"A(x=1)", "A(x=2)", "B()"})
        channel.publish({"task": "A(x=1)", "state": "running"})
        channel.publish({"task": "A(x=1)", "state": "progress", "percent": 40,
                         "message": "A x=1: 4,000 of 10,000 events"})
        _wait_for(lambda: "4,000" in stream.getvalue())
        channel.publish({"task": "A(x=1)", "state": "done"})
        channel.publish({"task": "A(x=2)", "state": "failed"})
        _wait_for(lambda: "1 failed" in stream.getvalue())
    text = stream.getvalue()
    assert "\r\x1b[K[0/3 tasks] A x=1: 4,000 of 10,000 events (40%)" in text
    assert "\r\x1b[K[1/3 tasks, 1 failed]" in text
    assert "\n" not in text and text.endswith("\r\x1b[K")  # the line is cleared at the end
    assert channel._channel["queue"] is None


def test_plain_output_gets_a_line_per_interval_while_it_changes():
    stream = io.StringIO()
    with RunDisplay(stream, interval=0.05) as display:
        display.to_run.update({"A()", "B()"})
        channel.publish({"task": "A()", "state": "progress", "percent": 50, "message": "A: epoch 1 of 2 done"})
        _wait_for(lambda: "epoch 1 of 2" in stream.getvalue())
        time.sleep(0.3)  # nothing changed: no more lines
        channel.publish({"task": "A()", "state": "done"})
        _wait_for(lambda: "[1/2 tasks]\n" in stream.getvalue())
    lines = stream.getvalue().splitlines()
    assert lines == ["tracerflow: [0/2 tasks] A: epoch 1 of 2 done (50%)", "tracerflow: [1/2 tasks]"]


def test_reports_go_nowhere_when_nothing_listens():
    assert channel._channel["queue"] is None
    channel.publish({"task": "A()", "state": "done"})  # no queue, no error
