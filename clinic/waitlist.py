"""The waitlist: patients waiting for a slot with a doctor on some day from ``from`` to ``to``,
and the offers that give a freed slot to the first of them in line.

When a slot frees up (a cancellation, a move, time off removed), ``slot_freed()`` runs inside
the transaction that freed it: for each free start of the doctor's grid in the freed time it
takes a hold for the first waiting entry whose days include it, and writes the offer email to
the outbox (key ``waitlist_offer:<offer id>``, so it is never sent twice). The hold is a
``waitlist_offer`` row with status ``held``; a partial unique index over (doctor, start) of the
held rows lets only one exist per slot, whichever process asks, and ON CONFLICT DO NOTHING
makes the loser of a race simply find no hold taken. While a hold lives, clinic/slots.py hides
the slot and booking it is refused to anyone but the holder.

An offer's life::

    held --claim (before expires_at)--> claimed    the slot is booked for the holder
    held --sweep (after expires_at)---> expired    and the slot is offered to the next in line

The ``waitlist-holds`` job (every minute) sweeps: each expired hold is ended and the next
offer taken in one transaction per slot, so a process killed half-way leaves the hold for the
next sweep, and two sweeps end each hold once (a conditional UPDATE).
"""

from datetime import timedelta

from clinic import appointments, clock, settings, signing, slots
from clinic.db import database, locked
from clinic.errors import Conflict, Invalid, NoAccess, NotFound
from clinic.i18n import _
from clinic.jobs.queue import URGENT
from clinic.mail import outbox
from clinic.models import (
    ACTIVE_STATUSES,
    Appointment,
    Doctor,
    Message,
    Patient,
    User,
    WaitlistEntry,
    WaitlistOffer,
)
from clinic.settings import Setting

settings.register(Setting(
    "waitlist_hold", "30m", settings.duration,
    "How long a freed slot is held for the patient on the waitlist it was offered to; then the "
    "next in line is offered it."))

LINK_PURPOSE = "waitlist"
HELD_FOR_OTHER = ("This time is being held for a patient on the waitlist. Please choose "
                  "another time.")
MAX_DAYS = 366  # the longest range one entry may wait over


# -- joining and leaving ---------------------------------------------------------------------


def _day(raw, name):
    if not isinstance(raw, str):
        raise Invalid(f"{name} must be a date, YYYY-MM-DD.",
                      {name: _("Enter a date as YYYY-MM-DD.")})
    try:
        return clock.parse_day(raw.strip())
    except Invalid:
        raise Invalid(f"{name} must be a date, YYYY-MM-DD.",
                      {name: _("Enter a date as YYYY-MM-DD.")}) from None


def join(patient_id, doctor_id, from_raw, to_raw, now=None):
    """Put the patient on the doctor's waitlist for the clinic-local days ``from``..``to``
    (YYYY-MM-DD, both included). Invalid for a bad or reversed range, NotFound for an unknown
    doctor or patient, Conflict when the patient waits for the doctor on some of those days
    already."""
    now = now or clock.now()
    errors = {}
    try:
        start_day = _day(from_raw, "from")
    except Invalid as exc:
        errors.update(exc.fields)
    try:
        end_day = _day(to_raw, "to")
    except Invalid as exc:
        errors.update(exc.fields)
    if not errors:
        today = clock.local(now).date()
        if end_day < start_day:
            errors["to"] = _("The last day must not be before the first.")
        elif end_day < today:
            errors["to"] = _("Choose days from today on.")
        elif (end_day - start_day).days >= MAX_DAYS:
            errors["to"] = _("Wait for at most %(days)s days at a time.") % {"days": MAX_DAYS}
    if errors:
        raise Invalid(next(iter(errors.values())) if len(errors) == 1
                      else "Please correct the highlighted fields.", errors)
    doctor = slots.bookable_doctor(doctor_id)
    with database.atomic():
        if Patient.get_or_none(Patient.user == patient_id) is None:
            raise NotFound(_("No such patient."))
        if WaitlistEntry.select().where(
                WaitlistEntry.patient == patient_id, WaitlistEntry.doctor == doctor.user_id,
                WaitlistEntry.status == "waiting", WaitlistEntry.from_day <= end_day,
                WaitlistEntry.to_day >= start_day).exists():
            raise Conflict(_("You are on this doctor's waitlist for some of these days already."))
        return WaitlistEntry.create(patient=patient_id, doctor=doctor.user_id,
                                    from_day=start_day, to_day=end_day, status="waiting",
                                    created_at=now, updated_at=now)


