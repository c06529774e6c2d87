"""Watch a site: many cameras in one process, a live dashboard, Prometheus metrics, streams that come back.

``maskwatch watch SITE.toml`` is :func:`maskwatch.watch.command.run_watch`; the pieces are usable alone:
:func:`load_site` (the site file), :class:`Monitor` (cameras, shared classifier, metrics),
:func:`maskwatch.watch.web.mount` (the dashboard's routes on a FastAPI app).
"""

from maskwatch.watch.config import CameraConfig, SiteConfig, load_site, parse_site
from maskwatch.watch.monitor import Monitor

__all__ = ["CameraConfig", "Monitor", "SiteConfig", "load_site", "parse_site"]
