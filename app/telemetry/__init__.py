"""Metrics and logs, with no HTTP and nothing else of the app: ``metrics`` (the Prometheus registry),
``redaction`` (secrets out of log records) and ``logs`` (request ids and the root logging setup). The ASGI
middleware that feeds them is ``app.api.telemetry``; ``app.observability`` re-exports all of it."""
