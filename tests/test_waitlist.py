"""The waitlist (clinic/waitlist.py) through real HTTP, the real SMTP test server and the real
database: a freed slot is offered to the first in line and held for them, nobody else can book
it, the hold runs out and the next in line gets it, the claim books it. One holder per slot,
one email per offer, and bad requests refused with nothing written.

    alice   has the 10:00 visit with carol and cancels it
    bob     joined carol's waitlist first
    cora    joined after bob
"""

import re
import threading
from datetime import timedelta

import pytest
import time_machine
from peewee import IntegrityError

from clinic import appointments, clock, db, timeline, waitlist
from clinic.jobs import scheduler
from clinic.models import Appointment, Message, WaitlistEntry, WaitlistOffer
from tests.conftest import TZ, login, make_patient, slot

LINK = re.compile(r"/waitlist/offer/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")


@pytest.fixture
def frozen(app):
    with time_machine.travel(clock.now(), tick=False) as traveller:
        yield traveller


@pytest.fixture
def cora(app):
    return make_patient("cora@example.com", "Cora Cole")


def api(new_client, user):
    browser = new_client()
    browser.api_login(user.email)
    return browser


def day_of(start):
    return start.astimezone(TZ).date().isoformat()


def join(browser, doctor, start, **extra):
    response = browser.post_json("/api/waitlist", {"doctor_id": doctor.id, "from": day_of(start),
                                                   "to": day_of(start), **extra})
    assert response.status == 201, response
    return response.json()


def offers_to(smtp, user):
    return [m for m in smtp.messages if user.email in m.rcpt_tos
            and "held for you" in m.message["Subject"]]


def link_in(received):
    return LINK.search(received.message.get_body(("plain",)).get_content()).group(0)


def free_times(browser, doctor, start):
    response = browser.get(f"/api/doctors/{doctor.id}/slots?date={day_of(start)}")
    assert response.status == 200, response
    return response.json()["slots"]


def test_a_cancelled_slot_goes_down_the_line_until_it_is_claimed(
        frozen, new_client, smtp_settings, smtp, delivered, alice, bob, cora, carol, erin):
    start = slot(2, "10:00")
    visit = appointments.book(alice.id, carol.id, start)
    a, b, c = (api(new_client, user) for user in (alice, bob, cora))
    bobs = join(b, carol, start)
    coras = join(c, carol, start)
    assert (bobs["from"], bobs["to"], bobs["patient_id"]) == (day_of(start), day_of(start), bob.id)
    delivered()
    smtp.messages.clear()

    # The cancellation: the first in line is emailed, and the slot is held for him.
    assert a.post_json(f"/api/appointments/{visit.id}/cancel").status == 200
    delivered()
    [offer_email] = offers_to(smtp, bob)
    assert offers_to(smtp, cora) == []
    assert "Dr Carol Clark" in offer_email.message["Subject"]
    bob_link = link_in(offer_email)
    held = b.get(f"/api/waitlist/{bobs['id']}").json()["offer"]
    assert held["status"] == "held" and held["start"] == clock.local(start).isoformat()
    assert held["expires_at"] == clock.local(clock.now() + timedelta(minutes=30)).isoformat()

    # Held: nobody else sees it or can book it; the holder sees it.
    local_start = clock.local(start).isoformat()
    assert local_start not in free_times(c, carol, start)
    refused = c.post_json("/api/appointments", {"doctor_id": carol.id, "start": local_start})
    assert refused.status == 409
    assert "held for a patient on the waitlist" in refused.json()["error"]
    assert c.post_json(f"/api/waitlist/{coras['id']}/claim").status == 409
    page = new_client().get(bob_link)
    assert page.status == 200 and "Book this time" in page.text

    # A second sweep before the hold runs out changes nothing, and sends nothing again.
    assert waitlist.sweep() == {"expired": 0, "offered": 0}

    # The hold runs out: the job hands the slot to the next in line.
    frozen.shift(timedelta(minutes=31))
    assert scheduler.run("waitlist-holds") == {"expired": 1, "offered": 1}
    delivered()
    [cora_email] = offers_to(smtp, cora)
    assert len(offers_to(smtp, bob)) == 1  # his offer is not sent again
    late = b.post_json(f"/api/waitlist/{bobs['id']}/claim")
    assert late.status == 409 and "expired" in late.json()["error"]
    stale = new_client()
    assert stale.get(bob_link).status == 410
    assert Appointment.select().where(Appointment.status == "booked").count() == 0

    # The next in line claims it through the emailed link, without signing in.
    browser = new_client()
    opened = browser.get(link_in(cora_email))
    assert opened.status == 200 and "Book this time" in opened.text
    answer = browser.post(link_in(cora_email))
    assert answer.status == 303 and answer.location.split("/")[-2] == "visit"
    booked = Appointment.get(Appointment.status == "booked")
    assert (booked.patient_id, booked.doctor_id, booked.start) == (cora.id, carol.id, start)
    assert WaitlistEntry.get_by_id(coras["id"]).status == "booked"
    assert WaitlistEntry.get_by_id(bobs["id"]).status == "waiting"  # still waiting
    delivered()
    assert any("booked" in m.message["Subject"] for m in smtp.messages if cora.email in m.rcpt_tos)

    # The cancelled visit's timeline tells the story, and so does the jobs page.
    cancelled = Appointment.with_people().where(Appointment.id == visit.id).get()
    story = [event.what for event in timeline.for_appointment(cancelled)]
    assert story.count("Waitlist offer sent") == 2
    assert "Waitlist offer expired" in story and "Waitlist offer claimed" in story
    admin = new_client()
    login(admin, erin)
    jobs = admin.get("/admin/jobs")
    assert jobs.status == 200 and "Waitlist offers" in jobs.text
    assert "Cora Cole" in jobs.text and "claimed" in jobs.text and "expired" in jobs.text


