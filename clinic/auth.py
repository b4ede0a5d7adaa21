"""Who someone is: passwords (argon2id), sign-ins (server-side sessions and API tokens, only the
token's hash stored) and the throttle on failed sign-ins."""

import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from clinic import clock, settings
from clinic.models import LoginAttempt, Session, User

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password")


def use_hasher(hasher):
    """Hash and check passwords with ``hasher`` from now on (an argon2 PasswordHasher): the
    tests use the same algorithm with cheaper parameters."""
    global _hasher, _DUMMY_HASH
    _hasher, _DUMMY_HASH = hasher, hasher.hash("not a password")


MIN_PASSWORD_LENGTH = 8

# Throttle: this many failures in the window locks the account (or the address) for the window.
ACCOUNT_FAILURES = 5
ADDRESS_FAILURES = 20
THROTTLE_WINDOW = timedelta(minutes=15)
API_TOKEN_LIFETIME = timedelta(days=30)


def hash_password(password):
    return _hasher.hash(password)


def check_password(user, password):
    """True if ``password`` is the user's; upgrades an outdated hash in place."""
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if _hasher.check_needs_rehash(user.password_hash):
        User.update(password_hash=hash_password(password)).where(User.id == user.id).execute()
    return True


def normalize_email(email):
    return (email or "").strip().lower()


class Throttled(Exception):
    """Too many failed sign-ins; ``retry_after`` is a timedelta."""

    def __init__(self, retry_after):
        super().__init__("too many failed sign-ins")
        self.retry_after = retry_after


def check_throttle(email, ip, now):
    """Raise Throttled when ``email`` (any key of failures) or ``ip`` failed too often lately."""
    since = now - THROTTLE_WINDOW
    for column, value, limit in ((LoginAttempt.email, email, ACCOUNT_FAILURES),
                                 (LoginAttempt.ip, ip, ADDRESS_FAILURES)):
        failures = (LoginAttempt.select(LoginAttempt.at)
                    .where(column == value, LoginAttempt.at > since, ~LoginAttempt.success)
                    .order_by(LoginAttempt.at.desc()).limit(limit))
        times = [row.at for row in failures]
        if len(times) >= limit:
            # Locked until the oldest of the last `limit` failures leaves the window.
            raise Throttled(times[-1] + THROTTLE_WINDOW - now)


def authenticate(email, password, ip, now=None):
    """The active user with these credentials, or None. Raises Throttled when the account or
    the address has failed too often recently. Every attempt is recorded."""
    now = now or clock.now()
    email = normalize_email(email)
    check_throttle(email, ip, now)
    user = User.get_or_none(User.email == email)
    if user is None:
        try:
            _hasher.verify(_DUMMY_HASH, password or "")
        except VerificationError:
            pass
        ok = False
    else:
        ok = user.active and check_password(user, password or "")
    LoginAttempt.create(email=email, ip=ip, at=now, success=ok)
    if ok:
        # A success clears the account's failures, so a patient who mistyped twice is not
        # locked out tomorrow by today's typos.
        LoginAttempt.delete().where(LoginAttempt.email == email, ~LoginAttempt.success).execute()
        return user
    return None


def _token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(user, kind="web", ip="", now=None, lifetime=None):
    """A new random token for ``user``; only its hash is stored. Returns the token."""
    now = now or clock.now()
    token = secrets.token_urlsafe(32)
    lifetime = lifetime or (settings.get().session_lifetime if kind == "web"
                            else API_TOKEN_LIFETIME)
    Session.create(token_hash=_token_hash(token), user=user, kind=kind, created_at=now,
                   last_seen_at=now, expires_at=now + lifetime, ip=ip[:64])
    return token


def user_for_token(token, kind, now=None):
    """The active user signed in with ``token``, or None. Web sessions slide: each use
    (at most once a minute, to spare writes) pushes the expiry forward."""
    if not token:
        return None
    now = now or clock.now()
    session = (Session.select(Session.id, Session.last_seen_at, User)
               .join(User)
               .where(Session.token_hash == _token_hash(token), Session.kind == kind,
                      Session.expires_at > now, User.active)
               .first())
    if session is None:
        return None
    if kind == "web" and now - session.last_seen_at > timedelta(minutes=1):
        (Session.update(last_seen_at=now, expires_at=now + settings.get().session_lifetime)
         .where(Session.id == session.id).execute())
    return session.user


def end_session(token):
    if token:
        Session.delete().where(Session.token_hash == _token_hash(token)).execute()


def end_all_sessions(user):
    Session.delete().where(Session.user == user).execute()


def end_other_sessions(user, token):
    """End every sign-in of ``user`` but the one made with ``token``."""
    Session.delete().where(Session.user == user, Session.token_hash != _token_hash(token or "")
                           ).execute()


def purge_expired(now=None):
    """Delete expired sessions and old sign-in attempts; returns how many rows went."""
    now = now or clock.now()
    gone = Session.delete().where(Session.expires_at <= now).execute()
    gone += LoginAttempt.delete().where(LoginAttempt.at < now - timedelta(days=30)).execute()
    return gone
