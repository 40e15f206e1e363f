"""The dashboard: server-rendered pages (Jinja2) with a little JavaScript, served by the API.

- `site`: mounts the pages, their event stream and the static files.
- `session`: sign-in with an API token kept in a cookie, and CSRF checks.
- `runs`, `jobs`, `system`, `signin`, `events`: the page routes.
- `graph`: the layered layout of a run's job graph.

Every asset is in `static/` (vendored libraries in `static/vendor/`), so the
pages work without network access beyond the API itself.
"""
