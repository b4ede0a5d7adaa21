"""Which optional emails each patient wants: reminders, review requests and announcements.
Confirmations, cancellations and exports always go out; a patient cannot miss those by accident.

A patient says no to a kind on their preferences page or with the one-click link at the foot of
every optional email (``/unsubscribe/<token>``, also in its ``List-Unsubscribe`` header, RFC 8058).
The link is signed (purpose "unsubscribe", the patient's id and the kind), works without signing
in, names one patient and one kind, and cannot be changed into a link for anyone else.

Wanting is the default: a row in OptOut means "not this kind". The outbox asks ``opted_out()``
when it writes an optional email (clinic/mail/outbox.py) and records the message as skipped,
with the reason, instead of sending it; saying no also skips those of the kind still waiting
to be sent.
"""

from clinic import clock, settings, signing
from clinic.db import database
from clinic.errors import NotFound
from clinic.i18n import N_, _
from clinic.models import OPT_OUT_KINDS, Message, OptOut, User

PURPOSE = "unsubscribe"

# Each choice and the email kinds (templates/emails/<kind>.*) it covers.
KINDS = {
    "reminders": ("reminder_daily", "reminder_advance"),
    "reviews": ("review_request", "review_reminder"),
    "announcements": ("announcement",),
}
assert tuple(KINDS) == OPT_OUT_KINDS
CHOICE_OF = {kind: choice for choice, kinds in KINDS.items() for kind in kinds}

# How each choice reads on the page and in a skipped message's reason.
WORDS = {  # translated where they are shown
    "reminders": N_("reminders of coming visits"),
    "reviews": N_("review requests"),
    "announcements": N_("announcements from the clinic"),
}
REASON_WORDS = {"reminders": "reminders", "reviews": "review requests",
                "announcements": "announcements"}


def choice_of(kind):
    """The choice an email kind belongs to ("reminders", ...), or None: it always goes out."""
    return CHOICE_OF.get(kind)


def reason(choice):
    """What a message skipped for this choice says: "the patient opted out of reminders"."""
    return f"the patient opted out of {REASON_WORDS[choice]}"


def _user_id(user):
    return getattr(user, "id", user)


def opted_out(kind, users):
    """The ids among ``users`` (Users or ids) who said no to email ``kind``: one query, or none
    when the kind always goes out."""
    choice = choice_of(kind)
    ids = [_user_id(u) for u in users if u is not None]
    if choice is None or not ids:
        return set()
    return {user_id for (user_id,) in OptOut.select(OptOut.user)
            .where(OptOut.kind == choice, OptOut.user.in_(ids)).tuples()}


def choices(user):
    """``{choice: wanted}`` for the patient ``user``."""
    refused = {row.kind for row in OptOut.select(OptOut.kind).where(OptOut.user == _user_id(user))}
    return {choice: choice not in refused for choice in KINDS}


def save(user, wanted, via="page", now=None):
    """Set the patient's choices: ``wanted`` maps each choice to True or False (choices left out
    keep their value). Saying no also skips the emails of that kind still waiting to be sent.
    Returns the choices as they are now."""
    now = now or clock.now()
    user_id = _user_id(user)
    with database.atomic():
        for choice, want in wanted.items():
            if choice not in KINDS:
                continue
            if want:
                OptOut.delete().where(OptOut.user == user_id, OptOut.kind == choice).execute()
                continue
            OptOut.insert(user=user_id, kind=choice, via=via,
                          created_at=now).on_conflict_ignore().execute()
            (Message.update(status="skipped", last_error=reason(choice), updated_at=now)
             .where(Message.user == user_id, Message.kind.in_(KINDS[choice]),
                    Message.status == "pending")
             .execute())
    return choices(user_id)


# -- the one-click link ---------------------------------------------------------------------------


def token(user, choice):
    """The signed token of ``user``'s link for ``choice``. It does not expire: an old email's
    link must still work. The same patient and choice always give the same token."""
    return signing.sign(PURPOSE, {"p": _user_id(user), "k": choice})


def unsubscribe_url(user, kind):
    """The one-click address for the email ``kind`` sent to ``user``, or None when the kind
    always goes out."""
    choice = choice_of(kind)
    if choice is None or user is None:
        return None
    return f"{settings.get().base_url}/unsubscribe/{token(user, choice)}"


def for_token(raw):
    """``(patient User, choice)`` a link was made for; NotFound for a link we did not make (or
    one changed by hand: the signature covers the patient and the choice)."""
    try:
        data = signing.unsign(PURPOSE, raw)
    except signing.BadSignature:
        raise NotFound(_("This link is not valid. Please use the link in your latest email "
                         "from the clinic, or sign in and choose your emails on your page.")
                       ) from None
    choice = data.get("k")
    user = User.get_or_none(User.id == data.get("p"), User.role == "patient")
    if user is None or choice not in KINDS:
        raise NotFound(_("This link is not valid any more."))
    return user, choice


def unsubscribe(raw, now=None):
    """Say no to the choice a link names; returns ``(patient, choice)``."""
    user, choice = for_token(raw)
    save(user, {choice: False}, via="link", now=now)
    return user, choice


def resubscribe(raw, now=None):
    """Undo ``unsubscribe()`` from the same link; returns ``(patient, choice)``."""
    user, choice = for_token(raw)
    save(user, {choice: True}, via="link", now=now)
    return user, choice
