"""The cookies the app sets: every one HttpOnly and SameSite=Lax (Secure over HTTPS), and the
flash message, a short cookie that carries one line of text to the next page."""

from urllib.parse import quote, unquote

from bottle import request, response

from clinic import settings

FLASH_COOKIE = "clinic_flash"


def _is_https():
    return request.urlparts.scheme == "https" or settings.get().base_url.startswith("https://")


def set_cookie(name, value, max_age=None):
    """Set cookie ``name``; without ``max_age`` it lasts as long as the browser session."""
    # Bottle writes a max_age of None out as "Max-Age=None", which clients may refuse.
    lifetime = {} if max_age is None else {"max_age": max_age}
    response.set_cookie(name, value, path="/", httponly=True, samesite="Lax",
                        secure=_is_https(), **lifetime)


def flash(message):
    """Show ``message`` on the next page (text only, escaped on output)."""
    set_cookie(FLASH_COOKIE, quote(message[:300]), max_age=60)


def pop_flash():
    """The flash message sent with this request, once: the cookie is deleted."""
    env = request.environ
    if "clinic.flash" not in env:
        raw = request.get_cookie(FLASH_COOKIE)
        env["clinic.flash"] = None
        if raw:
            env["clinic.flash"] = unquote(raw)
            response.delete_cookie(FLASH_COOKIE, path="/")
    return env["clinic.flash"]
