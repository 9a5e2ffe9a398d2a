"""The HTTP pieces the API and the web pages share: who is calling (``deps``), the request forms (``forms``),
uploads and pictures (``files``), error answers (``errors``), middleware, rate limits, settings and the JSON shapes
(``schemas``). Both ``api`` and ``web`` build on this layer; neither imports the other."""

API_PREFIX = "/api/v1"
"""Where the JSON API is served."""
