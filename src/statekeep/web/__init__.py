"""statekeep.web: a live dashboard of a store, and live entities for your own pages.

    app = statekeep.web.app(store)           # an ASGI app: uvicorn, gunicorn, granian
    statekeep serve sqlite:///app.db         # the same, served

Pages update over server-sent events in Datastar's protocol (see _protocol).
Needs the web extra: pip install 'statekeep[web]'. See docs/web.md.
"""

from ._app import app
from ._live import live
from ._serve import from_env, serve

__all__ = ["app", "from_env", "live", "serve"]
