"""pytest settings shared by every test.

With ``FIREWORQ_TEST_REQUIRE_MYSQL`` set (CI), a run in which any test was skipped fails:
a skipped MariaDB test must not pass for a green build.

Every test is a method of a trial ``TestCase``: a plain test function makes pytest-twisted
run the reactor in a greenlet of its own, and every trial test after it then fails with an
unclean reactor (seen: one such function before tests/test_signals.py failed all of it).
Collection refuses them.
"""

from __future__ import annotations

import os
import unittest

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def in_test_case(item: pytest.Item) -> bool:
        cls = getattr(item, "cls", None)
        return isinstance(cls, type) and issubclass(cls, unittest.TestCase)

    plain = [item.nodeid for item in items if not in_test_case(item)]
    if plain:
        raise pytest.UsageError(
            "tests must be methods of a twisted.trial.unittest.TestCase (see conftest.py);"
            " not: " + ", ".join(plain))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not os.environ.get("FIREWORQ_TEST_REQUIRE_MYSQL"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and session.exitstatus == 0:
        reporter.write_line("FAILED: %d test(s) skipped with FIREWORQ_TEST_REQUIRE_MYSQL set"
                            % skipped, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
