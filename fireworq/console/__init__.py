"""The web console's static files (``static/``), served at ``/console/`` by
``fireworq.api.console``; see docs/console.md."""
