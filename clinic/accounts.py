"""Accounts people look after themselves: a password reset by email, the profile and a new email
address confirmed by a link, a changed password, and two-factor sign-in with an authenticator
app (TOTP, RFC 6238) and single-use recovery codes.

Emailed links carry a random token of which only the SHA-256 is stored (AccountToken), as are
recovery codes. A TOTP secret must be kept to check codes: it is shown once, at enrolment, and
goes into no log and no audit entry.

Throttles reuse the sign-in's (clinic/auth.py): failed attempts are LoginAttempt rows, a reset
request under the key ``reset:<email>``, a wrong code under ``2fa:<email>``, so five of either in
15 minutes lock that step for the account, and twenty failures of any kind one address.

``CLINIC_REQUIRE_2FA`` names roles that must have two-factor sign-in: someone of such a role
without it gets, on signing in, only an enrolment session (Session kind ``enr``, 15 minutes)
that opens nothing but the enrolment, so no patient data is reachable before it is done.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

import pyotp
import segno
from peewee import IntegrityError

from clinic import audit, auth, clock, details, people, settings
from clinic.db import database
from clinic.errors import ClinicError, Conflict, Invalid, NotFound, check
from clinic.i18n import N_, _
from clinic.mail import outbox, sms
from clinic.models import ROLES, AccountToken, LoginAttempt, Patient, RecoveryCode, Totp, User

RESET_LIFETIME = timedelta(hours=1)
EMAIL_CHANGE_LIFETIME = timedelta(days=1)
ENROL_LIFETIME = timedelta(minutes=15)
ENROL_KIND = "enr"  # the Session kind of an enrolment-only sign-in
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
BAD_LINK = N_("This link has expired or was used already. Ask for a new one.")


def _roles(raw):
    """``admin,doctor``: roles of the clinic, comma-separated. An unknown name is refused, so a
    typo cannot leave a role unguarded."""
    roles = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r}; the roles are " + ", ".join(ROLES))
    return roles


settings.register(settings.Setting(
    "require_2fa", "", _roles,
    "Roles that must sign in with an authenticator app's code too, comma-separated (e.g. "
    "admin,doctor): they set it up at their next sign-in. Default: nobody must."))


class CodeRequired(ClinicError):
    """Two-factor sign-in is on and no valid code came with the password."""

    status = 401


class EnrolmentRequired(ClinicError):
    """The account's role must have two-factor sign-in (CLINIC_REQUIRE_2FA) and it has none."""

    status = 403


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()


# -- emailed one-time links ------------------------------------------------------------------------


def _new_link(user, purpose, lifetime, now, new_email=""):
    """A fresh token for ``purpose``; the user's earlier ones for it stop working."""
    token = secrets.token_urlsafe(32)
    AccountToken.delete().where(AccountToken.user == user.id,
                                AccountToken.purpose == purpose).execute()
    row = AccountToken.create(user=user.id, purpose=purpose, token_hash=_digest(token),
                              new_email=new_email, created_at=now, expires_at=now + lifetime)
    return token, row


def _link(token, purpose, now):
    """The unused, unexpired AccountToken of an active user for ``token``, or Invalid."""
    row = (AccountToken.select(AccountToken, User).join(User)
           .where(AccountToken.token_hash == _digest(token or ""),
                  AccountToken.purpose == purpose, AccountToken.used_at.is_null(),
                  AccountToken.expires_at > now, User.active)
           .first())
    if row is None:
        raise Invalid(_(BAD_LINK), {"token": _(BAD_LINK)})
    return row


def _use(row, now):
    """Mark the link used; only one of two racing requests gets to."""
    used = (AccountToken.update(used_at=now)
            .where(AccountToken.id == row.id, AccountToken.used_at.is_null()).execute())
    if used != 1:
        raise Invalid(_(BAD_LINK), {"token": _(BAD_LINK)})


def _count_failure(key, ip, now):
    LoginAttempt.create(email=key[:254], ip=ip[:64], at=now, success=False)


