"""Observability building blocks: Prometheus metrics, a health/metrics HTTP server, a webhook sink.

Importing this package has no side effects: nothing listens and no thread starts until
`HealthServer.start()` or the first `WebhookSink.send()`.
"""

from daemon.telemetry.http import HealthServer
from daemon.telemetry.metrics import Metrics, UnknownLabelError
from daemon.telemetry.webhook import WebhookSink

__all__ = ["HealthServer", "Metrics", "UnknownLabelError", "WebhookSink"]
