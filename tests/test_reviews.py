"""Review requests (reviews.send_requests), the review page at /review/<token> and each doctor's
rating: real SMTP, real HTTP, real database."""

import re
import threading
from datetime import timedelta

import pytest
import time_machine

from clinic import appointments, clock, db, reviews, signing
from clinic.jobs import scheduler
from clinic.mail import sweeper
from clinic.models import Appointment, DoctorRating, JobState, Message, Review
from tests.conftest import login

VISIT = {"visit_type": "Check-up", "diagnosis": "Arrhythmia", "treatment": "Beta blockers"}
LINK = re.compile(r"https?://[^/\s]+(/review/[A-Za-z0-9_.-]+)")


def completed_visit(patient, doctor, done_at, hours_before=2):
    """A visit that started ``hours_before`` ``done_at`` and that the doctor completed then."""
    start = done_at - timedelta(hours=hours_before)
    visit = Appointment.create(patient=patient, doctor=doctor, start=start,
                               end=start + timedelta(minutes=30), reason="Chest pain")
    return appointments.complete(visit, doctor, VISIT, now=done_at)


def review_path(visit, now=None):
    return "/review/" + reviews.review_url(visit.id, now or clock.now()).rsplit("/", 1)[1]


def rating_of(doctor):
    return DoctorRating.get_or_none(DoctorRating.doctor == doctor.id)


# -- the requests ---------------------------------------------------------------------------------


def test_a_visit_completed_today_gets_one_request_with_a_link_and_no_medical_details(
        smtp_settings, smtp, alice, carol):
    now = clock.now()
    visit = completed_visit(alice, carol, now - timedelta(hours=3))
    assert reviews.send_requests(now=now) == {"requested": 1}
    assert sweeper.sweep() == 1
    (received,) = smtp.messages
    assert received.rcpt_tos == [alice.email]
    assert received.message["Subject"] == "How was your visit to Test Clinic?"
    text = received.message.get_body(("plain",)).get_content()
    html = received.message.get_body(("html",)).get_content()
    assert "Dr Carol Clark" in text
    path = LINK.search(text).group(1)
    assert path in html
    assert signing.unsign("review", path.removeprefix("/review/")) == {"appointment": visit.id}
    for secret in ("Arrhythmia", "Beta blockers", "Chest pain"):
        assert secret not in received.raw.decode()
    assert Message.get(Message.key == f"review_request:{visit.id}").appointment_id == visit.id


def test_a_second_run_asks_nobody_twice(smtp_settings, smtp, alice, carol):
    now = clock.now()
    completed_visit(alice, carol, now - timedelta(hours=3))
    assert reviews.send_requests(now=now) == {"requested": 1}
    assert reviews.send_requests(now=now + timedelta(hours=1)) == {"requested": 0}
    sweeper.sweep()
    assert len(smtp.messages) == 1


def test_only_visits_completed_in_the_last_24_hours_are_asked_about(app, alice, bob, carol):
    now = clock.now()
    completed_visit(alice, carol, now - timedelta(hours=25))
    recent = completed_visit(bob, carol, now - timedelta(hours=23))
    completed_visit(alice, carol, now + timedelta(minutes=5))  # after the run's time
    assert reviews.send_requests(now=now) == {"requested": 1}
    assert [m.appointment_id for m in Message.select()] == [recent.id]


def test_visits_that_were_not_completed_are_not_asked_about(app, alice, bob, carol):
    now = clock.now()
    for status, patient, hours in (("no_show", alice, 5), ("cancelled", bob, 4),
                                   ("booked", alice, 3)):
        start = now - timedelta(hours=hours)
        Appointment.create(patient=patient, doctor=carol, start=start,
                           end=start + timedelta(minutes=30), status=status, updated_at=now)
    assert reviews.send_requests(now=now) == {"requested": 0}


def test_a_visit_already_reviewed_is_not_asked_about(app, alice, carol):
    now = clock.now()
    visit = completed_visit(alice, carol, now - timedelta(hours=3))
    reviews.submit(review_path(visit).removeprefix("/review/"), 5, "")
    assert reviews.send_requests(now=now) == {"requested": 0}
    assert Message.select().count() == 0


