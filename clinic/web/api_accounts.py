"""The JSON API of accounts (clinic/accounts.py): password reset, the profile (/api/me), a
changed password, two-factor sign-in, and the second step of POST /api/login. create_app()
merges these routes with api_routes', so /api/openapi.json describes them too."""

import bottle
from bottle import request, response

from clinic import accounts, auth
from clinic.errors import NotFound, check
from clinic.i18n import _
from clinic.web import api_input
from clinic.web.csrf import csrf_ok
from clinic.web.decorators import ANYONE_SIGNED_IN, api, json_error
from clinic.web.inputs import json_body
from clinic.web.openapi import SCHEMAS, doc
from clinic.web.sessions import SESSION_COOKIE, client_ip, current_user, origin

routes = bottle.Bottle()


def _own_token():
    """The token this request signed in with (bearer or cookie)."""
    if request.environ.get("clinic.auth") == "bearer":
        return request.get_header("Authorization", "")[7:].strip()
    return request.get_cookie(SESSION_COOKIE) or ""


def _signed_in_or_enrolling():
    """The signed-in user, or one holding an enrolment token (as the bearer token) from a
    sign-in that CLINIC_REQUIRE_2FA stopped; else None."""
    user = current_user()
    if user is None:
        header = request.get_header("Authorization", "")
        if header.lower().startswith("bearer "):
            user = accounts.enrolling_user(header[7:].strip())
    return user


def _for_enrolling_too(fn):
    """Document the route as signed-in only (bearer), which it is: the check is in the route,
    because an enrolment token is not a sign-in the ``api`` decorator knows."""
    fn.api_roles = ANYONE_SIGNED_IN
    return fn


def second_factor(user):
    """POST /api/login's step after a right password: None when the sign-in may go on, else
    the answer: 401 with ``totp_required`` (no or a wrong code), 429, or 403 with an
    ``enrolment_token`` when the role must have two-factor sign-in and the account has none."""
    step = accounts.sign_in_step(user)
    if step is None:
        return None
    if step == "enrol":
        token = accounts.start_enrolment_session(user, client_ip())
        return json_error(
            403, "Your account must use two-factor sign-in. Set it up first: POST /api/me/totp "
                 "and POST /api/me/totp/confirm with the enrolment_token as the bearer token, "
                 "then sign in with the code.",
            enrolment_required=True, enrolment_token=token)
    code = json_body().get("totp")
    try:
        accounts.check_code(user, code if isinstance(code, str) else "", client_ip())
    except auth.Throttled as exc:
        return api_input.throttled(exc, "Too many tries.")
    except accounts.CodeRequired as exc:
        return json_error(401, exc.message, totp_required=True)
    return None


# -- password reset -------------------------------------------------------------------------------


@routes.post("/api/password-reset")
@api()
@doc("Ask for a password reset link by email", body="ResetRequest", returns="Accepted", ok=202,
     errors={429: "Too many requests for this address, or from this client: wait the seconds "
                  "in Retry-After."},
     description="Answers 202 whether or not the address is an account's, so nobody learns who "
                 "is a patient. An active account's address gets one email with a link "
                 "/reset/<token>, valid for 1 hour and once; a newer request voids older links. "
                 "Five requests for one address (twenty failures from one client) in 15 "
                 "minutes: 429.")
def password_reset():
    errors = {}
    data = api_input.texts(json_body(), ("email",), errors)
    check(errors)
    try:
        accounts.request_reset(data["email"], client_ip())
    except auth.Throttled as exc:
        return api_input.throttled(exc, "Too many tries.")
    response.status = 202
    return {"accepted": True}


@routes.post("/api/password-reset/confirm")
@api()
@doc("Set a new password with the token of a reset link", body="ResetConfirm",
     returns="PasswordChanged",
     errors={400: "The token is unknown, used or expired (`fields.token`), or the password breaks "
                  "the rules of registration (`fields.password`)."},
     description="Ends every sign-in and every API token of the account. Two-factor sign-in, "
                 "if on, stays on.")
def password_reset_confirm():
    errors = {}
    data = api_input.texts(json_body(), ("token", "password"), errors)
    check(errors)
    accounts.reset_password(data["token"], data["password"], **origin())
    return {"password_changed": True}


# -- the profile and the password ------------------------------------------------------------------


@routes.get("/api/me")
@api(*ANYONE_SIGNED_IN)
@doc("The signed-in user's profile", returns="Me")
def me():
    return accounts.profile(current_user())


@routes.route("/api/me", method="PATCH")
@api(*ANYONE_SIGNED_IN)
@doc("Change the profile: name, language, and a patient's phone, date of birth and channel; "
     "or the email",
     body="ProfileChanges", returns="Me",
     description="Only the fields sent change. A phone is E.164 once spaces are taken out "
                 "(+49 30 1234567); a date of birth is in the past; `channel` (email, sms or "
                 "both) needs a phone for SMS. A new email takes effect "
                 "once the link emailed to it is followed (POST /api/me/email/confirm); until "
                 "then it is `pending_email`. A language is one of CLINIC_LANGUAGES; it decides "
                 "the pages and every message the person gets.")
