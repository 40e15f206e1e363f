"""The HTTP API: webhooks, REST endpoints, live logs and the dashboard."""