def request_reset(email, ip, now=None):
    """Email a reset link to ``email`` if it is an active account's; say nothing either way.
    Raises auth.Throttled after too many requests for the address or from ``ip``. Returns the
    outbox message (None when nothing was sent), for the caller's logs and the tests."""
    now = now or clock.now()
    email = auth.normalize_email(email)
    key = "reset:" + email
    auth.check_throttle(key[:254], ip, now)
    # Every request counts (known or not), so the throttle says nothing about who is a patient.
    _count_failure(key, ip, now)
    user = User.get_or_none(User.email == email, User.active)
    if user is None:
        return None
    with database.atomic():
        token, row = _new_link(user, "reset", RESET_LIFETIME, now)
        # A random key, not the row's id: SQLite gives a deleted row's id to the next one.
        return outbox.enqueue(
            "password_reset", f"password_reset:{user.id}:{secrets.token_hex(8)}", user.email,
            user=user, priority=10,
            context={"name": user.name, "reset_url": f"{settings.get().base_url}/reset/{token}",
                     "expires_at": row.expires_at, "lifetime": RESET_LIFETIME})


def check_reset_link(token, now=None):
    """The user a reset link is for, or Invalid: for the page behind the link."""
    return _link(token, "reset", now or clock.now()).user


def reset_password(token, password, address="", path="", now=None):
    """Set a new password with a reset link: once, within the hour, the newest link only. Ends
    every sign-in and every other link of the user. Returns the user."""
    now = now or clock.now()
    row = _link(token, "reset", now)
    if problem := people.password_problem(password):
        raise Invalid(problem, {"password": problem})
    user = row.user
    with database.atomic():
        _use(row, now)
        User.update(password_hash=auth.hash_password(password)).where(User.id == user.id).execute()
        auth.end_all_sessions(user.id)
        AccountToken.delete().where(AccountToken.user == user.id,
                                    AccountToken.id != row.id).execute()
        audit.record(user, "reset password", _patient_id(user), address=address, path=path,
                     now=now)
        _tell(user, N_("The password of your account was reset with an emailed link."), now)
    return user


def _tell(user, change, now, **values):
    """Email the account's own address that ``change`` happened ("Your password was changed."),
    so a change its owner did not make does not go unnoticed. Inside the change's transaction:
    no change, no email. ``change`` is marked with N_ and translated in the email, in the
    user's language, with ``values`` for its %(name)s."""
    outbox.enqueue(
        "account_changed", f"account_changed:{user.id}:{secrets.token_hex(8)}", user.email,
        user=user, priority=10,
        context={"name": user.name, "change": change, "change_values": values, "changed_at": now,
                 "reset_url": f"{settings.get().base_url}/forgot"})


def _patient_id(user):
    return user.id if user.role == "patient" else None


# -- profile and password --------------------------------------------------------------------------


def pending_email(user, now=None):
    """The new address waiting for its confirmation, or None."""
    return (AccountToken.select(AccountToken.new_email)
            .where(AccountToken.user == user.id, AccountToken.purpose == "email",
                   AccountToken.used_at.is_null(), AccountToken.expires_at > (now or clock.now()))
            .scalar())


def profile(user):
    """What GET /api/me and the profile page show."""
    patient = Patient.get_or_none(Patient.user == user.id)
    return {
        "id": user.id, "name": user.name, "email": user.email, "role": user.role,
        "phone": patient.phone if patient else None,
        "date_of_birth": patient.date_of_birth.isoformat() if patient and patient.date_of_birth
        else None,
        "language": user.language or None,
        "channel": patient.channel if patient else None,
        "sms_opted_out": bool(sms.opted_out([sms.e164(patient.phone)])) if patient else None,
        "totp_enabled": totp_enabled(user),
        "pending_email": pending_email(user),
    }


