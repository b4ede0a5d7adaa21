"""The waitlist's holds across real processes: `run.py job run waitlist-holds` started several
times at once, and one killed with SIGKILL inside its transaction. One holder per slot, one email
per offer, whatever happens to the processes.

    alice   had the 10:00 visit with carol and cancelled it; bob was offered it first
    cora, dan  wait behind him
"""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from clinic import appointments, clock, db, settings, waitlist
from clinic.models import Message, WaitlistOffer
from tests import backends
from tests.conftest import make_patient, slot

ROOT = Path(__file__).resolve().parent.parent

# The job, as if the hold's time had passed: argv[1] is how many seconds ahead. With "die", the
# process kills itself with SIGKILL once the next hold is written, before its transaction
# commits.
SWEEP_LATER = """
import os, signal, sys
from datetime import UTC, datetime, timedelta
import time_machine
from clinic import cli, waitlist
if sys.argv[2] == "die":
    waitlist._send_offer = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
with time_machine.travel(datetime.now(UTC) + timedelta(seconds=float(sys.argv[1]))):
    sys.exit(cli.main(["job", "run", "waitlist-holds"]))
"""


@pytest.fixture
def offered(app, alice, bob, carol):
    """Alice's cancelled visit, offered to bob; cora and dan wait behind him."""
    start = slot(2, "10:00")
    visit = appointments.book(alice.id, carol.id, start)
    day = clock.local(start).date().isoformat()
    for patient in (bob, make_patient("cora@example.com", "Cora Cole"),
                    make_patient("dan@example.com", "Dan Dunn")):
        waitlist.join(patient.id, carol.id, day, day)
    appointments.cancel(visit, alice)
    assert WaitlistOffer.get().entry.patient_id == bob.id
    return start


def sweeps(how, count):
    env = {**os.environ, **backends.environ(settings.get()), "PYTHONUNBUFFERED": "1"}
    ahead = (settings.get().waitlist_hold + timedelta(minutes=1)).total_seconds()
    procs = [subprocess.Popen([sys.executable, "-c", SWEEP_LATER, str(ahead), how], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(count)]
    return [(proc.communicate(timeout=120)[0], proc.returncode) for proc in procs]


def holders():
    return [(o.entry.patient.name, o.status) for o in waitlist.offers()]


def test_sweeps_in_several_processes_at_once_make_one_next_hold(offered):
    db.database.close()  # the processes write; this test reads afterwards
    results = sweeps("run", 3)
    assert all(code == 0 for _, code in results), results
    db.database.connect(reuse_if_open=True)
    assert holders() == [("Cora Cole", "held"), ("Bob Brown", "expired")]
    assert Message.select().where(Message.kind == "waitlist_offer").count() == 2


def test_a_sweep_killed_inside_its_transaction_leaves_the_hold_for_the_next(offered):
    db.database.close()
    [(out, code)] = sweeps("die", 1)
    assert code == -9, out
    db.database.connect(reuse_if_open=True)
    assert holders() == [("Bob Brown", "held")]  # nothing of the killed run was kept
    assert Message.select().where(Message.kind == "waitlist_offer").count() == 1
    db.database.close()
    [(out, code)] = sweeps("run", 1)
    assert code == 0, out
    db.database.connect(reuse_if_open=True)
    assert holders() == [("Cora Cole", "held"), ("Bob Brown", "expired")]
    assert Message.select().where(Message.kind == "waitlist_offer").count() == 2
