"""The status pages for the person on call (`connector.web.app`), served read-only beside `/metrics`
and `/healthz` by the metrics server; their views (`pages`), the chart (`chart`), the waitress server
(`server`), the Jinja2 templates (`templates/`) and the stylesheet (`static/`)."""
