"""tracerflow's own warnings reach the terminal as one line; other warnings as Python shows them."""
from __future__ import annotations

import logging

from tracerflow.evaluate import NullMetricWarning
from tracerflow.workflows import reporting


def test_our_warnings_are_one_log_record_and_others_go_to_pythons_display(monkeypatch, caplog):
    shown = []
    monkeypatch.setitem(reporting._state, "show_warning", lambda *args: shown.append(args))
    logger = logging.getLogger("tracerflow")
    monkeypatch.setattr(logger, "propagate", False)  # as reporting.setup leaves it: records reach caplog once
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="tracerflow"):
            reporting._show_warning(NullMetricWarning("no 'ujets' weight passes the cut"), NullMetricWarning,
                                    "/somewhere/evaluate/predict.py", 391)
            reporting._show_warning(UserWarning("not ours"), UserWarning, "/elsewhere/module.py", 7)
    finally:
        logger.removeHandler(caplog.handler)
    assert [r.getMessage() for r in caplog.records] == ["warning: no 'ujets' weight passes the cut"]
    assert len(shown) == 1 and shown[0][1] is UserWarning and shown[0][2:4] == ("/elsewhere/module.py", 7)