def test_moving_a_visit_offers_its_old_time(app, new_client, alice, bob, carol):
    start = slot(2, "10:00")
    visit = appointments.book(alice.id, carol.id, start)
    entry = join(api(new_client, bob), carol, start)
    appointments.reschedule(visit, slot(2, "11:00"), alice)
    offer = WaitlistOffer.get(WaitlistOffer.entry == entry["id"])
    assert (offer.start, offer.status, offer.freed_by_id) == (start, "held", visit.id)
    assert Message.get(Message.key == f"waitlist_offer:{offer.id}").user_id == bob.id


def test_only_patients_waiting_for_that_day_are_offered(app, new_client, alice, bob, cora,
                                                        carol, dave):
    start = slot(2, "10:00")
    visit = appointments.book(alice.id, carol.id, start)
    join(api(new_client, bob), carol, slot(3))  # another day
    join(api(new_client, cora), dave, start)  # another doctor
    appointments.cancel(visit, alice)
    assert WaitlistOffer.select().count() == 0
    assert waitlist.sweep() == {"expired": 0, "offered": 0}


def test_the_holder_books_through_the_api_and_leaving_passes_the_hold_on(
        app, new_client, alice, bob, cora, carol):
    start = slot(2, "10:00")
    visit = appointments.book(alice.id, carol.id, start)
    b, c = api(new_client, bob), api(new_client, cora)
    bobs, coras = join(b, carol, start), join(c, carol, start)
    appointments.cancel(visit, alice)
    # Bob leaves: the slot goes to Cora at once.
    assert b.request("DELETE", f"/api/waitlist/{bobs['id']}").json()["status"] == "left"
    assert c.get(f"/api/waitlist/{coras['id']}").json()["offer"]["status"] == "held"
    claimed = c.post_json(f"/api/waitlist/{coras['id']}/claim")
    assert claimed.status == 201, claimed
    assert claimed.json()["start"] == clock.local(start).isoformat()
    assert claimed.json()["patient_id"] == cora.id
    again = c.post_json(f"/api/waitlist/{coras['id']}/claim")
    assert again.status == 409


