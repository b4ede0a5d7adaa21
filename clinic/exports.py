"""A patient's full medical history as a CSV file: started by the patient, built in the background
with progress, kept under <data_dir>/exports/ for CLINIC_EXPORT_TTL, downloadable only by that
patient, and emailed to them as an attachment.

An export's life::

    start()  -> Export row + PENDING task record (one transaction); the task is queued after COMMIT
    build()  -> claims the record (PENDING -> PROGRESS), writes the CSV in batches with progress,
                renames it into place, then SUCCESS + the email (one transaction), or FAILURE
    download() until expires_at; purge_expired() (the clean-up job) deletes the file after

The CSV is meant for a spreadsheet, and a patient's notes are text anyone could have typed:

- UTF-8 with a byte order mark. Excel reads a CSV without one in the machine's legacy code page,
  and "Zoë" becomes "ZoÃ«"; every other reader (LibreOffice, Numbers, Python's ``utf-8-sig``)
  skips the mark.
- RFC 4180 (the csv module: CRLF line ends, ``"`` doubled), and EVERY cell quoted: a clinic in a
  ``;``-separated locale opens the file with Excel, which splits an unquoted ``a;=1+1`` into two
  cells, the second a formula. Inside quotes the separator is text.
- Formula injection (OWASP, "CSV Injection"): a cell that starts with ``=``, ``+``, ``-``, ``@``,
  tab or carriage return is run as a formula by Excel, LibreOffice or Google Sheets, so it gets a
  leading ``'`` and is shown as text. As OWASP recommends, this is done to every such cell
  without guessing which are harmless: notes "-5 mg" come out as "'-5 mg". The apostrophe shows
  in the spreadsheet; a wrong but visible character beats a cell that runs ``=HYPERLINK(...)``.
"""

import csv
import logging
import os
import secrets
from datetime import timedelta

from clinic import clock, i18n, settings
from clinic.db import database, locked
from clinic.errors import ClinicError, Forbidden, NoAccess, NotFound
from clinic.i18n import _
from clinic.jobs import progress
from clinic.jobs.queue import NORMAL
from clinic.mail import outbox
from clinic.models import Appointment, Export, TaskRecord, Treatment, User
from clinic.settings import Setting
from huey_config import huey

log = logging.getLogger("clinic.exports")

settings.register(
    Setting("export_ttl", "72h", settings.duration,
            "How long a patient's history export can be downloaded; the clean-up job deletes "
            "the file after that."),
)

TASK_NAME = "history export"
COLUMNS = ("Patient ID", "Patient name", "Doctor", "Date", "Visit type", "Symptoms",
           "Diagnosis", "Treatment", "Prescription", "Notes", "Amended")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BATCH = 500  # rows read per query, and between progress reports
# A running export whose record has not moved for this long lost its task (Huey drops a task
# that was running when the process died): it no longer blocks a new one.
STALE_AFTER = timedelta(hours=1)
RUNNING = ("PENDING", "PROGRESS")


class Gone(ClinicError):
    """The export existed but its download period is over."""

    status = 410


def folder():
    return settings.get().data_path / "exports"


def ttl():
    return settings.get().export_ttl


def download_path(task_id):
    return f"/patient/exports/{task_id}/download"


# -- starting -------------------------------------------------------------------------------------


def start(user, now=None):
    """Start exporting ``user``'s history; returns ``(record, started)``: the task record and
    whether it is a new export. A patient's export that is still running is returned instead of
    starting a second one.

    1. Lock the patient's row (PostgreSQL; SQLite's IMMEDIATE transaction already serialises
       writers), so two presses at once start one export.
    2. A running export, unless stale, is the answer. A stale one is marked failed.
    3. Otherwise create the Export row and the PENDING record, and queue the task once they are
       committed: a rolled-back start queues nothing, and the task never finds them missing.
    """
    if user is None or user.role != "patient":
        raise Forbidden(_("Only patients can export their history."))
    now = now or clock.now()
    with database.atomic():
        locked(User.select(User.id).where(User.id == user.id)).execute()
        running = (TaskRecord.select()
                   .join(Export, on=(Export.task_id == TaskRecord.task_id))
                   .where(Export.patient == user.id, TaskRecord.state.in_(RUNNING))
                   .order_by(TaskRecord.created_at.desc()))
        for record in running:
            if record.updated_at > now - STALE_AFTER:
                return record, False
            progress.fail(record.task_id, "Interrupted; please start a new export.")
        record = progress.create(TASK_NAME, user=user, status="Waiting to start")
        Export.create(patient=user.id, task_id=record.task_id, created_at=now,
                      expires_at=now + ttl())
        database.after_commit(lambda: _queue(record.task_id))
    return record, True