def test_the_review_requests_job_runs_it(app, alice, carol):
    now = clock.now()
    completed_visit(alice, carol, now - timedelta(hours=3))
    assert scheduler.run("review-requests", now=now) == {"requested": 1}
    assert JobState.get_by_id("review-requests").last_result == "requested 1"


# -- the page -------------------------------------------------------------------------------------


def test_the_link_from_the_email_opens_the_form_without_signing_in(smtp_settings, smtp, client,
                                                                    alice, carol):
    completed_visit(alice, carol, clock.now() - timedelta(hours=3))
    reviews.send_requests()
    sweeper.sweep()
    text = smtp.messages[0].message.get_body(("plain",)).get_content()
    response = client.get(LINK.search(text).group(1))
    assert response.status == 200
    assert "How was your visit?" in response.text and "Dr Carol Clark" in response.text
    assert len(re.findall(r'type="radio"[^>]*name="rating"', response.text)) == 5
    assert 'name="csrf_token"' in response.text
    assert "<script" not in response.text
    assert response.headers["cache-control"] == "no-store"


def test_a_review_is_stored_and_counted_in_the_doctors_rating(client, alice, carol):
    visit = completed_visit(alice, carol, clock.now() - timedelta(hours=3))
    path = review_path(visit)
    client.get(path)
    response = client.post(path, {"rating": "4", "comment": "Kind and on time. <b>Thanks</b>"})
    assert response.status == 303 and response.location.endswith(path)
    page = client.get(path)
    assert "Thank you for your review!" in page.text
    assert "4 out of 5" in page.text
    assert "Kind and on time. &lt;b&gt;Thanks&lt;/b&gt;" in page.text
    review = Review.get(Review.appointment == visit.id)
    assert (review.rating, review.patient_id, review.doctor_id) == (4, alice.id, carol.id)
    rating = rating_of(carol)
    assert (rating.count, rating.average, rating.stars_4) == (1, 4.0, 1)
    assert (rating.stars_1, rating.stars_2, rating.stars_3, rating.stars_5) == (0, 0, 0, 0)


def test_a_second_submit_says_already_reviewed_and_changes_nothing(client, new_client, alice,
                                                                    carol):
    visit = completed_visit(alice, carol, clock.now() - timedelta(hours=3))
    path = review_path(visit)
    client.get(path)
    assert client.post(path, {"rating": "5"}).status == 303
    other = new_client()  # the same link opened in another browser
    other.get(path)
    response = other.post(path, {"rating": "1", "comment": "changed my mind"})
    assert response.status == 200
    assert "already been reviewed" in response.text
    assert Review.get(Review.appointment == visit.id).rating == 5
    assert (rating_of(carol).count, rating_of(carol).stars_1) == (1, 0)


@pytest.mark.parametrize("rating", ["", "0", "6", "three", "4.5"])
def test_a_rating_outside_1_to_5_is_refused_keeping_the_comment(client, alice, carol, rating):
    visit = completed_visit(alice, carol, clock.now() - timedelta(hours=3))
    path = review_path(visit)
    client.get(path)
    response = client.post(path, {"rating": rating, "comment": "Très bien"})
    assert response.status == 400
    assert "Choose from 1 to 5 stars." in response.text
    assert "Très bien" in response.text
    assert Review.select().count() == 0 and rating_of(carol) is None


def test_a_comment_too_long_is_refused(client, alice, carol):
    visit = completed_visit(alice, carol, clock.now() - timedelta(hours=3))
    path = review_path(visit)
    client.get(path)
    response = client.post(path, {"rating": "3", "comment": "x" * 2001})
    assert response.status == 400
    assert "under 2000 characters" in response.text
    assert Review.select().count() == 0


def test_a_review_without_the_csrf_token_is_refused(client, alice, carol):
    visit = completed_visit(alice, carol, clock.now() - timedelta(hours=3))
    path = review_path(visit)
    client.get(path)
    assert client.post(path, {"rating": "5"}, csrf=False).status == 403
    assert Review.select().count() == 0


