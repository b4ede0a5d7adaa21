"""The admin's pages."""

import bottle

routes = bottle.Bottle()