def leave(entry, now=None):
    """Take the entry off the waitlist; a slot it holds goes to the next in line at once."""
    now = now or clock.now()
    with database.atomic():
        changed = (WaitlistEntry.update(status="left", updated_at=now)
                   .where(WaitlistEntry.id == entry.id, WaitlistEntry.status == "waiting")
                   .execute())
        if not changed:
            status = WaitlistEntry.get_by_id(entry.id).status
            raise Conflict(_("This waitlist entry is booked already: it is off the waitlist.")
                           if status == "booked" else
                           _("This waitlist entry is left already: it is off the waitlist."))
        for offer in WaitlistOffer.select().where(WaitlistOffer.entry == entry.id,
                                                  WaitlistOffer.status == "held"):
            _end_hold(offer, now)
    return WaitlistEntry.get_by_id(entry.id)


def visible_to(user):
    """The entries ``user`` may see: a patient their own, the desk and admins every one."""
    query = (WaitlistEntry.select(WaitlistEntry, User)
             .join(User, on=(WaitlistEntry.doctor == User.id), attr="doctor"))
    if user.role == "patient":
        return query.where(WaitlistEntry.patient == user.id)
    if user.role in ("desk", "admin"):
        return query
    return query.where(False)


def entry_for(user, entry_id):
    """The entry with this id if ``user`` may see it, else NotFound (another patient's ids are
    not to be probed)."""
    try:
        entry_id = int(entry_id)
    except (TypeError, ValueError):
        raise NotFound(_("No such waitlist entry.")) from None
    entry = visible_to(user).where(WaitlistEntry.id == entry_id).first()
    if entry is None:
        raise NoAccess(_("No such waitlist entry."), "waitlist entry", entry_id)
    return entry


def live_offer(entry_id):
    return (WaitlistOffer.select()
            .where(WaitlistOffer.entry == entry_id, WaitlistOffer.status == "held").first())


# -- holds: what slots.py and appointments.py ask -----------------------------------------------


def held(doctor_id, start, end, patient_id=None):
    """(start, end) of the live holds on the doctor's slots that overlap [start, end), but for
    those held for ``patient_id``. A hold past its time still counts until the sweep ends it and
    offers the slot to the next in line."""
    query = (WaitlistOffer.select(WaitlistOffer.start, WaitlistOffer.end)
             .join(WaitlistEntry)
             .where(WaitlistOffer.doctor == doctor_id, WaitlistOffer.status == "held",
                    WaitlistOffer.start < end, WaitlistOffer.end > start))
    if patient_id is not None:
        query = query.where(WaitlistEntry.patient != patient_id)
    return [(row.start, row.end) for row in query]


def held_everywhere(start, end):
    """{doctor id: [(start, end)]} of the live holds overlapping [start, end), for every doctor
    at once (the desk's day sheet)."""
    found = {}
    for row in (WaitlistOffer.select(WaitlistOffer.doctor, WaitlistOffer.start, WaitlistOffer.end)
                .where(WaitlistOffer.status == "held", WaitlistOffer.start < end,
                       WaitlistOffer.end > start)):
        found.setdefault(row.doctor_id, []).append((row.start, row.end))
    return found


def check_not_held(doctor_id, start, end, patient_id=None):
    """Conflict when [start, end) overlaps a slot held for someone other than ``patient_id``."""
    if held(doctor_id, start, end, patient_id):
        raise Conflict(HELD_FOR_OTHER)


# -- offering -------------------------------------------------------------------------------------


def slot_freed(doctor_id, start, end, now=None, freed_by=None):
    """Offer the doctor's free slots in [start, end) to the first in line for each. Call it in
    the transaction that freed them (a cancellation, a move, time off removed): the holds and
    their emails commit or roll back with it. Returns the offers made."""
    now = now or clock.now()
    doctor = (Doctor.select(Doctor, User).join(User).where(Doctor.user == doctor_id).first())
    if doctor is None or not doctor.user.active:
        return []
    step = timedelta(minutes=doctor.slot_minutes)
    horizon = now + settings.get().booking_horizon
    offers = []
    day = clock.local(start).date()
    while True:
        for slot in slots.grid(doctor, day):
            if start <= slot < end and now < slot <= horizon:
                offer = _offer_next(doctor, slot, slot + step, now, freed_by)
                if offer is not None:
                    offers.append(offer)
        day += timedelta(days=1)
        if clock.day_bounds(day)[0] >= end:
            return offers


