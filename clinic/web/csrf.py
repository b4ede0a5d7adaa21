"""CSRF protection: each browser has a random secret in a cookie, and every form carries an HMAC
of it under the secret key (JSON callers signed in by cookie send it as X-CSRF-Token)."""

import hashlib
import hmac
import secrets

from bottle import request

from clinic import settings
from clinic.web.cookies import set_cookie

CSRF_COOKIE = "clinic_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def _secret():
    """This browser's random CSRF secret (a cookie), created on first need."""
    env = request.environ
    if "clinic.csrf" not in env:
        value = request.get_cookie(CSRF_COOKIE)
        if not value or len(value) < 20:
            value = secrets.token_urlsafe(32)
            set_cookie(CSRF_COOKIE, value)
        env["clinic.csrf"] = value
    return env["clinic.csrf"]


def renew():
    """A new secret, at every sign-in: a token seen before sign-in is worth nothing after."""
    set_cookie(CSRF_COOKIE, secrets.token_urlsafe(32))


def csrf_token():
    """The token forms carry: an HMAC of the browser's CSRF cookie under the secret key, so a
    cookie planted by someone else is useless without the key."""
    key = settings.get().secret_key.encode()
    return hmac.new(key, b"csrf:" + _secret().encode(), hashlib.sha256).hexdigest()


def csrf_ok():
    sent = request.forms.get(CSRF_FIELD) or request.get_header(CSRF_HEADER) or ""
    cookie = request.get_cookie(CSRF_COOKIE)
    if not cookie:
        return False
    return hmac.compare_digest(sent, csrf_token())