def me_update():
    if request.environ.get("clinic.auth") == "cookie" and not csrf_ok():
        return json_error(403, "CSRF check failed: send the X-CSRF-Token header.")
    errors = {}
    changes = api_input.texts(json_body(), ("name", "phone", "date_of_birth", "email",
                                            "language", "channel"), errors, present_only=True)
    check(errors)
    return accounts.update_profile(current_user(), changes)


@routes.post("/api/me/email/confirm")
@api()
@doc("Confirm a new email address with the token of its link", body="EmailConfirm",
     returns="EmailChanged",
     errors={400: "The token is unknown, used or expired, or the address was taken meanwhile."})
def email_confirm():
    errors = {}
    data = api_input.texts(json_body(), ("token",), errors)
    check(errors)
    user = accounts.confirm_email(data["token"])
    return {"email": user.email}


@routes.post("/api/me/password")
@api(*ANYONE_SIGNED_IN)
@doc("Change the password", body="PasswordChange", returns="PasswordChanged",
     errors={400: "The current password is not right (it counts as a failed sign-in), or the "
                  "new one breaks the rules of registration.", 429: None},
     description="Ends every other sign-in and API token of the account; this one goes on.")
def me_password():
    errors = {}
    data = api_input.texts(json_body(), ("current_password", "new_password"), errors)
    check(errors)
    try:
        accounts.change_password(current_user(), data["current_password"],
                                 data["new_password"], client_ip(), _own_token())
    except auth.Throttled as exc:
        return api_input.throttled(exc, "Too many tries.")
    return {"password_changed": True}


# -- two-factor sign-in ----------------------------------------------------------------------------


@routes.post("/api/me/totp")
@_for_enrolling_too
@api()
@doc("Start setting up two-factor sign-in (TOTP)", returns="TotpEnrolment",
     errors={409: "Two-factor sign-in is on already."},
     description="A new secret for an authenticator app, as base32, an otpauth:// URI and a QR "
                 "code (SVG). Nothing changes at sign-in until POST /api/me/totp/confirm. The "
                 "bearer token may be the enrolment_token of a sign-in that CLINIC_REQUIRE_2FA "
                 "stopped.")
def totp_start():
    user = _signed_in_or_enrolling()
    if user is None:
        return json_error(401, "Sign in first: send Authorization: Bearer <token>.")
    return accounts.start_enrolment(user)


@routes.post("/api/me/totp/confirm")
@_for_enrolling_too
@api()
@doc("Turn two-factor sign-in on with a first code", body="TotpCode", returns="RecoveryCodes",
     errors={400: "The code is not right.", 409: "No setting up was started.", 429: None},
     description="Answers ten single-use recovery codes, shown this once. From now on POST "
                 "/api/login needs `totp`: a code from the app, or a recovery code.")
def totp_confirm():
    user = _signed_in_or_enrolling()
    if user is None:
        return json_error(401, "Sign in first: send Authorization: Bearer <token>.")
    errors = {}
    data = api_input.texts(json_body(), ("code",), errors)
    check(errors)
    try:
        codes = accounts.confirm_enrolment(user, data["code"], client_ip())
    except auth.Throttled as exc:
        return api_input.throttled(exc, "Too many tries.")
    if current_user() is None:  # signed in only to enrol: that sign-in is done
        auth.end_session(request.get_header("Authorization", "")[7:].strip())
    return {"recovery_codes": codes}


def _own_code_change(change):
    """Run ``change(user, code, ip)`` for the signed-in user with the body's ``code``; too many
    wrong codes answer 429."""
    errors = {}
    data = api_input.texts(json_body(), ("code",), errors)
    check(errors)
    try:
        return change(current_user(), data["code"], client_ip())
    except auth.Throttled as exc:
        raise api_input.throttled(exc, "Too many tries.") from None


@routes.post("/api/me/totp/recovery-codes")
@api(*ANYONE_SIGNED_IN)
@doc("Make new recovery codes in place of the old ones", body="TotpCode",
     returns="RecoveryCodes",
     errors={400: "The code is not right.", 409: "Two-factor sign-in is off.", 429: None},
     description="Needs a code from the app (or a recovery code). The old codes stop working; "
                 "the new ten are shown this once.")
def totp_new_codes():
    return {"recovery_codes": _own_code_change(accounts.new_recovery_codes)}


@routes.post("/api/me/totp/disable")
@api(*ANYONE_SIGNED_IN)
@doc("Turn one's own two-factor sign-in off", body="TotpCode", returns="TotpReset",
     errors={400: "The code is not right.",
             409: "It is off already, or the account's role must have it.", 429: None},
     description="Needs a code from the app (or a recovery code). Refused to the roles "
                 "CLINIC_REQUIRE_2FA names.")
