"""The audit log: every view or export of a patient's medical history, and every access refused,
with who (and their name and role at the time), whose record, what, when, from which address,
and how it ended.

Entries are only ever added. Nothing in the app changes or deletes them, and the database
refuses to: migration 0003 puts triggers on audit_entry that abort any UPDATE or DELETE, so
neither a bug nor a clean-up can rewrite the record.

Where entries come from:

- the routes that show or export a history call ``opened()`` (access checked here, like
  people.patient_for) or ``allowed()`` (the patient's own history), once each;
- the ``page`` and ``api`` decorators (clinic/web.py) call ``refusal()`` whenever they refuse a
  signed-in user: a role the route does not admit (403), or a NoAccess from an access check
  (404: people.patient_for, appointments.appointment_for, exports.export_for). Someone not
  signed in is sent to sign in, and that is not logged.

The log knows nothing of the web: callers pass who acted and from where (``address``, and
``path`` as "METHOD /path?query").
"""

from peewee import fn

from clinic import clock, filters, people
from clinic.errors import NoAccess
from clinic.models import AUDIT_OUTCOMES, Appointment, AuditEntry, Export, User

ALLOWED, REFUSED = AUDIT_OUTCOMES
# What the filter offers; the first three come from the history routes, the rest from refusals.
ACTIONS = ("view history", "export history", "download export", "view patient",
           "view appointment", "change appointment", "view export", "open page", "call API")
ACTIONS += ("reset password", "reset two-factor")  # clinic/accounts.py: account changes
ACTIONS += ("amend record",)  # clinic/records.py: a completed visit's record corrected
# Changes made for a patient by someone else (the desk, an admin, a doctor): on_behalf().
ACTIONS += ("book appointment", "move appointment", "cancel appointment", "check in",
            "register patient")


def record(user, action, patient_id=None, outcome=ALLOWED, reason="", address="", path="",
           now=None):
    """Add one entry and return it. ``user`` is the User acting (None: nobody signed in);
    ``patient_id`` the patient whose record it concerns, if known."""
    patient_name = ""
    if patient_id is not None:
        patient_name = (User.select(User.name)
                        .where(User.id == patient_id, User.role == "patient").scalar()) or ""
    return AuditEntry.create(
        at=now or clock.now(),
        user_id=user.id if user else None,
        user_name=user.name if user else "",
        role=user.role if user else "",
        patient_id=patient_id,
        patient_name=patient_name,
        action=action,
        outcome=outcome,
        reason=reason[:300],
        address=address[:64],
        path=path[:300],
    )


def patient_concerned(what, ident):
    """The id of the patient whose record ``what`` ``ident`` is part of ("patient" 7,
    "appointment" 12, "export" "<task id>"), or None when there is no such thing."""
    if what == "export":
        return Export.select(Export.patient).where(Export.task_id == str(ident)[:64]).scalar()
    try:
        ident = int(ident)  # ids from an address arrive as text
    except (TypeError, ValueError):
        return None
    if not 1 <= ident < 2**63:
        return None
    if what == "patient":
        return User.select(User.id).where(User.id == ident, User.role == "patient").scalar()
    if what == "appointment":
        return Appointment.select(Appointment.patient).where(Appointment.id == ident).scalar()
    return None


# -- what the routes log ---------------------------------------------------------------------------


def allowed(user, action, patient_id, address="", path=""):
    """Log that ``user`` is shown (or given) ``patient_id``'s history."""
    return record(user, action, patient_id, address=address, path=path)


def on_behalf(user, action, appointment, address="", path=""):
    """Log that ``user`` booked, moved, cancelled or checked in ``appointment`` for its patient;
    nothing when the patient did it themself."""
    if user is None or user.id == appointment.patient_id:
        return None
    return record(user, action, appointment.patient_id, address=address, path=path)


def opened(user, action, patient_id, address="", path=""):
    """The patient (people.patient_for) whose history ``user`` opens for ``action``, logged as
    allowed; or NotFound, logged as refused."""
    where = {"address": address, "path": path}
    try:
        patient = people.patient_for(user, patient_id)
    except NoAccess as exc:
        _refused(user, action, exc, where)
        exc.audited = True  # so that the decorator does not log it a second time
        raise
    record(user, action, patient.user_id, **where)
    return patient


def refusal(user, route_args, exc=None, address="", path=""):
    """Log the refusal of a request, if it is one: ``exc`` None for a role the route does not
    admit, else the error the route raised (only a NoAccess not logged yet counts). Requests
    from someone not signed in are not logged."""
    if user is None:
        return None
    where = {"address": address, "path": path}
    method, _, target = path.partition(" ")
    if exc is None:
        api = target.startswith("/api/")
        return record(user, "call API" if api else "open page", _patient_in(route_args),
                      REFUSED, f"{user.role}s may not use this {'API' if api else 'page'}",
                      **where)
    if not isinstance(exc, NoAccess) or getattr(exc, "audited", False):
        return None
    verb = "view" if method in ("GET", "HEAD") else "change"
    return _refused(user, f"{verb} {exc.what}", exc, where)


def _refused(user, action, exc, where):
    patient_id = patient_concerned(exc.what, exc.ident)
    # Every appointment and export belongs to a patient: none found means none exists.
    reason = (f"no {exc.what} {exc.ident}" if patient_id is None
              else f"may not see {exc.what} {exc.ident}")
    return record(user, action, patient_id, REFUSED, reason, **where)


def _patient_in(route_args):
    """The patient a refused route was asked about, from the ids in its address."""
    for name, what in (("patient_id", "patient"), ("appointment_id", "appointment"),
                       ("task_id", "export")):
        if route_args.get(name) not in (None, ""):
            return patient_concerned(what, route_args[name])
    return None


# -- reading --------------------------------------------------------------------------------------


def _who(column_id, column_name, raw):
    """A person filter: a number is an id, anything else a part of the name."""
    raw = raw.strip().lstrip("#")
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return column_id == int(raw)
    return fn.LOWER(column_name).contains(raw.lower())


def search(patient="", user="", action="", outcome="", day_from="", day_to="", limit=25,
           offset=0):
    """Entries, newest first, filtered by patient and user (an id, or part of the name),
    action, outcome and clinic-local days (both included). Raises Invalid (with the field) for
    an outcome or a date it does not know."""
    return filters.page(
        AuditEntry.select(), AuditEntry.at, day_from, day_to,
        choices={"outcome": (outcome, AUDIT_OUTCOMES, "Choose allowed or refused.")},
        where=[_who(AuditEntry.patient_id, AuditEntry.patient_name, patient)
               if patient.strip() else None,
               _who(AuditEntry.user_id, AuditEntry.user_name, user) if user.strip() else None,
               AuditEntry.action == action if action else None,
               AuditEntry.outcome == outcome if outcome else None],
        order=(AuditEntry.at.desc(), AuditEntry.id.desc()), limit=limit, offset=offset)


def actions():
    """Every action the filter offers: the known ones, then any other found in the log."""
    seen = {row[0] for row in AuditEntry.select(AuditEntry.action).distinct().tuples()}
    return list(ACTIONS) + sorted(seen - set(ACTIONS))

