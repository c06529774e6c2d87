"""The HTTP routes, one module per resource: photo, jobs, live, info.

A new resource is one module here with an ``APIRouter`` named ``router``, listed in
:data:`ROUTERS`; :func:`maskwatch.server.app.create_app` mounts them all (and any extra routers it
is given, like a dashboard's).
"""

from __future__ import annotations

from maskwatch.server.routes import info, jobs, live, photo

#: Every router the app mounts, in order.
ROUTERS = (photo.router, jobs.router, live.router, info.router, info.pages)

__all__ = ["ROUTERS"]
