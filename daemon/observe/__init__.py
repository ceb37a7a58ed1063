"""Observability building blocks: Prometheus metrics, a health/metrics HTTP server, a webhook sink.

Importing this package has no side effects: nothing listens and no thread starts until
`HealthServer.start()` or the first `WebhookSink.send()`.
"""

from daemon.observe.http import HealthServer
from daemon.observe.metrics import Metrics, UnknownLabelError
from daemon.observe.webhook import WebhookSink

__all__ = ["HealthServer", "Metrics", "UnknownLabelError", "WebhookSink"]
