"""The doctor's pages."""

import bottle

routes = bottle.Bottle()