def _offer_next(doctor, start, end, now, freed_by=None):
    """Hold the slot for the first waiting entry whose days include it and that was not
    offered it before, and write its email. None when the slot is taken or held, or nobody is
    waiting for it."""
    if (slots.busy(doctor.user_id, start, end) or held(doctor.user_id, start, end)
            or slots.away(doctor.user_id, start, end)):
        return None
    day = clock.local(start).date()
    tried = WaitlistOffer.select(WaitlistOffer.entry).where(
        WaitlistOffer.doctor == doctor.user_id, WaitlistOffer.start == start)
    holding = WaitlistOffer.select(WaitlistOffer.entry).where(WaitlistOffer.status == "held")
    line = (WaitlistEntry.select(WaitlistEntry, User)
            .join(User, on=(WaitlistEntry.patient == User.id), attr="patient")
            .where(WaitlistEntry.doctor == doctor.user_id, WaitlistEntry.status == "waiting",
                   WaitlistEntry.from_day <= day, WaitlistEntry.to_day >= day,
                   WaitlistEntry.id.not_in(tried), WaitlistEntry.id.not_in(holding),
                   User.active)
            .order_by(WaitlistEntry.created_at, WaitlistEntry.id))
    expires_at = now + settings.get().waitlist_hold
    for entry in line:
        if _patient_busy(entry.patient_id, start, end):
            continue  # they have a visit then already: the next in line may take it
        # The hold: ON CONFLICT DO NOTHING, so of two offers for one slot (another process,
        # another sweep) only one is written, and the loser stops here.
        rows = (WaitlistOffer.insert(
            entry=entry.id, doctor=doctor.user_id, start=start, end=end, status="held",
            expires_at=expires_at, freed_by=freed_by, created_at=now, updated_at=now)
            .on_conflict_ignore().returning(WaitlistOffer.id).tuples().execute())
        rows = list(rows)
        if not rows:
            return None
        offer = WaitlistOffer.get_by_id(rows[0][0])
        _send_offer(offer, entry, doctor)
        return offer
    return None


def _patient_busy(patient_id, start, end):
    return Appointment.select().where(
        Appointment.patient == patient_id, Appointment.status.in_(ACTIVE_STATUSES),
        Appointment.start > start - slots.LONGEST_VISIT, Appointment.start < end,
        Appointment.end > start).exists()


def _send_offer(offer, entry, doctor):
    patient = entry.patient
    outbox.enqueue("waitlist_offer", f"waitlist_offer:{offer.id}", patient.email, {
        "patient_name": patient.name, "doctor_name": doctor.user.name,
        "specialization": doctor.specialization, "start": offer.start, "end": offer.end,
        "timezone": str(clock.zone()), "expires_at": offer.expires_at,
        "link": settings.get().base_url + link_path(offer, entry.patient_id),
    }, user=patient.id, priority=URGENT)


def link_path(offer, patient_id):
    """/waitlist/offer/<token>: signed for the offer and its patient, valid while it is held."""
    token = signing.sign(LINK_PURPOSE, {"o": offer.id, "p": patient_id},
                         expires_at=offer.expires_at)
    return f"/waitlist/offer/{token}"


def offer_for_link(token, now=None):
    """The offer (with ``.entry``) an emailed link was made for; NotFound for a link we did not
    make, LinkExpired once the hold has run out."""
    data = signing.open_link(
        LINK_PURPOSE, token, now=now,
        expired="This offer has expired: the time was held for you for a while and is now "
                "offered to the next patient on the waitlist. You are still on the waitlist.",
        invalid="This link is not valid. Please use the link in your latest email from the "
                "clinic, or sign in.")
    offer = (WaitlistOffer.select(WaitlistOffer, WaitlistEntry).join(WaitlistEntry)
             .where(WaitlistOffer.id == data.get("o"), WaitlistEntry.patient == data.get("p"))
             .first())
    if offer is None:
        raise NotFound(_("No such offer."))
    return offer


# -- claiming -------------------------------------------------------------------------------------


def claim(entry, now=None):
    """Book the slot held for the entry, for its patient. Conflict when no slot is held for it
    or its hold has run out (nothing is written then), or when the booking rules refuse."""
    now = now or clock.now()
    with database.atomic():
        offer = locked(WaitlistOffer.select().where(
            WaitlistOffer.entry == entry.id,
            WaitlistOffer.status.in_(("held", "expired"))).order_by(
                WaitlistOffer.id.desc())).first()
        if offer is None:
            raise Conflict(_("No time is being held for you on this waitlist entry."))
        return claim_offer(offer, now)


