"""The patient's pages."""

import bottle

routes = bottle.Bottle()
