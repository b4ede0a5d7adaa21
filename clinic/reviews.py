"""Reviews: asking patients how their visit went, the rules of the review page, and each doctor's
rating.

The review-requests job (daily, 10:00) emails every patient whose visit was completed in the last
24 hours a signed link (30 days) to /review/<token>, where they give 1 to 5 stars and a comment
without signing in. A visit is completed when the doctor records it: the time is its treatment
record's ``created_at``, written in the same transaction as the completion and never changed
after (an appointment's ``updated_at`` moves with any later change). One request per visit (the
outbox key ``review_request:<id>``), none once it is reviewed; one review per visit (the unique
appointment of Review). DoctorRating is updated in the review's transaction.
"""

from datetime import timedelta

from peewee import Cast, fn

from clinic import clock, settings, signing
from clinic.db import database
from clinic.errors import NotFound, check
from clinic.i18n import _
from clinic.mail import outbox
from clinic.models import Appointment, DoctorRating, Message, Review, Treatment

PURPOSE = "review"
REQUEST_WINDOW = timedelta(hours=24)  # visits completed this long before the job runs
LINK_LIFETIME = timedelta(days=30)
MAX_COMMENT = 2000
STARS = (1, 2, 3, 4, 5)


def review_url(appointment_id, now):
    token = signing.sign(PURPOSE, {"appointment": appointment_id}, expires_at=now + LINK_LIFETIME)
    return f"{settings.get().base_url}/review/{token}"


def send_requests(now=None):
    """The review-requests job: queue a review request for every visit completed in the last 24
    hours that has not been reviewed or asked about yet. Returns ``{"requested": n}``.

    The outbox key makes a second run (or two at once) ask nobody twice; the NOT EXISTS spares it
    rendering emails that would be turned away."""
    now = now or clock.now()
    asked = Message.select(Message.id).where(Message.appointment == Appointment.id,
                                             Message.kind == "review_request")
    reviewed = Review.select(Review.id).where(Review.appointment == Appointment.id)
    visits = (Appointment.with_people()
              .join_from(Appointment, Treatment, on=(Treatment.appointment == Appointment.id))
              .where(Appointment.status == "completed",
                     Treatment.created_at > now - REQUEST_WINDOW, Treatment.created_at <= now,
                     ~fn.EXISTS(asked), ~fn.EXISTS(reviewed))
              .order_by(Treatment.created_at))
    return {"requested": _ask("review_request", visits, now)}


def _ask(kind, visits, now):
    """Write one ``kind`` email (keyed ``<kind>:<visit id>``) for each visit whose patient is
    still active; returns how many will go out (a patient who opted out gets a skipped row)."""
    asked = 0
    for visit in list(visits):  # all read first (test_concurrent_writes.py)
        if not visit.patient.active:
            continue
        message = outbox.enqueue(
            kind, f"{kind}:{visit.id}", visit.patient.email,
            context={"patient_name": visit.patient.name, "doctor_name": visit.doctor.name,
                     "start": visit.start, "review_url": review_url(visit.id, now),
                     "expires_at": now + LINK_LIFETIME},
            user=visit.patient_id, appointment=visit.id)
        asked += message is not None and message.status != "skipped"
    return asked


# -- the one reminder -----------------------------------------------------------------------------

REMINDER_AFTER = timedelta(days=7)  # after the request was sent
REMINDER_UNTIL = timedelta(days=14)  # later than this, a reminder reads oddly: none


