"""`python -m bench.i18n_render`: what a page costs in German against English.

A patient with 10 upcoming and 40 past visits opens My appointments (every visit's day and
times written by Babel, every label through gettext) and a doctor's free times (a day of
slots). Each round renders both pages through the whole WSGI app (session, database, template)
``--renders`` times in English, then as many in German, the order alternating between rounds;
the figure is the median round's German time over its English time (goal: at most 1.1).
"""

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from wsgiref.util import setup_testing_defaults

from bench import common


def _setup(data_dir):
    from clinic import auth, db, people, settings
    from clinic.models import Appointment, User
    from clinic.web import create_app

    s = common.clinic_settings(data_dir, languages=("en", "de", "fr"))
    app = create_app(s)
    db.migrate()
    db.database.connect(reuse_if_open=True)
    hours = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat",
                                                   "sun")}
    doctor = people.create_doctor("Dr Carol Clark", "carol@bench.test", "bench-password",
                                  "Cardiology", 30, hours)
    patient = people.register_patient("alice@bench.test", "bench-password", "Alice Adams",
                                      "1980-05-17", "+49 30 1234567")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = []
    for i in range(-40, 10):
        start = now + timedelta(days=i, hours=1 if i >= 0 else 0)
        rows.append({"patient": patient.id, "doctor": doctor.id, "start": start,
                     "end": start + timedelta(minutes=30), "reason": "Check-up",
                     "status": "completed" if i < 0 else "booked"})
    Appointment.insert_many(rows).execute()
    token = auth.start_session(User.get_by_id(patient.id), "web")
    day = (now + timedelta(days=3)).astimezone(settings.get().timezone).date()
    pages = ["/patient", f"/patient/doctors/{doctor.id}?date={day.isoformat()}"]
    return app, patient.id, token, pages


def _get(app, path, token):
    environ = {"PATH_INFO": path.split("?")[0], "QUERY_STRING": path.partition("?")[2],
               "HTTP_COOKIE": f"clinic_session={token}", "wsgi.input": BytesIO()}
    setup_testing_defaults(environ)
    out = {}

    def start(status, headers, exc_info=None):
        out["status"] = status

    body = b"".join(app(environ, start))
    assert out["status"].startswith("200"), (path, out["status"], body[:300])
    return body


def _round(app, user_id, token, pages, language, renders):
    from clinic.models import User

    User.update(language=language).where(User.id == user_id).execute()
    started = time.perf_counter()
    for _ in range(renders):
        for page in pages:
            _get(app, page, token)
    return time.perf_counter() - started


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.i18n_render", description=__doc__)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--renders", type=int, default=40, help="renders of each page in a round")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        app, user_id, token, pages = _setup(Path(tmp) / "data")
        for language in ("en", "de"):  # warm up: templates compiled, catalogs read
            _round(app, user_id, token, pages, language, 3)
        assert b'<html lang="de">' in _get(app, pages[0], token)  # the last round's language
        ratios, en_ms, de_ms = [], [], []
        for i in range(args.rounds):
            order = ("en", "de") if i % 2 == 0 else ("de", "en")
            took = {lang: _round(app, user_id, token, pages, lang, args.renders)
                    for lang in order}
            per_page = 1000 / (args.renders * len(pages))
            en_ms.append(took["en"] * per_page)
            de_ms.append(took["de"] * per_page)
            ratios.append(took["de"] / took["en"])
    print(f"machine: {common.machine()}")
    print(f"English: median {statistics.median(en_ms):.2f} ms a page")
    print(f"German:  median {statistics.median(de_ms):.2f} ms a page")
    print(f"German / English: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}) over {args.rounds} rounds")


if __name__ == "__main__":
    main()
