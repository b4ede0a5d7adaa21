"""Who is signed in: a session cookie (pages) or a bearer token (the API), each a random token
whose hash is kept server-side (clinic/auth.py); signing in and out; and where a request comes
from, as the audit log records it."""

from bottle import request, response

from clinic import auth, details, settings
from clinic.web import csrf
from clinic.web.cookies import set_cookie

SESSION_COOKIE = "clinic_session"


def client_ip():
    return request.environ.get("REMOTE_ADDR", "")[:64]


def origin():
    """Where this request comes from, as the audit log records it: ``address`` and ``path``."""
    return {"address": client_ip(), "path": f"{request.method} {request.fullpath}"}


def current_user():
    """The signed-in user of this request (cookie or bearer token), or None. Cached per
    request."""
    env = request.environ
    if "clinic.user" not in env:
        user = None
        header = env.get("HTTP_AUTHORIZATION", "")
        if header.lower().startswith("bearer "):
            user = auth.user_for_token(header[7:].strip(), "api")
            env["clinic.auth"] = "bearer"
        else:
            user = auth.user_for_token(request.get_cookie(SESSION_COOKIE), "web")
            env["clinic.auth"] = "cookie"
        env["clinic.user"] = user
    return env["clinic.user"]


def sign_in(user):
    token = auth.start_session(user, "web", ip=client_ip())
    set_cookie(SESSION_COOKIE, token, max_age=int(settings.get().session_lifetime.total_seconds()))
    csrf.renew()
    request.environ["clinic.user"] = user


def sign_out():
    auth.end_session(request.get_cookie(SESSION_COOKIE))
    response.delete_cookie(SESSION_COOKIE, path="/")
    request.environ["clinic.user"] = None


def home_for(user):
    """Where ``user`` lands after signing in. An admin of a clinic whose time zone nobody has
    confirmed lands on the Clinic page: a rented server's zone (UTC) is rarely the clinic's."""
    if getattr(user, "role", None) == "admin" and not details.current().timezone_confirmed:
        return "/admin/clinic"
    return {"patient": "/patient", "doctor": "/doctor", "admin": "/admin",
            "desk": "/desk"}.get(
        getattr(user, "role", None), "/")