def test_an_expired_link_says_so(client, alice, carol):
    visit = completed_visit(alice, carol, clock.now() - timedelta(hours=3))
    path = review_path(visit)
    with time_machine.travel(clock.now() + reviews.LINK_LIFETIME + timedelta(minutes=1)):
        response = client.get(path)
    assert response.status == 410
    assert "This review link has expired." in response.text


def test_a_tampered_or_foreign_link_is_not_found(client, alice, bob, carol):
    visit = completed_visit(alice, carol, clock.now() - timedelta(hours=3))
    token = review_path(visit).removeprefix("/review/")
    body, mac = token.split(".")
    assert client.get(f"/review/{body}.{mac[:-2]}AA").status == 404
    # A valid signature for another purpose (a cancel link) is no review link.
    cancel = signing.sign("cancel", {"appointment": visit.id})
    assert client.get(f"/review/{cancel}").status == 404
    # A visit that was not completed cannot be reviewed, whatever the link says.
    start = clock.now() + timedelta(days=1)
    ahead = Appointment.create(patient=bob, doctor=carol, start=start,
                               end=start + timedelta(minutes=30))
    assert client.get(review_path(ahead)).status == 404


# -- the doctor's rating --------------------------------------------------------------------------


def test_the_rating_keeps_count_average_and_distribution(app, alice, bob, carol, dave):
    now = clock.now()
    given = [(alice, carol, 5), (bob, carol, 4), (alice, carol, 4), (bob, carol, 1),
             (alice, dave, 2)]
    for n, (patient, doctor, stars) in enumerate(given):
        visit = completed_visit(patient, doctor, now - timedelta(hours=3 + n), hours_before=1)
        assert reviews.submit(review_path(visit).removeprefix("/review/"), stars, "")[1]
    rating = rating_of(carol)
    assert rating.count == 4
    assert rating.average == pytest.approx(3.5)
    assert [rating.stars_1, rating.stars_2, rating.stars_3, rating.stars_4, rating.stars_5] == [
        1, 0, 0, 2, 1]
    assert (rating_of(dave).count, rating_of(dave).average, rating_of(dave).stars_2) == (1, 2.0, 1)


def test_reviews_submitted_at_once_all_count(app, alice, bob, carol):
    now = clock.now()
    tokens = []
    for n in range(8):
        visit = completed_visit(alice if n % 2 else bob, carol, now - timedelta(hours=2 + n),
                                hours_before=1)
        tokens.append(review_path(visit).removeprefix("/review/"))
    # And each link twice, from two browsers: only one of each pair counts.
    work = tokens + tokens
    barrier = threading.Barrier(len(work))
    added = []

    def submit(token, stars):
        try:
            barrier.wait()
            added.append(reviews.submit(token, stars, "")[1])
        finally:
            db.database.close()

    threads = [threading.Thread(target=submit, args=(token, 1 + i % 5))
               for i, token in enumerate(work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(added) == [False] * 8 + [True] * 8
    rating = rating_of(carol)
    assert rating.count == Review.select().count() == 8
    total = sum(r.rating for r in Review.select())
    assert rating.average == pytest.approx(total / 8)
    assert sum(getattr(rating, f"stars_{n}") for n in range(1, 6)) == 8


def test_find_a_doctor_shows_each_doctors_rating(client, alice, bob, carol, dave):
    now = clock.now()
    for hours, patient, stars in ((3, alice, 5), (4, bob, 4)):
        visit = completed_visit(patient, carol, now - timedelta(hours=hours))
        reviews.submit(review_path(visit).removeprefix("/review/"), stars, "")
    login(client, alice)
    page = client.get("/patient/doctors").text
    carol_card = page[page.index("Dr Carol Clark"):page.index("Dr Dave Davis")]
    assert "Rated 4.5 out of 5 from 2 reviews" in carol_card
    assert "Rated" not in page[page.index("Dr Dave Davis"):]
