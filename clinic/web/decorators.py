"""The two decorators every route uses, ``page`` for HTML and ``api`` for JSON: who may call
the route, the CSRF check, and domain errors (clinic.errors) turned into the error page or a
4xx ``{"error": ...}``. With them, the answers a route gives besides a page: a JSON error and a
redirect."""

import functools
import json
from urllib.parse import urlencode

from bottle import HTTPResponse, request, response

from clinic import audit
from clinic.errors import ClinicError
from clinic.i18n import _
from clinic.web.csrf import csrf_ok
from clinic.web.rendering import render
from clinic.web.sessions import current_user, origin

ANYONE_SIGNED_IN = ("patient", "doctor", "admin", "desk")


def json_error(status, message, **extra):
    body = json.dumps({"error": message, **extra})
    return HTTPResponse(body, status=status, **{"Content-Type": "application/json"})


def redirect(url, status=303):
    """303 See Other: after a POST the browser GETs the next page. Keeps the cookies set so
    far (a bare HTTPResponse would drop them)."""
    res = response.copy(cls=HTTPResponse)
    res.status = status
    res.body = ""
    res.set_header("Location", url)
    raise res


def _csrf_refused():
    if request.path.startswith("/api/"):
        return json_error(403, "CSRF check failed: send the X-CSRF-Token header.")
    return HTTPResponse(
        render("error.html", status=403, title=_("Form expired"),
               message=_("This form has expired or was sent from another site. Go back, "
                         "reload the page and try again.")),
        status=403)


def page(*roles):
    """An HTML route. With roles, the user must be signed in with one of them (else a redirect
    to sign in, or 403). Every POST must carry the CSRF token. Domain errors not handled by the
    route render the error page with their status."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if request.method == "POST" and not csrf_ok():
                return _csrf_refused()
            user = current_user()
            if roles:
                if user is None:
                    redirect("/login?" + urlencode({"next": request.fullpath}))
                if user.role not in roles:
                    audit.refusal(user, kwargs, **origin())
                    return render("error.html", status=403, title=_("Not allowed"),
                                  message=_("Your account does not have access to this page."))
            try:
                return fn(*args, **kwargs)
            except ClinicError as exc:
                audit.refusal(user, kwargs, exc, **origin())
                return render("error.html", status=exc.status, title=_("Cannot do that"),
                              message=exc.message)

        return wrapper

    return decorate


def api(*roles):
    """A JSON route. The caller signs in with a bearer token (or a session cookie, in which case a
    POST must carry the X-CSRF-Token header). Domain errors become ``{"error": ...}`` with their
    status; a dict returned is sent as JSON."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            user = current_user()
            if roles:
                if user is None:
                    return json_error(401, "Sign in first: send Authorization: Bearer <token>.")
                if user.role not in roles:
                    audit.refusal(user, kwargs, **origin())
                    return json_error(403, "Your account does not have access to this.")
            if (request.method == "POST" and request.environ.get("clinic.auth") == "cookie"
                    and user is not None and not csrf_ok()):
                return _csrf_refused()
            try:
                result = fn(*args, **kwargs)
            except ClinicError as exc:
                audit.refusal(user, kwargs, exc, **origin())
                extra = {"fields": exc.fields} if exc.fields else {}
                return json_error(exc.status, exc.message, **extra)
            response.content_type = "application/json"
            return json.dumps(result, default=str) if isinstance(result, dict | list) else result

        wrapper.api_roles = roles
        return wrapper

    return decorate