def test_bad_requests_are_refused_and_write_nothing(app, new_client, alice, bob, carol, erin):
    b = api(new_client, bob)
    day = day_of(slot(2))
    cases = [
        ({"doctor_id": carol.id, "from": day, "to": day_of(slot(1))}, 400, "to"),
        ({"doctor_id": carol.id, "from": "soon", "to": day}, 400, "from"),
        ({"doctor_id": carol.id, "from": day, "to": 5}, 400, "to"),
        ({"doctor_id": "x", "from": day, "to": day}, 400, "doctor_id"),
    ]
    for body, status, field in cases:
        response = b.post_json("/api/waitlist", body)
        assert response.status == status, (body, response)
        assert field in response.json()["fields"], response
    assert b.post_json("/api/waitlist", {"doctor_id": 10**9, "from": day, "to": day}).status \
        == 404
    assert b.post_json("/api/waitlist", {"doctor_id": carol.id, "from": day, "to": day,
                                         "patient_id": alice.id}).status == 403
    admin = api(new_client, erin)
    assert admin.post_json("/api/waitlist", {"doctor_id": carol.id, "from": day,
                                             "to": day}).status == 400  # no patient_id
    assert admin.post_json("/api/waitlist", {"doctor_id": carol.id, "from": day, "to": day,
                                             "patient_id": carol.id}).status == 404
    assert WaitlistEntry.select().count() == 0
    for path in ("/api/waitlist/999", "/api/waitlist/abc", "/api/waitlist/999/claim"):
        method = b.get if "claim" not in path else b.post_json
        assert method(path).status == 404, path
    assert b.request("DELETE", "/api/waitlist/999").status == 404


def test_someone_elses_entry_and_offer_are_not_found(app, new_client, alice, bob, cora, carol):
    start = slot(2, "10:00")
    visit = appointments.book(alice.id, carol.id, start)
    bobs = join(api(new_client, bob), carol, start)
    appointments.cancel(visit, alice)
    c = api(new_client, cora)
    for response in (c.get(f"/api/waitlist/{bobs['id']}"),
                     c.post_json(f"/api/waitlist/{bobs['id']}/claim"),
                     c.request("DELETE", f"/api/waitlist/{bobs['id']}")):
        assert response.status == 404, response
    assert c.get("/api/waitlist").json() == {"entries": []}
    assert WaitlistOffer.get().status == "held"
    assert Appointment.select().where(Appointment.status == "booked").count() == 0


def test_the_database_allows_one_live_hold_per_slot(app, alice, bob, carol):
    start = slot(2, "10:00")
    now = clock.now()
    entries = [WaitlistEntry.create(patient=p.id, doctor=carol.id, from_day=start.date(),
                                    to_day=start.date(), created_at=now, updated_at=now)
               for p in (alice, bob)]
    row = {"doctor": carol.id, "start": start, "end": start + timedelta(minutes=30),
           "status": "held", "expires_at": now, "created_at": now, "updated_at": now}
    WaitlistOffer.create(entry=entries[0].id, **row)
    with pytest.raises(IntegrityError), db.database.atomic():
        WaitlistOffer.create(entry=entries[1].id, **row)
    WaitlistOffer.create(entry=entries[1].id, **{**row, "status": "expired"})