def update_profile(user, changes, now=None):
    """Change the name, the language, and a patient's phone and date of birth, from ``changes``
    (only the keys given). A different ``email`` takes effect once the link sent to it is
    followed. Validates everything before writing anything; returns the profile."""
    now = now or clock.now()
    errors = {}
    user_changes, patient_changes = {}, {}
    if "name" in changes:
        name = (changes["name"] or "").strip()
        if not name:
            errors["name"] = _("Enter a name.")
        elif len(name) > 200:
            errors["name"] = _("The name is too long (200 characters at most).")
        user_changes["name"] = name
    if "language" in changes:
        user_changes["language"] = people.parse_language(changes["language"], errors)
        if not user_changes["language"]:
            errors["language"] = _("Choose a language.")
    for field in ("phone", "date_of_birth", "channel"):
        if field in changes and user.role != "patient":
            errors[field] = _("Only a patient's account holds this.")
    if "phone" in changes and user.role == "patient":
        patient_changes["phone"] = people.parse_phone(changes["phone"], errors)
    if user.role == "patient" and ("channel" in changes or "phone" in changes):
        patient_changes.update(people.parse_channel(user.id, changes, patient_changes, errors))
    if "date_of_birth" in changes and user.role == "patient":
        patient_changes["date_of_birth"] = people.parse_birth_date(changes["date_of_birth"],
                                                                   errors)
    new_email = auth.normalize_email(changes.get("email")) if changes.get("email") else ""
    if new_email == user.email:
        new_email = ""
    if new_email and (problem := people.email_problem(new_email)):
        errors["email"] = problem
    check(errors)
    with database.atomic():
        if user_changes:
            User.update(**user_changes).where(User.id == user.id).execute()
        if patient_changes:
            Patient.update(**patient_changes).where(Patient.user == user.id).execute()
        user = User.get_by_id(user.id)
        if new_email:
            token, row = _new_link(user, "email", EMAIL_CHANGE_LIFETIME, now, new_email)
            outbox.enqueue(
                "email_change", f"email_change:{user.id}:{secrets.token_hex(8)}", new_email,
                user=user, priority=10,
                context={"name": user.name, "new_email": new_email,
                         "confirm_url": f"{settings.get().base_url}/account/email/{token}",
                         "expires_at": row.expires_at, "lifetime": EMAIL_CHANGE_LIFETIME})
    return profile(user)


PATIENT_FIELDS = ("name", "email", "phone", "date_of_birth", "channel", "language")


def update_patient(staff, patient_id, changes, address="", path="", now=None):
    """The front desk's or an admin's ``changes`` to a patient's details (PATIENT_FIELDS only),
    checked and applied as the patient's own would be (update_profile), and audited with the
    fields that changed, in the same transaction. Staff may give an email to a patient who has
    none, never replace one: the link of a new address would let whoever reads it take over
    the account and its records. Returns the patient's profile."""
    patient = people.patient_contact(patient_id)
    changes = {name: value for name, value in changes.items() if name in PATIENT_FIELDS}
    new_email = auth.normalize_email(changes.get("email") or "")
    if patient.user.email and new_email and new_email != patient.user.email:
        message = _("Only the patient changes their email, on their own account page.")
        raise Invalid(message, {"email": message})
    before = profile(patient.user)
    with database.atomic():
        result = update_profile(patient.user, changes, now)
        shown = {"email": "pending_email"}.get  # a new email is pending, not yet the email
        changed = sorted(name for name in changes
                         if result[shown(name, name)] != before[shown(name, name)])
        if changed:
            audit.record(staff, "update patient", patient.user_id, reason=", ".join(changed),
                         address=address, path=path, now=now)
    return result


def check_email_link(token, now=None):
    """The AccountToken (with .user and .new_email) behind an email confirmation link."""
    return _link(token, "email", now or clock.now())


def confirm_email(token, now=None):
    """Make the new address the account's; returns the user."""
    now = now or clock.now()
    row = _link(token, "email", now)
    try:
        with database.atomic():
            _use(row, now)
            User.update(email=row.new_email).where(User.id == row.user_id).execute()
            # To the address it was until now: the one its owner reads.
            _tell(row.user, N_("Your account's email address was changed to %(email)s."), now,
                  email=row.new_email)
    except IntegrityError:  # someone registered the address meanwhile
        message = _("An account with this email already exists.")
        raise Invalid(message, {"email": message}) from None
    return User.get_by_id(row.user_id)


def change_password(user, current_password, new_password, ip, keep_token, now=None):
    """Replace the password. A wrong current one counts as a failed sign-in (and can raise
    auth.Throttled); success ends every sign-in but the one made with ``keep_token``."""
    now = now or clock.now()
    if auth.authenticate(user.email, current_password, ip, now=now) is None:
        message = _("The current password is not right.")  # noqa: S105 (a message)
        raise Invalid(message, {"current_password": message})
    if problem := people.password_problem(new_password):
        raise Invalid(problem, {"new_password": problem})
    with database.atomic():
        User.update(password_hash=auth.hash_password(new_password)).where(
            User.id == user.id).execute()
        auth.end_other_sessions(user.id, keep_token)
        _tell(user, N_("The password of your account was changed."), now)


