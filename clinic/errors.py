"""What domain functions raise when a request cannot be done. The web layer turns them into a
form error or a 4xx JSON ``{"error": ...}``; nothing half-written is left behind because each
domain function validates before it writes, inside one transaction."""

from clinic.i18n import _


class ClinicError(Exception):
    status = 400

    def __init__(self, message, fields=None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class Invalid(ClinicError):
    """Bad input. ``fields`` maps a form field to what is wrong with it."""

    status = 400


class Forbidden(ClinicError):
    status = 403


class NotFound(ClinicError):
    status = 404


class LinkExpired(ClinicError):
    """A signed link used after it expired."""

    status = 410


class Conflict(ClinicError):
    """The request was fine but the world disagrees (the slot was just taken)."""

    status = 409


def check(errors, message=None):
    """Raise Invalid if the ``errors`` dict collected by a validator is not empty."""
    if errors:
        message = message or _("Please correct the highlighted fields.")
        raise Invalid(message if len(errors) > 1 else next(iter(errors.values())), errors)


class NoAccess(NotFound):
    """NotFound from an access check (people.patient_for, appointments.appointment_for,
    exports.export_for): missing, or not this user's to see, and they are not told which. The
    web layer writes it to the audit log as a refusal. ``what`` and ``ident`` name what was
    asked for, e.g. ("appointment", 12)."""

    def __init__(self, message, what, ident):
        super().__init__(message)
        self.what = what
        self.ident = ident