def send_reminders(now=None):
    """The review-reminders job (daily): remind, once, each patient whose review request was
    sent 7 to 14 days ago and who has not reviewed the visit. Returns ``{"reminded": n}``.

    Only requests that were really sent (not skipped or failed), never to an inactive patient.
    The outbox key ``review_reminder:<id>`` makes it once per visit; a patient who opted out of
    review requests gets a skipped row instead (outbox.enqueue). The requests are found through
    the outbox's (kind, created_at) index: a request is written before it is sent, at most a
    day before with its retries."""
    now = now or clock.now()
    requests = (Message.select(Message.appointment)
                .where(Message.kind == "review_request",
                       Message.created_at > now - REMINDER_UNTIL - timedelta(days=1),
                       Message.status == "sent", Message.sent_at <= now - REMINDER_AFTER,
                       Message.sent_at > now - REMINDER_UNTIL))
    reminded = Message.select(Message.id).where(Message.appointment == Appointment.id,
                                                Message.kind == "review_reminder")
    reviewed = Review.select(Review.id).where(Review.appointment == Appointment.id)
    visits = (Appointment.with_people()
              .where(Appointment.id.in_(requests), Appointment.status == "completed",
                     ~fn.EXISTS(reminded), ~fn.EXISTS(reviewed))
              .order_by(Appointment.id))
    return {"reminded": _ask("review_reminder", visits, now)}


def visit_for(token, now=None):
    """``(visit, review or None)`` for a review link: the completed appointment (with its
    people, see Appointment.with_people) and its review if it has one. Raises LinkExpired or
    NotFound."""
    payload = signing.open_link(
        PURPOSE, token, now=now,
        expired="This review link has expired. Thank you for visiting us all the same.",
        invalid="This review link is not valid. Please use the link in your email.")
    visit = (Appointment.with_people()
             .where(Appointment.id == payload.get("appointment"),
                    Appointment.status == "completed")
             .first())
    if visit is None:
        raise NotFound(_("This visit cannot be reviewed."))
    return visit, Review.get_or_none(Review.appointment == visit.id)


def submit(token, rating, comment, now=None):
    """Store the review of the visit behind ``token``; returns ``(visit, added)``, where
    ``added`` is False when the visit had been reviewed already (nothing changes). Raises Invalid
    (fields ``rating``, ``comment``), LinkExpired or NotFound.

    The review and the doctor's rating change in one transaction; the unique appointment of
    Review settles two submits at once, and only the one that inserted counts."""
    now = now or clock.now()
    visit, review = visit_for(token, now)
    if review is not None:
        return visit, False
    errors = {}
    try:
        rating = int(str(rating).strip())
    except ValueError:
        rating = None
    if rating not in STARS:
        errors["rating"] = _("Choose from 1 to 5 stars.")
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        errors["comment"] = (_("Please keep the comment under %(count)d characters.")
                             % {"count": MAX_COMMENT})
    check(errors)
    with database.atomic():
        added = (Review.insert(appointment=visit.id, patient=visit.patient_id,
                               doctor=visit.doctor_id, rating=rating, comment=comment,
                               created_at=now)
                 .on_conflict_ignore().as_rowcount().execute())
        if added:
            _count(visit.doctor_id, rating)
    return visit, bool(added)


def _count(doctor_id, rating):
    """Add one ``rating`` to the doctor's figures with one UPDATE computed from the row's own
    values, so concurrent reviews add up; the row is made first if this is the doctor's first.
    The average comes from the star counts, so it never drifts."""
    DoctorRating.insert(doctor=doctor_id).on_conflict_ignore().execute()
    stars = [getattr(DoctorRating, f"stars_{n}") for n in STARS]
    points = sum((n * column for n, column in zip(STARS, stars, strict=True)), rating)
    star = stars[rating - 1]
    (DoctorRating.update({DoctorRating.count: DoctorRating.count + 1, star: star + 1,
                          DoctorRating.average: points / Cast(DoctorRating.count + 1, "FLOAT")})
     .where(DoctorRating.doctor == doctor_id)
     .execute())


def ratings(doctor_ids):
    """``{doctor id: DoctorRating}`` for those of ``doctor_ids`` who have been reviewed."""
    ids = list(doctor_ids)
    if not ids:
        return {}
    return {r.doctor_id: r for r in DoctorRating.select().where(DoctorRating.doctor.in_(ids),
                                                                DoctorRating.count > 0)}