# -- two-factor sign-in ----------------------------------------------------------------------------


def totp_enabled(user):
    return Totp.select().where(Totp.user == user.id, Totp.enabled_at.is_null(False)).exists()


def _enrolment(user, secret):
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=details.current().name)
    return {"secret": secret, "otpauth_uri": uri,
            "qr_svg": segno.make(uri, error="m").svg_inline(scale=4, title="QR code")}


def start_enrolment(user, now=None):
    """A new secret for ``user``, not yet in force: its ``secret``, ``otpauth_uri`` and the
    QR code as ``qr_svg``. Conflict when two-factor sign-in is on already."""
    if totp_enabled(user):
        raise Conflict(_("Two-factor sign-in is on already. An admin can reset it if your "
                       "authenticator is lost."))
    secret = pyotp.random_base32()
    with database.atomic():
        Totp.delete().where(Totp.user == user.id).execute()
        Totp.create(user=user.id, secret=secret, created_at=now or clock.now())
    return _enrolment(user, secret)


def pending_enrolment(user):
    """The enrolment started and not confirmed yet (as start_enrolment gives it), or None."""
    row = Totp.get_or_none(Totp.user == user.id, Totp.enabled_at.is_null())
    return _enrolment(user, row.secret) if row else None


def confirm_enrolment(user, code, ip, now=None):
    """Turn two-factor sign-in on with a first code from the app; returns ten recovery codes,
    shown this once (only their hashes are kept)."""
    now = now or clock.now()
    row = Totp.get_or_none(Totp.user == user.id, Totp.enabled_at.is_null())
    if row is None:
        raise Conflict(_("Start setting up two-factor sign-in first."))
    key = "2fa:" + user.email
    auth.check_throttle(key[:254], ip, now)
    step = _matching_step(row.secret, code, now)
    if step is None:
        _count_failure(key, ip, now)
        message = _("The code is not right. Enter the 6 digits the app shows now.")
        raise Invalid(message, {"code": message})
    with database.atomic():
        Totp.update(enabled_at=now, last_step=step).where(Totp.user == user.id).execute()
        codes = _replace_recovery_codes(user)
        _tell(user, N_("Two-factor sign-in was turned on for your account."), now)
    return codes


def _replace_recovery_codes(user):
    """Ten new recovery codes for ``user`` in place of any left; only their hashes are kept."""
    codes = ["-".join((c[:5], c[5:])) for c in
             ("".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10))
              for _ in range(RECOVERY_CODES))]
    RecoveryCode.delete().where(RecoveryCode.user == user.id).execute()
    RecoveryCode.insert_many([{"user": user.id, "code_hash": _digest(_plain(c))}
                              for c in codes]).execute()
    return codes


def _check_own_code(user, code, ip, now):
    """A change to a user's own two-factor sign-in needs a code now, not only a sign-in: a
    browser left signed in must not be enough to weaken the account."""
    if not totp_enabled(user):
        raise Conflict(_("Two-factor sign-in is off."))
    try:
        check_code(user, code, ip, now)
    except CodeRequired as exc:
        raise Invalid(exc.message, {"code": exc.message}) from None


def new_recovery_codes(user, code, ip, now=None):
    """Ten new recovery codes in place of the old ones (used up, or seen by someone else), with
    a code from the app or a recovery code; shown this once."""
    now = now or clock.now()
    _check_own_code(user, code, ip, now)
    with database.atomic():
        codes = _replace_recovery_codes(user)
        _tell(user, N_("New recovery codes were made for your account; the old ones no longer "
                       "work."), now)
    return codes


