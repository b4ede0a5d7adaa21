"""Reading what a request sent: a form as plain text, a JSON body, where to go after signing in,
and which page of a list is asked for."""

import json

import bottle
from bottle import request

from clinic.web.decorators import json_error

PAGE_SIZE = 25  # rows on one page of an admin list


def form():
    """The submitted form as a plain dict of str (decoded as UTF-8, stripped of NULs)."""
    forms = request.forms.decode()
    return {k: forms.getunicode(k, default="").replace("\x00", "") for k in forms}


def json_body():
    """The request's JSON object, or a 400 JSON error."""
    raw = request.body.read(bottle.BaseRequest.MEMFILE_MAX + 1)
    if len(raw) > bottle.BaseRequest.MEMFILE_MAX:
        raise json_error(413, "Request body too large.")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise json_error(400, "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise json_error(400, "The body must be a JSON object.")
    if has_nul(data):
        raise json_error(400, "The body must not contain NUL characters (\\u0000).")
    return data


def has_nul(value):
    """Whether a NUL is in ``value`` (a string, or JSON's lists and dicts, keys included)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False


def safe_next(url, default="/"):
    """Only same-site paths may follow a sign-in."""
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return default


def paging():
    """The page number a list page is asked for, and the ``limit`` and ``offset`` that fetch its
    rows plus one: that one only tells whether a next page exists."""
    try:
        number = max(1, int(request.query.get("page", "1")))
    except ValueError:
        number = 1
    return number, {"limit": PAGE_SIZE + 1, "offset": (number - 1) * PAGE_SIZE}


def one_page(rows):
    """The rows ``paging()`` fetched, as (this page's rows, whether there is a next page)."""
    rows = list(rows)
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
