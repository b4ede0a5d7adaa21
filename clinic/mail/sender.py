"""Sending one message after another over SMTP, or writing each to <data_dir>/outbox/ as an .eml
file while no SMTP host is set; and telling a passing failure from a permanent one.
"""

import logging
import os
import re
import smtplib
import ssl

from clinic import clock, settings
from clinic.mail.errors import PermanentError, TransientError, Unavailable
from clinic.settings import Setting

log = logging.getLogger("clinic.mail.compose")


# -- settings -------------------------------------------------------------------------------------


def _timeout(raw):
    value = settings.duration(raw)
    if not value:
        raise ValueError("must be more than 0 seconds")
    return value


settings.register(
    Setting("smtp_host", "", settings.text,
            "SMTP server that sends the clinic's email. Empty: each email is written to "
            "<data_dir>/outbox/ as an .eml file instead, and nothing is sent."),
    Setting("smtp_port", "587", settings.port,
            "Port of the SMTP server: 587 for starttls, 465 for tls."),
    Setting("smtp_user", "", settings.text,
            "User name on the SMTP server. Empty: do not sign in."),
    Setting("smtp_password", "", str, "Password on the SMTP server.", secret=True),
    Setting("smtp_security", "starttls", settings.choice("none", "starttls", "tls"),
            "How the SMTP connection is encrypted: starttls, tls, or none (a local relay only)."),
    Setting("smtp_timeout", "10s", _timeout,
            "How long to wait for the SMTP server at each step before trying again later."),
)


# -- sending --------------------------------------------------------------------------------------


_SERVER_ERRORS = (smtplib.SMTPException, OSError)  # what the server or the network can raise


def classify(exc):
    """The TransientError or PermanentError that an exception raised while sending means."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refusals = list(exc.recipients.values())
        reason = "; ".join(f"{code} {_text(text)}" for code, text in refusals) or "refused"
        permanent = bool(refusals) and all(code >= 500 for code, _ in refusals)
        return (PermanentError if permanent else TransientError)(f"recipient refused: {reason}")
    if isinstance(exc, smtplib.SMTPResponseException):
        reason = f"{exc.smtp_code} {_text(exc.smtp_error)}"
        return (PermanentError if 500 <= exc.smtp_code < 600 else TransientError)(reason)
    # smtplib reports a timeout while reading a reply as SMTPServerDisconnected.
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        return TransientError("the SMTP server did not answer in time")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientError("the SMTP server closed the connection")
    if isinstance(exc, _SERVER_ERRORS):
        return TransientError(str(exc) or type(exc).__name__)
    # Not the server's doing but ours (a bug): tried again later, like a lost connection.
    return TransientError(f"internal error: {type(exc).__name__}: {exc}")


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _classified(exc):
    """classify(exc), raised from ``exc`` when raised."""
    if not isinstance(exc, _SERVER_ERRORS):
        log.error("sending a message failed on an internal error", exc_info=exc)
    error = classify(exc)
    error.__cause__ = exc
    return error



def _closed_by_server(exc):
    """True when ``exc`` says the server closed the connection (without a word, or with a 421),
    rather than that it did not answer in time or refused the message."""
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return not isinstance(exc.__context__, TimeoutError)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(code == 421 for code in codes)
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code == 421


class Sender:
    """Sends messages over one SMTP connection, opened at the first send and kept for the batch;
    with no CLINIC_SMTP_HOST, writes each to <data_dir>/outbox/ instead. Use as a context manager
    so the connection is closed.

    After a failure the connection is dropped; the next message opens a new one. A kept
    connection that the server closed meanwhile (idle for too long, or at its limit of messages
    a connection) is opened again, once, for the message that found it closed."""

    def __init__(self, s=None):
        self.settings = s or settings.get()
        self.connection = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc_info):
        if exc_type is None:
            self.close()
        else:  # stopped mid-message, maybe: no QUIT that could land inside its text
            self._drop()

    def send(self, message):
        """Send the EmailMessage ``message`` with smtplib's send_message; raises TransientError
        (Unavailable when the server cannot be reached at all) or PermanentError. Without an
        SMTP host, returns the .eml file's path."""
        if not self.settings.smtp_host:
            return self._write(message)
        while True:
            kept = self.connection is not None
            if not kept:
                self.connection = self._connect()
            try:
                self.connection.send_message(message)
                return None
            except Exception as exc:  # a bug too: this message is tried again later, not a crash
                self._drop()
                if not (kept and _closed_by_server(exc)):
                    raise _classified(exc) from exc

    def check(self):
        """Connect to the SMTP server (and sign in), ask it for a NOOP, and close: can mail be
        sent? Raises Unavailable, as send() does, when the server cannot be used."""
        s = self.settings
        self.connection = self._connect()
        try:
            self.connection.noop()
        except _SERVER_ERRORS as exc:
            self._drop()
            raise Unavailable(f"cannot use the SMTP server {s.smtp_host}:{s.smtp_port}: "
                              f"{classify(exc)}") from exc
        self.close()

    def close(self):
        if self.connection is not None:
            try:
                self.connection.quit()
            except _SERVER_ERRORS:
                pass  # the messages are sent; a rude goodbye changes nothing
            self._drop()

    def _connect(self):
        s = self.settings
        timeout = s.smtp_timeout.total_seconds()
        connection = None
        try:
            if s.smtp_security == "tls":
                connection = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=timeout,
                                              context=ssl.create_default_context())
            else:
                connection = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=timeout)
            if s.smtp_security == "starttls":
                connection.starttls(context=ssl.create_default_context())
            if s.smtp_user:
                connection.login(s.smtp_user, s.smtp_password)
        except _SERVER_ERRORS as exc:
            if connection is not None:
                connection.close()
            # Whatever the code (a 535 for a wrong password is a 5xx), this is not the message's
            # fault: it will be tried again, and the batch stops here.
            raise Unavailable(f"cannot use the SMTP server {s.smtp_host}:{s.smtp_port}: "
                              f"{classify(exc)}") from exc
        return connection

    def _drop(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _write(self, message):
        """Write <data_dir>/outbox/<timestamp>-<id>.eml whole or not at all; returns its path."""
        try:
            return self._written(message)
        except OSError as exc:
            raise TransientError(f"cannot write to the outbox folder: {exc}") from exc

    def _written(self, message):
        folder = self.settings.data_path / "outbox"
        folder.mkdir(parents=True, exist_ok=True)
        ident = re.sub(r"[^A-Za-z0-9]", "", str(message["Message-ID"]).split("@")[0])
        path = folder / f"{clock.now().strftime('%Y%m%dT%H%M%S%fZ')}-{ident or 'message'}.eml"
        tmp = folder / f".{path.name}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(message.as_bytes(policy=message.policy.clone(linesep="\r\n")))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path