def _queue(task_id):
    try:
        export_history(task_id)
    except Exception:  # the start is committed; a lost task goes stale and can be restarted
        log.exception("could not queue history export %s", task_id)


# -- building -------------------------------------------------------------------------------------


def safe_cell(value):
    """A cell a spreadsheet shows as text: ``'`` before anything it would run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def rows(patient, batch=None):
    """The CSV rows of ``patient``'s completed visits, oldest first, as a generator.

    Read in batches of ``batch`` by keyset (start, id), each batch as tuples: memory stays flat
    in the number of visits on SQLite and PostgreSQL alike (psycopg reads a whole result into
    memory, a server-side cursor would need one transaction for the whole export), and no read
    stays open for longer than a batch (a long read stops SQLite from checkpointing its WAL).
    """
    batch = batch or BATCH
    DoctorUser = User.alias("doctor_user")
    tz = clock.zone()
    after = None
    while True:
        query = (Appointment
                 .select(Appointment.id, Appointment.start, DoctorUser.name,
                         Treatment.visit_type, Treatment.symptoms, Treatment.diagnosis,
                         Treatment.treatment, Treatment.prescription, Treatment.notes,
                         Treatment.amended_at)
                 .join(Treatment, on=(Treatment.appointment == Appointment.id))
                 .switch(Appointment)
                 .join(DoctorUser, on=(Appointment.doctor == DoctorUser.id))
                 .where(Appointment.patient == patient.id, Appointment.status == "completed")
                 .order_by(Appointment.start, Appointment.id)
                 .limit(batch))
        if after is not None:
            start, ident = after
            query = query.where((Appointment.start > start)
                                | ((Appointment.start == start) & (Appointment.id > ident)))
        seen = 0
        for ident, start, doctor, *record, amended_at in query.tuples().iterator():
            seen += 1
            after = (start, ident)
            # The record in force; "Amended" says when it was last corrected (the earlier
            # text stays in the clinic's amendments, clinic/records.py).
            amended = "" if amended_at is None else (
                "amended " + amended_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"))
            yield (patient.id, patient.name, doctor,
                   start.astimezone(tz).strftime("%Y-%m-%d %H:%M"), *record, amended)
        if seen < batch:
            return


def count(patient):
    return (Appointment.select(Appointment.id)
            .join(Treatment, on=(Treatment.appointment == Appointment.id))
            .where(Appointment.patient == patient.id, Appointment.status == "completed")
            .count())


def build(task_id, now=None):
    """Write the export ``task_id`` and send it; returns what it did. The function the Huey task
    ``export_history`` runs.

    1. Claim the record with a conditional UPDATE (PENDING -> PROGRESS): a task queued twice, or
       an export already failed as stale, is left alone.
    2. Write the rows to a temporary file in the exports folder, reporting progress after each
       batch; fsync and rename it to an unguessable name, so the file is whole or absent.
    3. In one transaction: the Export row gets the file, its row count and its expiry (counted
       from now), the email is queued, the record says SUCCESS with the download link.
    On any error the file is removed and the record says FAILURE.
    """
    export = (Export.select(Export, User).join(User)
              .where(Export.task_id == task_id, ~Export.deleted).first())
    if export is None:
        return {"skipped": "no such export"}
    patient = export.patient
    total = count(patient)
    claimed = (TaskRecord.update(state="PROGRESS", current=0, total=total,
                                 status="Collecting your visits", updated_at=clock.now())
               .where(TaskRecord.task_id == task_id, TaskRecord.state == "PENDING")
               .execute())
    if claimed != 1:
        return {"skipped": "not pending"}
    target = folder()
    tmp = target / f".{secrets.token_hex(8)}.tmp"
    name = f"{secrets.token_urlsafe(32)}.csv"
    try:
        target.mkdir(parents=True, exist_ok=True)
        written = _write(tmp, rows(patient), task_id, total)
        os.replace(tmp, target / name)
        _finish(export, name, written, now)
    except Exception as exc:
        log.exception("history export %s failed", task_id)
        # _finish() is one transaction: when it fails, no row names the file.
        for path in (tmp, target / name):
            path.unlink(missing_ok=True)
        progress.fail(task_id, "The export could not be made; please try again later.")
        return {"failed": f"{type(exc).__name__}: {exc}"}
    return {"rows": written}


def _write(path, records, task_id, total):
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    # newline="": the csv module writes its own CRLF line ends.
    with open(fd, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for record in records:
            writer.writerow([safe_cell(value) for value in record])
            written += 1
            if written % BATCH == 0:
                progress.step(task_id, written, max(total, written),
                              f"{written} of {max(total, written)} visits")
        fh.flush()
        os.fsync(fh.fileno())
    return written


def _finish(export, name, written, now=None):
    now = now or clock.now()
    expires_at = now + ttl()
    patient = export.patient
    s = settings.get()
    with database.atomic():
        (Export.update(filename=name, rows=written, expires_at=expires_at)
         .where(Export.id == export.id).execute())
        outbox.enqueue(
            "history_export", f"history_export:{export.id}", patient.email,
            context={"name": patient.name, "rows": written, "expires_at": expires_at,
                     "download_url": s.base_url + download_path(export.task_id),
                     "lifetime": ttl()},
            user=patient.id,
            attachments=[{"filename": download_name(export), "content_type": "text/csv",
                          "path": f"exports/{name}"}])
        progress.succeed(export.task_id, {
            "download_url": download_path(export.task_id), "rows": written,
            "expires_at": clock.local(expires_at).isoformat()},
            status=f"Ready: {written} visit{'' if written == 1 else 's'}")


def download_name(export):
    """What the browser saves the file as: ASCII only (it goes into a header as it is)."""
    return f"medical-history-{clock.local(export.created_at).strftime('%Y-%m-%d')}.csv"


def _in_words(delta):
    return i18n.duration(delta)


# -- seeing and downloading -----------------------------------------------------------------------


def export_for(user, task_id):
    """``(export, record)`` of the export ``task_id`` if ``user`` is the patient who made it;
    NotFound for anyone else, doctors and admins included (ids are not to be probed)."""
    task_id = str(task_id)[:64]
    export = Export.get_or_none(Export.task_id == task_id)
    record = TaskRecord.get_or_none(TaskRecord.task_id == task_id)
    if (user is None or export is None or record is None or user.role != "patient"
            or export.patient_id != user.id):
        raise NoAccess(_("No such export."), "export", task_id)
    return export, record


def available(export, now=None):
    """Whether the export's file may be downloaded now."""
    now = now or clock.now()
    return bool(export.filename) and not export.deleted and now < export.expires_at


