"""The HTTP API: routes (app), the server around them (site), shapes and checks."""
