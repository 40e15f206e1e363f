"""Metrics computed by PostgreSQL: live figures, history views, Prometheus export.

- `figures`: the live figures and the figures read from the 30-day views,
  one named query and one Prometheus metric each.
- `history`: the summary and the time series behind the dashboard charts,
  read from the materialized views of migration 0008_metrics.sql.
- `prometheus`: the collector that turns figures into the exposition format.

The views are refreshed by the `metrics_refresh` maintenance loop and the log
ingest counters sampled by the `log_ingest_sample` loop
(`minijenkin.maintenance`).
"""