def turn_off_totp(user, code, ip, now=None):
    """Turn one's own two-factor sign-in off, with a code from the app or a recovery code.
    Refused (Conflict) to a role that must have it (CLINIC_REQUIRE_2FA)."""
    now = now or clock.now()
    if user.role in roles_required():
        raise Conflict(_("Your account must use two-factor sign-in, so it cannot be turned off. "
                       "For a new phone, ask an admin to reset it, then set it up again."))
    _check_own_code(user, code, ip, now)
    with database.atomic():
        Totp.delete().where(Totp.user == user.id).execute()
        RecoveryCode.delete().where(RecoveryCode.user == user.id).execute()
        _tell(user, N_("Two-factor sign-in was turned off for your account."), now)


def _plain(code):
    return "".join((code or "").split()).replace("-", "").lower()


def _matching_step(secret, code, now):
    """The time step (30 s) within one step of ``now`` whose code is ``code``, or None."""
    code = "".join((code or "").split())
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in (current, current - 1, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def roles_required():
    """The roles that must use two-factor sign-in (CLINIC_REQUIRE_2FA)."""
    return settings.get().require_2fa


def sign_in_step(user):
    """What a sign-in with the right password still needs: None, "totp" (a code), or "enrol"
    (the role must have two-factor sign-in and this account has none)."""
    if totp_enabled(user):
        return "totp"
    if user.role in roles_required():
        return "enrol"
    return None


def check_code(user, code, ip, now=None):
    """Accept a TOTP code (each once: never again within its window) or an unused recovery
    code. Raises CodeRequired without one or with a wrong one, auth.Throttled after five wrong
    ones in 15 minutes."""
    now = now or clock.now()
    if not (code or "").strip():
        raise CodeRequired("Enter the 6-digit code from your authenticator app, or a recovery "
                           "code.")
    key = ("2fa:" + user.email)[:254]
    auth.check_throttle(key, ip, now)
    if _use_totp(user, code, now) or _use_recovery_code(user, code, now):
        LoginAttempt.delete().where(LoginAttempt.email == key, ~LoginAttempt.success).execute()
        return
    _count_failure(key, ip, now)
    raise CodeRequired("The code is not right, or was used already. Enter the code the app "
                       "shows now.")


def _use_totp(user, code, now):
    row = Totp.get_or_none(Totp.user == user.id, Totp.enabled_at.is_null(False))
    step = _matching_step(row.secret, code, now) if row else None
    if step is None:
        return False
    # A step at or before the newest one accepted is a replay; the condition settles a race.
    return (Totp.update(last_step=step)
            .where(Totp.user == user.id, Totp.last_step < step).execute()) == 1


def _use_recovery_code(user, code, now):
    plain = _plain(code)
    if len(plain) != 10:
        return False
    return (RecoveryCode.update(used_at=now)
            .where(RecoveryCode.user == user.id, RecoveryCode.code_hash == _digest(plain),
                   RecoveryCode.used_at.is_null()).execute()) == 1


def recovery_codes_left(user):
    return (RecoveryCode.select()
            .where(RecoveryCode.user == user.id, RecoveryCode.used_at.is_null()).count())


def start_enrolment_session(user, ip=""):
    """A sign-in that opens only the enrolment; returns its token."""
    return auth.start_session(user, ENROL_KIND, ip=ip, lifetime=ENROL_LIFETIME)


def enrolling_user(token):
    return auth.user_for_token(token, ENROL_KIND)


def reset_totp(admin, user_id, address="", path="", now=None):
    """An admin turns off another user's two-factor sign-in (their authenticator is lost);
    audited. The user sets it up again (at the next sign-in, if their role must have it)."""
    people.require_role(admin, "admin")
    target = User.get_or_none(User.id == user_id)
    if target is None:
        raise NotFound(_("No such user."))
    with database.atomic():
        Totp.delete().where(Totp.user == target.id).execute()
        RecoveryCode.delete().where(RecoveryCode.user == target.id).execute()
        audit.record(admin, "reset two-factor", _patient_id(target),
                     reason=f"two-factor sign-in of {target.name} ({target.role}, id "
                            f"{target.id}) turned off",
                     address=address, path=path, now=now)
        _tell(target, N_("Two-factor sign-in was turned off for your account by the clinic."),
              now or clock.now())
    return target


def with_totp():
    """Users who have two-factor sign-in on, for the admin's list."""
    return (User.select(User).join(Totp, on=(Totp.user == User.id))
            .where(Totp.enabled_at.is_null(False)).order_by(User.name))
