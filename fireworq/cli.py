"""``fireworq``: shorthand for ``twistd --nodaemon --pidfile= fireworq``.

The daemon runs in the foreground and writes no ``twistd.pid`` (use ``--pid`` for a PID
file), so two generations can run side by side during a graceful restart.
"""

from __future__ import annotations

import sys


def main() -> None:
    from twisted.scripts.twistd import run

    sys.argv = [sys.argv[0], "--nodaemon", "--pidfile=", "fireworq", *sys.argv[1:]]
    run()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
