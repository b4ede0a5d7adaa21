"""Signed, expiring tokens for links that work without signing in (cancel, review, unsubscribe,
export download). JSON payload + HMAC-SHA256 with the clinic's secret key; never pickle.

A token is ``<base64url(json)>.<base64url(mac)>``. The ``purpose`` is part of what is signed,
so a review link cannot be replayed as a cancel link.
"""

import base64
import functools
import hashlib
import hmac
import json

from clinic import clock, settings
from clinic.errors import LinkExpired, NotFound


class BadSignature(ValueError):
    pass


class Expired(BadSignature):
    pass


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(purpose, body, key=None):
    mac = _keyed(key or settings.get().secret_key).copy()
    mac.update(purpose.encode() + b"\x00" + body)
    return mac.digest()


@functools.lru_cache(maxsize=4)
def _keyed(key):
    # HMAC's key set up once: a reminder run signs two links a reminder, and the set-up was
    # most of each signature's cost.
    return hmac.new(key.encode(), digestmod=hashlib.sha256)


def sign(purpose, payload, expires_at=None, key=None):
    """A token carrying ``payload`` (a JSON-able dict) for ``purpose``, valid until
    ``expires_at`` (an aware datetime) if given."""
    data = dict(payload)
    if expires_at is not None:
        data["exp"] = int(expires_at.timestamp())
    body = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64(body)}.{_b64(_mac(purpose, body, key))}"


def unsign(purpose, token, now=None, key=None):
    """The payload of a token made by ``sign(purpose, ...)``; raises BadSignature or Expired."""
    try:
        body_text, mac_text = token.split(".")
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (ValueError, AttributeError):
        raise BadSignature("malformed token") from None
    if not hmac.compare_digest(mac, _mac(purpose, body, key)):
        raise BadSignature("bad signature")
    data = json.loads(body)
    exp = data.pop("exp", None)
    if exp is not None and (now or clock.now()).timestamp() > exp:
        raise Expired("link expired")
    return data


def open_link(purpose, token, expired, invalid, now=None):
    """The payload of a link's token, refused as a page would say it: LinkExpired with the
    message ``expired`` once the token has expired, NotFound with ``invalid`` if we did not
    make it."""
    try:
        return unsign(purpose, token, now=now)
    except Expired:
        raise LinkExpired(expired) from None
    except BadSignature:
        raise NotFound(invalid) from None
