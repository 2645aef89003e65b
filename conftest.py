"""pytest settings shared by every test.

With ``FIREWORQ_TEST_REQUIRE_MYSQL`` set (CI), a run in which any test was skipped fails:
a skipped MariaDB test must not pass for a green build.
"""

from __future__ import annotations

import os

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not os.environ.get("FIREWORQ_TEST_REQUIRE_MYSQL"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and session.exitstatus == 0:
        reporter.write_line("FAILED: %d test(s) skipped with FIREWORQ_TEST_REQUIRE_MYSQL set"
                            % skipped, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
