"""What the daemon shows the tools teams already run: Prometheus metrics, OpenTelemetry
spans, alert webhooks and Control Panel telemetry.

Each exporter is told of settled calls (`RouterService.observers`) and of events (a bus
subscription), and does its own I/O in its own task: none may block or fail a call.
"""
