"""Non-zero luigi exit codes for failures, unless the user's luigi.cfg chose its own."""
from __future__ import annotations

import luigi.configuration

RETCODES = {
    "already_running": 10,
    "missing_data": 20,
    "not_run": 25,
    "task_failed": 30,
    "scheduling_error": 35,
    "unhandled_exception": 40,
}


def install_retcodes() -> None:
    """Set luigi's ``[retcode]`` entries that the loaded luigi config leaves unset."""
    config = luigi.configuration.get_config()
    if not config.has_section("retcode"):
        config.add_section("retcode")
    for key, code in RETCODES.items():
        if not config.has_option("retcode", key):
            config.set("retcode", key, str(code))