def claim_offer(offer, now=None):
    """Book the held ``offer`` for its entry's patient (the emailed link's way in)."""
    now = now or clock.now()
    with database.atomic():
        changed = (WaitlistOffer.update(status="claimed", updated_at=now)
                   .where(WaitlistOffer.id == offer.id, WaitlistOffer.status == "held",
                          WaitlistOffer.expires_at > now)
                   .execute())
        if not changed:
            current = WaitlistOffer.get_by_id(offer.id)
            if current.status == "claimed":
                raise Conflict(_("You have booked this time already: it is in your appointments."))
            raise Conflict(_("This offer has expired: the time was offered to the next patient "
                           "on the waitlist. You are still on the waitlist."))
        entry = WaitlistEntry.get_by_id(offer.entry_id)
        appointment = appointments.book(entry.patient_id, offer.doctor_id, offer.start,
                                        "Booked from the waitlist", now=now)
        (WaitlistOffer.update(booked=appointment.id, updated_at=now)
         .where(WaitlistOffer.id == offer.id).execute())
        (WaitlistEntry.update(status="booked", updated_at=now)
         .where(WaitlistEntry.id == entry.id).execute())
    return appointment


# -- the sweep ------------------------------------------------------------------------------------


def sweep(now=None):
    """The ``waitlist-holds`` job: end each hold that ran out and offer its slot to the next in
    line. Returns counts: expired, offered.

    1. Find the held offers whose expires_at has passed.
    2. For each, in one transaction: end it with a conditional UPDATE (held -> expired; a sweep
       that lost the race to another changes nothing and moves on), then take the next hold.
       A process killed in between rolls both back: the next sweep does it again.
    """
    now = now or clock.now()
    counts = {"expired": 0, "offered": 0}
    due = list(WaitlistOffer.select().where(WaitlistOffer.status == "held",
                                            WaitlistOffer.expires_at <= now)
               .order_by(WaitlistOffer.expires_at, WaitlistOffer.id))
    for offer in due:
        with database.atomic():
            ended, following = _end_hold(offer, now, status="expired")
        counts["expired"] += ended
        counts["offered"] += following is not None
    return counts


def _end_hold(offer, now, status="expired"):
    """End a live hold and offer the slot to the next in line; ``(ended, next offer)``. A hold
    whose patient booked the slot another way (the booking page shows it to them, the desk
    books for them) ends as claimed, with that booking."""
    entry = WaitlistEntry.get_by_id(offer.entry_id)
    own = (Appointment.select(Appointment.id)
           .where(Appointment.doctor == offer.doctor_id, Appointment.start == offer.start,
                  Appointment.patient == entry.patient_id,
                  Appointment.status.in_(ACTIVE_STATUSES)).first())
    if own is not None:
        ended = (WaitlistOffer.update(status="claimed", booked=own.id, updated_at=now)
                 .where(WaitlistOffer.id == offer.id, WaitlistOffer.status == "held").execute())
        if ended:
            (WaitlistEntry.update(status="booked", updated_at=now)
             .where(WaitlistEntry.id == entry.id, WaitlistEntry.status == "waiting").execute())
        return 0, None
    ended = (WaitlistOffer.update(status=status, updated_at=now)
             .where(WaitlistOffer.id == offer.id, WaitlistOffer.status == "held").execute())
    if not ended:
        return 0, None
    doctor = Doctor.select(Doctor, User).join(User).where(Doctor.user == offer.doctor_id).first()
    if doctor is None or not doctor.user.active or offer.start <= now:
        return 1, None
    return 1, _offer_next(doctor, offer.start, offer.end, now, offer.freed_by_id)


# -- what the pages show --------------------------------------------------------------------------


def offers(limit=100, freed_by=None, booked=None):
    """Offers newest first, with ``.entry.patient``, ``.doctor`` and their email's outbox row
    as ``.message`` (None if there is none): for the jobs page and an appointment's
    timeline."""
    patient = User.alias("patient")
    query = (WaitlistOffer.select(WaitlistOffer, WaitlistEntry, patient, User)
             .join(WaitlistEntry).join(patient, on=(WaitlistEntry.patient == patient.id),
                                       attr="patient")
             .switch(WaitlistOffer).join(User, on=(WaitlistOffer.doctor == User.id),
                                         attr="doctor")
             .order_by(WaitlistOffer.id.desc()).limit(limit))
    if freed_by is not None:
        query = query.where(WaitlistOffer.freed_by == freed_by)
    if booked is not None:
        query = query.where(WaitlistOffer.booked == booked)
    rows = list(query)
    keys = {f"waitlist_offer:{offer.id}": offer for offer in rows}
    for offer in rows:
        offer.message = None
    if keys:
        for message in Message.select().where(Message.key.in_(list(keys))):
            keys[message.key].message = message
    return rows