def test_racing_offers_of_one_slot_make_one_hold_and_one_email(app, new_client, alice, bob,
                                                               cora, carol):
    """Several threads, each with its own connection (as several processes would), offer the
    same freed slot at once: one hold, one email."""
    start = slot(2, "10:00")
    join(api(new_client, bob), carol, start)
    join(api(new_client, cora), carol, start)
    barrier = threading.Barrier(4)
    made, failed = [], []

    def offer():
        try:
            with db.connection():
                barrier.wait()
                with db.database.atomic():
                    made.extend(waitlist.slot_freed(carol.id, start,
                                                    start + timedelta(minutes=30)))
        except Exception as exc:  # a lost race may be refused by the database
            failed.append(exc)

    threads = [threading.Thread(target=offer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert WaitlistOffer.select().where(WaitlistOffer.status == "held").count() == 1
    assert Message.select().where(Message.kind == "waitlist_offer").count() == 1
    assert len(made) == 1, failed


def test_a_sweep_that_dies_midway_leaves_the_hold_for_the_next(app, new_client, alice, bob,
                                                               cora, carol, monkeypatch):
    start = slot(2, "10:00")
    visit = appointments.book(alice.id, carol.id, start)
    join(api(new_client, bob), carol, start)
    join(api(new_client, cora), carol, start)
    appointments.cancel(visit, alice)
    later = clock.now() + timedelta(minutes=31)
    real = waitlist._offer_next

    def dies(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(waitlist, "_offer_next", dies)
    with pytest.raises(RuntimeError):
        waitlist.sweep(now=later)
    assert WaitlistOffer.get().status == "held"  # rolled back with the failed offer
    monkeypatch.setattr(waitlist, "_offer_next", real)
    assert waitlist.sweep(now=later) == {"expired": 1, "offered": 1}
    assert waitlist.sweep(now=later) == {"expired": 0, "offered": 0}
    assert Message.select().where(Message.kind == "waitlist_offer").count() == 2


# -- the pages ------------------------------------------------------------------------------------


def test_a_full_day_offers_the_waitlist_on_the_booking_page(app, new_client, alice, bob):
    from tests.conftest import make_doctor

    one_slot = {day: [["09:00", "09:30"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat",
                                                       "sun")}
    frank = make_doctor("frank@example.com", "Dr Frank Fox", "Neurology", one_slot)
    start = slot(2, "09:00")
    appointments.book(alice.id, frank.id, start)
    browser = new_client()
    login(browser, bob)
    page = browser.get(f"/patient/doctors/{frank.id}?date={day_of(start)}")
    assert page.status == 200 and "Join the waitlist for this day" in page.text
    joined = browser.post("/patient/waitlist", {"doctor_id": frank.id, "from": day_of(start),
                                                "to": day_of(start)})
    assert joined.status == 303
    mine = browser.get("/patient/waitlist")
    assert "Dr Frank Fox" in mine.text and "Leave the waitlist" in mine.text
    entry = WaitlistEntry.get()
    assert (entry.patient_id, entry.doctor_id, entry.status) == (bob.id, frank.id, "waiting")
    twice = browser.post("/patient/waitlist", {"doctor_id": frank.id, "from": day_of(slot(1)),
                                               "to": day_of(slot(3))})
    assert twice.status == 409 and "waitlist for some of these days already" in twice.text
    bad = browser.post("/patient/waitlist", {"doctor_id": frank.id, "from": day_of(start),
                                             "to": day_of(slot(1))})
    assert bad.status == 400 and "The last day must not be before the first." in bad.text
    left = browser.post(f"/patient/waitlist/{entry.id}/leave")
    assert left.status == 303
    assert WaitlistEntry.get_by_id(entry.id).status == "left"
    assert WaitlistEntry.select().count() == 1


def test_the_holder_books_from_the_waitlist_page(app, new_client, alice, bob, carol):
    start = slot(2, "10:00")
    visit = appointments.book(alice.id, carol.id, start)
    browser = new_client()
    login(browser, bob)
    browser.get("/patient/waitlist")
    joined = browser.post("/patient/waitlist", {"doctor_id": carol.id, "from": day_of(start),
                                                "to": day_of(start)})
    assert joined.status == 303
    appointments.cancel(visit, alice)
    page = browser.get("/patient/waitlist")
    assert "A time is held for you" in page.text
    entry = WaitlistEntry.get()
    booked = browser.post(f"/patient/waitlist/{entry.id}/claim")
    assert booked.status == 303 and "/patient/appointments/" in booked.location


def test_the_admin_sees_and_manages_the_waitlist(app, new_client, alice, bob, carol, erin):
    admin = new_client()
    login(admin, erin)
    admin.get("/admin/waitlist")
    day = day_of(slot(2))
    added = admin.post("/admin/waitlist", {"patient_id": str(bob.id), "doctor_id": carol.id,
                                           "from": day, "to": day})
    assert added.status == 303
    page = admin.get("/admin/waitlist")
    assert page.status == 200 and "Bob Brown" in page.text and "Dr Carol Clark" in page.text
    bad = admin.post("/admin/waitlist", {"patient_id": "x", "doctor_id": carol.id,
                                         "from": day, "to": day})
    assert bad.status == 400 and "Enter the patient&#39;s number." in bad.text
    entry = WaitlistEntry.get()
    assert admin.post(f"/admin/waitlist/{entry.id}/leave").status == 303
    patient = new_client()
    login(patient, alice)
    assert patient.get("/admin/waitlist").status == 403


def test_a_forged_offer_link_is_refused(app, new_client, alice, bob, cora, carol):
    start = slot(2, "10:00")
    visit = appointments.book(alice.id, carol.id, start)
    join(api(new_client, bob), carol, start)
    appointments.cancel(visit, alice)
    offer = WaitlistOffer.get()
    good = waitlist.link_path(offer, bob.id)
    wrong_patient = waitlist.link_path(offer, cora.id)
    browser = new_client()
    assert browser.get(good).status == 200
    assert browser.get(wrong_patient).status == 404
    assert browser.get(good[:-3] + "abc").status == 404
    browser.get("/login")
    assert browser.post(wrong_patient).status == 404
    assert WaitlistOffer.get().status == "held"


def test_a_claim_the_booking_rules_refuse_leaves_the_hold(app, new_client, alice, bob, carol,
                                                          dave):
    start = slot(2, "10:00")
    visit = appointments.book(alice.id, carol.id, start)
    b = api(new_client, bob)
    bobs = join(b, carol, start)
    appointments.cancel(visit, alice)
    appointments.book(bob.id, dave.id, start)  # meanwhile, elsewhere at the same time
    refused = b.post_json(f"/api/waitlist/{bobs['id']}/claim")
    assert refused.status == 409 and "already have an appointment" in refused.json()["error"]
    assert WaitlistOffer.get().status == "held"
    assert WaitlistEntry.get_by_id(bobs["id"]).status == "waiting"
    assert Appointment.select().where(Appointment.doctor == carol.id,
                                      Appointment.status == "booked").count() == 0


def test_the_holder_may_book_the_held_time_on_the_booking_page(app, new_client, alice, bob,
                                                               carol):
    start = slot(2, "10:00")
    visit = appointments.book(alice.id, carol.id, start)
    entry = join(api(new_client, bob), carol, start)
    appointments.cancel(visit, alice)
    browser = new_client()
    login(browser, bob)
    page = browser.get(f"/patient/doctors/{carol.id}?date={day_of(start)}")
    assert clock.local(start).isoformat() in page.text
    other = new_client()
    login(other, alice)
    assert clock.local(start).isoformat() not in other.get(
        f"/patient/doctors/{carol.id}?date={day_of(start)}").text
    booked = browser.post("/patient/appointments", {"doctor_id": carol.id,
                                                    "start": clock.local(start).isoformat(),
                                                    "date": day_of(start)})
    assert booked.status == 303, booked
    # When the hold's time is up, the sweep sees the holder booked it: claimed, nobody offered.
    assert waitlist.sweep(now=clock.now() + timedelta(hours=1)) == {"expired": 0,
                                                                     "offered": 0}
    offer = WaitlistOffer.get()
    assert offer.status == "claimed" and offer.booked_id is not None
    assert WaitlistEntry.get_by_id(entry["id"]).status == "booked"


def test_removing_time_off_offers_its_slots_and_time_off_offers_nothing(app, new_client, alice,
                                                                        bob, carol):
    from clinic import time_off

    start = slot(2, "10:00")
    entry = join(api(new_client, bob), carol, start)
    local = start.astimezone(TZ)
    away = time_off.add(carol.id, local.strftime("%Y-%m-%dT09:00"),
                        local.strftime("%Y-%m-%dT12:00"), "Conference")
    assert not WaitlistOffer.select().exists()
    # A visit cancelled inside time off frees nothing anyone could book.
    inside = Appointment.create(patient=alice.id, doctor=carol.id, start=start,
                                end=start + timedelta(minutes=30))
    appointments.cancel(inside, alice)
    assert not WaitlistOffer.select().exists()
    time_off.remove(away.id)
    (offer,) = WaitlistOffer.select()
    assert (offer.entry_id, offer.status) == (entry["id"], "held")
    assert slot(2, "09:00") <= offer.start < slot(2, "12:00")
    assert Message.get(Message.key == f"waitlist_offer:{offer.id}").user_id == bob.id