def download(user, task_id, now=None):
    """``(path, name)`` of the export's file for its patient: NotFound for anyone else or while
    it is not ready, Gone once its download period is over."""
    export, record = export_for(user, task_id)
    if record.state != "SUCCESS" or not export.filename:
        raise NotFound(_("This export is not ready yet."))
    path = folder() / export.filename
    if not available(export, now) or not path.is_file():
        raise Gone(_("This export is no longer available: downloads work for %(lifetime)s. "
                     "Start a new export from your history page.") % {"lifetime": _in_words(ttl())})
    return path, download_name(export)


# -- clean-up -------------------------------------------------------------------------------------


def purge_expired(now=None):
    """Delete the files of exports past their expiry and mark the rows deleted; returns how many.
    Also removes temporary files a killed build left behind. For the weekly clean-up job.

    The file goes first, then the row: if marking fails, the next run deletes nothing twice
    (a missing file is fine) and marks it then; the other order could leave a file of medical
    records that nothing points at."""
    now = now or clock.now()
    expired = Export.select().where(~Export.deleted, Export.expires_at <= now)
    purged = 0
    for export in list(expired):  # all read first (test_concurrent_writes.py)
        if export.filename:
            (folder() / export.filename).unlink(missing_ok=True)
        purged += (Export.update(deleted=True)
                   .where(Export.id == export.id, ~Export.deleted).execute())
    _remove_leftovers(now)
    return purged


def _remove_leftovers(now):
    try:
        leftovers = list(folder().glob(".*.tmp"))
    except OSError:
        return
    cutoff = (now - ttl()).timestamp()
    for path in leftovers:
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            pass


# -- the task --------------------------------------------------------------------------------------
# start() queues it once the export's rows are committed; a task lost with the process leaves its
# export PENDING until it goes stale and the patient can start another.


@huey.task(priority=NORMAL)
def export_history(task_id):
    """Build a patient's history export. Returns nothing: Huey would keep every result."""
    build(task_id)