def totp_disable():
    _own_code_change(accounts.turn_off_totp)
    return {"user_id": current_user().id, "totp_enabled": False}


@routes.post("/api/admin/users/<user_id>/totp-reset")
@api("admin")
@doc("Turn off a user's two-factor sign-in (their authenticator is lost)",
     returns="TotpReset", description="Recorded in the audit log.")
def totp_reset(user_id):
    if not (user_id.isascii() and user_id.isdigit() and len(user_id) <= 18):
        raise NotFound(_("No such user."))
    target = accounts.reset_totp(current_user(), int(user_id), **origin())
    return {"user_id": target.id, "totp_enabled": False}


_STR = {"type": "string"}


def _object(properties, required=()):
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


SCHEMAS.update({
    "ResetRequest": _object({"email": _STR}, ["email"]),
    "Accepted": _object({"accepted": {"type": "boolean"}}, ["accepted"]),
    "ResetConfirm": _object({
        "token": {"type": "string", "description": "The last part of the emailed link."},
        "password": {"type": "string", "minLength": 8},
    }, ["token", "password"]),
    "PasswordChanged": _object({"password_changed": {"type": "boolean"}}, ["password_changed"]),
    "Me": _object({
        "id": {"type": "integer", "minimum": 1}, "name": _STR, "email": _STR,
        "role": {"type": "string", "enum": ["patient", "doctor", "admin", "desk"]},
        "phone": {"type": "string", "nullable": True, "description": "Patients only."},
        "date_of_birth": {"type": "string", "format": "date", "nullable": True},
        "language": {"type": "string", "nullable": True,
                     "description": "A code of CLINIC_LANGUAGES, such as de; not chosen yet: "
                                    "null (the clinic's first language)."},
        "channel": {"type": "string", "nullable": True, "enum": ["email", "sms", "both"],
                    "description": "How a patient gets confirmations, cancellations and "
                                   "reminders; null for other roles."},
        "sms_opted_out": {"type": "boolean", "nullable": True,
                          "description": "The patient's phone replied STOP: no SMS until it "
                                         "replies START. Null for other roles."},
        "totp_enabled": {"type": "boolean"},
        "pending_email": {"type": "string", "nullable": True,
                          "description": "A new address waiting for its confirmation."},
    }, ["id", "name", "email", "role", "phone", "date_of_birth", "language", "channel",
        "sms_opted_out", "totp_enabled"]),
    "ProfileChanges": _object({
        "name": {"type": "string", "maxLength": 200},
        "phone": {"type": "string", "example": "+49 30 1234567"},
        "date_of_birth": {"type": "string", "format": "date"},
        "email": {"type": "string", "description": "Takes effect once confirmed."},
        "language": {"type": "string", "example": "de",
                     "description": "One of CLINIC_LANGUAGES; another is refused with 400."},
        "channel": {"type": "string", "enum": ["email", "sms", "both"],
                    "description": "Patients only; sms and both need a phone."},
    }),
    "EmailConfirm": _object({"token": _STR}, ["token"]),
    "EmailChanged": _object({"email": _STR}, ["email"]),
    "PasswordChange": _object({"current_password": _STR,
                               "new_password": {"type": "string", "minLength": 8}},
                              ["current_password", "new_password"]),
    "TotpEnrolment": _object({
        "secret": {"type": "string", "description": "Base32, for typing into the app."},
        "otpauth_uri": {"type": "string", "description": "otpauth://totp/... for the app."},
        "qr_svg": {"type": "string", "description": "The URI as a QR code, an SVG element."},
    }, ["secret", "otpauth_uri", "qr_svg"]),
    "TotpCode": _object({"code": {"type": "string", "pattern": "^[0-9]{6}$"}}, ["code"]),
    "RecoveryCodes": _object({"recovery_codes": {
        "type": "array", "items": _STR, "minItems": 10, "maxItems": 10,
        "description": "Each works once instead of a code; only their hashes are kept."}},
        ["recovery_codes"]),
    "TotpReset": _object({"user_id": {"type": "integer", "minimum": 1},
                          "totp_enabled": {"type": "boolean"}}, ["user_id", "totp_enabled"]),
})
SCHEMAS["Error"]["properties"].update({
    "totp_required": {"type": "boolean",
                      "description": "POST /api/login: send `totp` (a code or a recovery code)."},
    "enrolment_required": {"type": "boolean",
                           "description": "POST /api/login: set up two-factor sign-in first."},
    "enrolment_token": {"type": "string",
                        "description": "The bearer token for POST /api/me/totp and "
                                       "/api/me/totp/confirm; 15 minutes."},
})
SCHEMAS["Credentials"]["properties"]["totp"] = {
    "type": "string", "description": "With two-factor sign-in on: the app's code, or a recovery "
                                     "code."}
