"""``python -m fireworq``: the ``fireworq`` command."""

from fireworq.cli import main

main()
