"""The PostgreSQL job queue: the worker's client and the claimed-job model."""
