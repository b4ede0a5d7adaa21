"""The JSON API under /api/: bearer tokens, JSON errors ``{"error": ...}`` with 4xx, lists
wrapped in an object with a plural key. Described by /api/openapi.json."""

import bottle

routes = bottle.Bottle()
