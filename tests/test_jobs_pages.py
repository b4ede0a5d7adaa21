"""The admin's jobs pages, driven as the admin would: a failed task shows and Retry runs it to
success, Run now runs a scheduled job, Revoke stops a waiting task, the banner says when the
scheduler stopped, and the list filters and pages."""

import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from huey import signals as S

from clinic.jobs import heartbeats, runs, scheduler
from clinic.jobs.queue import NORMAL
from clinic.jobs.scheduler import Job
from clinic.models import JobState, TaskRecord, TaskRun
from huey_config import huey
from tests.browser import browser, screenshot  # noqa: F401 (fixture)
from tests.conftest import PASSWORD, TZ, login

ran = []


@huey.task()
def send_letters(ids):
    """Fails the first time, succeeds after."""
    ran.append(ids)
    if len(ran) == 1:
        raise ConnectionRefusedError("SMTP server not answering")


@huey.task()
def wait_for_me(ids):
    ran.append(ids)


def count_visits(now):
    ran.append(now)
    return {"sent": 3}


TEST_JOB = Job("test-job", "test_job_at", "08:00", count_visits, NORMAL,
               "A job for tests.")


def local(*args):
    return datetime(*args, tzinfo=TZ).astimezone(UTC)


@pytest.fixture(autouse=True)
def forget():
    ran.clear()


@pytest.fixture
def admin(client, erin):
    login(client, erin)
    client.get("/admin")  # the signed-in page's CSRF token
    return client


_numbers = itertools.count(1)


def add_run(job, state="succeeded", runtime=1.0, queued_at=None, **fields):
    queued_at = queued_at or datetime.now(UTC)
    return TaskRun.create(task_id=f"run-{next(_numbers)}", job=job,
                          task="clinic.jobs.scheduler.run_job",
                          state=state, runtime=runtime, queued_at=queued_at, started_at=queued_at,
                          **fields)


def run_rows(page):
    """The task ids of the runs listed on the jobs page, in order."""
    return re.findall(r'<tr id="run-([^"]+)">', page.text)


# -- access ---------------------------------------------------------------------------------------


def test_only_admins_see_the_jobs_pages(client, new_client, alice, carol, erin):
    run = add_run("no-shows", "failed")
    for user in (alice, carol):
        other = new_client()
        login(other, user)
        assert other.get("/admin/jobs").status == 403
        assert other.get(f"/admin/jobs/runs/{run.task_id}").status == 403
        for path in ("/admin/jobs/no-shows/run", f"/admin/jobs/runs/{run.task_id}/retry"):
            refused = other.post(path)
            assert refused.status == 403 and "does not have access" in refused.text
    assert huey.pending_count() == 0
    anonymous = client.get("/admin/jobs")
    assert anonymous.status == 303 and anonymous.location.endswith("/login?next=%2Fadmin%2Fjobs")


def test_the_admin_nav_links_to_the_jobs_page(admin):
    assert '<a href="/admin/jobs">Jobs</a>' in admin.get("/admin").text


# -- the scheduled jobs ---------------------------------------------------------------------------


def test_each_job_shows_its_schedule_last_run_and_next_five_runs(admin):
    with time_machine.travel(local(2026, 11, 10, 12), tick=False):
        with scheduler.registry(TEST_JOB):
            scheduler.run("test-job")
        page = admin.get("/admin/jobs")
    assert page.status == 200
    row = page.text.split('<tr id="job-daily-reminders">')[1].split("</tr>")[0]
    assert "every day at 08:00 Europe/Berlin" in row
    assert re.findall(r"<li>([^<]+)</li>", row) == [
        "Wed 11 Nov, 08:00", "Thu 12 Nov, 08:00", "Fri 13 Nov, 08:00", "Sat 14 Nov, 08:00",
        "Sun 15 Nov, 08:00"]
    assert 'action="/admin/jobs/daily-reminders/run"' in row
    for job in scheduler.JOBS:
        assert f'<tr id="job-{job.name}">' in page.text


def test_run_now_queues_a_scheduled_job_and_it_runs(admin, drain):
    with scheduler.registry(TEST_JOB):
        page = admin.get("/admin/jobs")
        assert 'action="/admin/jobs/test-job/run"' in page.text
        response = admin.post("/admin/jobs/test-job/run")
        assert response.status == 303 and response.location.endswith("/admin/jobs#runs")
        [task] = huey.pending()
        assert (task.name, task.args[0], task.priority) == ("run_job", "test-job", NORMAL)
        page = admin.get("/admin/jobs")
        assert "test-job is queued" in page.text
        drain()
    assert len(ran) == 1
    assert JobState.get_by_id("test-job").last_result == "sent 3"
    run = TaskRun.get(TaskRun.task_id == task.id)
    assert (run.state, run.result, run.idle) == ("succeeded", "sent 3", False)
    page = admin.get("/admin/jobs?job=test-job")
    assert run_rows(page) == [task.id] and "<small>sent 3</small>" in page.text
    detail = admin.get(f"/admin/jobs/runs/{task.id}")
    assert "<dt>Result</dt><dd>sent 3</dd>" in detail.text


def find_nothing(now):
    return {"tried": 0, "sent": 0}


def test_runs_that_found_nothing_to_do_are_hidden_until_asked_for(admin, drain):
    with scheduler.registry(Job("quiet-job", "quiet_job_at", "every 1m", find_nothing, NORMAL,
                                "Finds nothing.")):
        admin.post("/admin/jobs/quiet-job/run")
        [task] = huey.pending()
        drain()
    run = TaskRun.get(TaskRun.task_id == task.id)
    assert (run.result, run.idle) == ("tried 0, sent 0", True)
    busy = add_run("outbox-sweep", result="tried 2, sent 2")
    page = admin.get("/admin/jobs")
    assert run_rows(page) == [busy.task_id]
    assert 'name="idle" value="shown">' in page.text  # the filter, unchecked
    page = admin.get("/admin/jobs?idle=shown")
    assert set(run_rows(page)) == {busy.task_id, task.id}
    assert 'name="idle" value="shown" checked>' in page.text
    hidden = admin.get("/admin/jobs?job=quiet-job")
    assert run_rows(hidden) == [] and "runs that found nothing to do are hidden" in hidden.text
    detail = admin.get(f"/admin/jobs/runs/{task.id}")
    assert "<dt>Result</dt><dd>tried 0, sent 0 (nothing to do)</dd>" in detail.text


@pytest.mark.parametrize(("result", "idle"), [
    (0, True), ({"sent": 0, "failed": 0}, True), (3, False), ({"sent": 0, "failed": 1}, False),
    (None, False), ({}, False), ({"note": "0"}, False)])
def test_found_nothing_means_every_count_is_zero(result, idle):
    assert scheduler.found_nothing(result) is idle


def test_run_now_of_an_unknown_job_is_404(admin):
    assert admin.post("/admin/jobs/no-such-job/run").status == 404
    assert huey.pending_count() == 0


def test_per_job_counts_median_and_95th_percentile(admin):
    now = datetime.now(UTC)
    for seconds in range(1, 21):
        add_run("daily-reminders", runtime=float(seconds),
                queued_at=now - timedelta(hours=seconds))
    add_run("daily-reminders", "failed", runtime=0.5, queued_at=now - timedelta(days=1))
    add_run("daily-reminders", runtime=999.0, queued_at=now - timedelta(days=8))
    page = admin.get("/admin/jobs")
    row = page.text.split('<tr id="job-daily-reminders">')[1].split("</tr>")[0]
    assert "20 succeeded" in row and "1 failed" in row
    assert "median 10 s" in row and "95% within 19 s" in row
    other = page.text.split('<tr id="job-cleanup">')[1].split("</tr>")[0]
    assert "0 succeeded" in other and "median" not in other


# -- failures, Retry, Revoke ----------------------------------------------------------------------


def test_a_failed_task_shows_on_the_jobs_page_and_retry_runs_it_to_success(admin, consumer,
                                                                           finished):
    result = send_letters([21, 22])
    finished(result.id, S.SIGNAL_ERROR)
    run = TaskRun.get(TaskRun.task_id == result.id)
    page = admin.get("/admin/jobs?state=failed")
    assert run_rows(page) == [run.task_id]
    assert "ConnectionRefusedError: SMTP server not answering" in page.text

    detail = admin.get(f"/admin/jobs/runs/{run.task_id}")
    assert detail.status == 200
    assert "ids=[21, 22]" in detail.text
    assert '<pre class="traceback">Traceback' in detail.text
    assert f'action="/admin/jobs/runs/{run.task_id}/retry"' in detail.text
    assert "/revoke" not in detail.text

    response = admin.post(f"/admin/jobs/runs/{run.task_id}/retry")
    assert response.status == 303 and response.location.endswith(f"/runs/{run.task_id}")
    finished(run.task_id, S.SIGNAL_COMPLETE)
    run = TaskRun.get(TaskRun.task_id == run.task_id)
    assert ran == [[21, 22], [21, 22]] and run.attempt == 2
    detail = admin.get(f"/admin/jobs/runs/{run.task_id}")
    assert "status-succeeded" in detail.text and "An earlier attempt failed" in detail.text
    assert "/retry" not in detail.text
    assert run_rows(admin.get("/admin/jobs?state=failed")) == []


def test_a_run_whose_process_was_killed_shows_as_interrupted_with_retry(admin, drain):
    from tests.test_monitor import dead_pid

    result = send_letters([5])
    drain()  # it ran in a process that was then killed before it finished
    worker = f"{runs.HOST} pid {dead_pid()}"
    (TaskRun.update(state="running", finished_at=None, worker=worker)
     .where(TaskRun.task_id == result.id).execute())
    assert heartbeats.interrupt_orphans() == 1
    detail = admin.get(f"/admin/jobs/runs/{result.id}")
    assert "status-interrupted" in detail.text
    assert "The process running this task stopped before it finished" in detail.text
    assert f"<dt>Ran in</dt><dd>{worker}</dd>" in detail.text
    assert f'action="/admin/jobs/runs/{result.id}/retry"' in detail.text


def test_retrying_twice_says_it_is_already_queued(admin, drain):
    result = send_letters([1])
    drain()
    admin.get(f"/admin/jobs/runs/{result.id}")
    assert admin.post(f"/admin/jobs/runs/{result.id}/retry").status == 303
    again = admin.post(f"/admin/jobs/runs/{result.id}/retry")
    assert again.status == 409 and "its state is queued" in again.text
    assert huey.pending_count() == 1


def test_revoke_means_a_waiting_task_does_not_run(admin, drain):
    result = wait_for_me([8])
    detail = admin.get(f"/admin/jobs/runs/{result.id}")
    assert "status-queued" in detail.text
    assert f'action="/admin/jobs/runs/{result.id}/revoke"' in detail.text
    response = admin.post(f"/admin/jobs/runs/{result.id}/revoke")
    assert response.status == 303
    assert "is revoked: it will not run" in admin.get(response.location).text
    drain()
    assert ran == []
    assert TaskRun.get(TaskRun.task_id == result.id).state == "revoked"
    again = admin.post(f"/admin/jobs/runs/{result.id}/revoke")
    assert again.status == 409 and "Only a waiting task can be revoked" in again.text


def test_an_unknown_run_is_404(admin):
    assert admin.get("/admin/jobs/runs/no-such-task").status == 404
    assert admin.post("/admin/jobs/runs/no-such-task/retry").status == 404


# -- the banner -----------------------------------------------------------------------------------


def tick_at(instant):
    with scheduler.registry(), time_machine.travel(instant, tick=False):
        huey.execute(scheduler.scheduler_tick.s())


def test_banner_on_admin_pages_when_the_scheduler_has_not_ticked_for_three_minutes(admin):
    tick_at(local(2026, 11, 10, 10, 42))
    with time_machine.travel(local(2026, 11, 10, 10, 45), tick=False):
        for path in ("/admin", "/admin/jobs", "/admin/patients"):
            assert "Background jobs are not running since 10:42." in admin.get(path).text


def test_no_banner_when_the_scheduler_ticked_a_minute_ago(admin):
    tick_at(local(2026, 11, 10, 10, 42))
    with time_machine.travel(local(2026, 11, 10, 10, 43), tick=False):
        page = admin.get("/admin/jobs")
    assert page.status == 200 and "not running" not in page.text


def test_banner_when_tasks_wait_and_no_worker_starts_them(admin):
    with time_machine.travel(local(2026, 11, 10, 9, 0), tick=False):
        wait_for_me([1])
    with time_machine.travel(local(2026, 11, 10, 9, 3), tick=False):
        assert "tasks have been waiting since 09:00" in admin.get("/admin").text


def test_patients_never_see_the_banner(client, alice):
    tick_at(local(2026, 11, 10, 10, 42))
    login(client, alice)
    with time_machine.travel(local(2026, 11, 10, 11), tick=False):
        assert "Background jobs" not in client.get("/patient").text


# -- the list of runs -----------------------------------------------------------------------------


def test_runs_filter_by_job_state_and_days_and_page(admin):
    base = local(2026, 11, 10, 8)
    sweeps = [add_run("outbox-sweep", queued_at=base + timedelta(minutes=i)) for i in range(30)]
    failed = add_run("no-shows", "failed", queued_at=local(2026, 11, 9, 23, 30),
                     error="OperationalError: database is locked")
    newest_first = [r.task_id for r in reversed(sweeps)]

    assert run_rows(admin.get("/admin/jobs?job=outbox-sweep")) == newest_first[:25]
    second = admin.get("/admin/jobs?job=outbox-sweep&page=2")
    assert run_rows(second) == newest_first[25:]
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text

    page = admin.get("/admin/jobs?state=failed")
    assert run_rows(page) == [failed.task_id]
    assert "OperationalError: database is locked" in page.text
    assert run_rows(admin.get("/admin/jobs?to=2026-11-09")) == [failed.task_id]
    assert run_rows(admin.get("/admin/jobs?from=2026-11-10&to=2026-11-10&page=2")) == (
        newest_first[25:])
    assert run_rows(admin.get("/admin/jobs?from=2026-11-11")) == []
    assert '<option value="outbox-sweep" selected>' in admin.get(
        "/admin/jobs?job=outbox-sweep").text


def test_a_bad_filter_is_a_400_saying_what_is_expected(admin):
    page = admin.get("/admin/jobs?from=10.11.2026&state=bogus")
    assert page.status == 400
    assert "Enter a date as YYYY-MM-DD." in page.text
    assert "Choose a state from the list." in page.text
    assert 'value="10.11.2026"' in page.text  # what was typed stays


# -- progress -------------------------------------------------------------------------------------


def test_a_run_with_progress_shows_a_live_bar_with_a_refresh_link(admin):
    TaskRecord.create(task_id="rec-1", name="monthly-reports", state="PROGRESS", current=3,
                      total=8, status="Making reports")
    run = add_run("make_monthly_reports", "running", progress_id="rec-1")
    page = admin.get(f"/admin/jobs/runs/{run.task_id}")
    assert 'data-task-url="/api/tasks/rec-1"' in page.text and 'data-state="PROGRESS"' in page.text
    assert '<progress id="task-progress-bar" max="8" value="3">' in page.text
    assert "Making reports: 3 of 8" in page.text
    assert f'<a href="/admin/jobs/runs/{run.task_id}">Refresh</a>' in page.text
    assert re.search(r'<script src="/static/progress\.js\?v=\d+"></script>', page.text)
    assert "<script>" not in page.text  # no inline script: the CSP forbids it
    script = admin.get("/static/progress.js")
    assert script.status == 200 and "data-task-url" in script.text


def test_a_finished_run_keeps_its_bar_and_loads_no_script(admin):
    TaskRecord.create(task_id="rec-2", name="monthly-reports", state="SUCCESS", current=8,
                      total=8, status="Made 8 reports")
    run = add_run("make_monthly_reports", progress_id="rec-2")
    page = admin.get(f"/admin/jobs/runs/{run.task_id}")
    assert '<progress id="task-progress-bar" max="8" value="8">' in page.text
    assert "Made 8 reports: 8 of 8" in page.text and "progress.js" not in page.text


def test_a_run_without_progress_has_no_bar_and_no_script(admin):
    run = add_run("no-shows")
    page = admin.get(f"/admin/jobs/runs/{run.task_id}")
    assert "<progress" not in page.text and "progress.js" not in page.text


# -- in a real browser ----------------------------------------------------------------------------


@pytest.mark.browser
def test_admin_watches_a_tasks_progress_in_a_real_browser(browser, server, erin):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from clinic.jobs import progress

    record = progress.create("monthly-reports", total=8, status="Making reports")
    progress.step(record.task_id, 2)
    run = add_run("make_monthly_reports", "running", progress_id=record.task_id)
    browser.get(f"{server}/login")
    browser.find_element(By.NAME, "email").send_keys(erin.email)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.card button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/admin"))
    browser.get(f"{server}/admin/jobs")
    assert browser.find_element(By.ID, "job-daily-reminders").is_displayed()
    assert screenshot(browser, "admin-jobs").exists()

    browser.get(f"{server}/admin/jobs/runs/{run.task_id}")
    bar = browser.find_element(By.ID, "task-progress-bar")
    assert bar.get_attribute("value") == "2"
    progress.step(record.task_id, 6)  # the task moves on; the page follows without a reload
    WebDriverWait(browser, 10).until(lambda d: bar.get_attribute("value") == "6")
    assert "6 of 8" in browser.find_element(By.ID, "task-progress-status").text
    assert screenshot(browser, "admin-job-progress").exists()

    progress.succeed(record.task_id, {"total": 8})
    TaskRun.update(state="succeeded").where(TaskRun.task_id == run.task_id).execute()
    WebDriverWait(browser, 15).until(
        lambda d: "status-succeeded" in d.find_element(By.TAG_NAME, "h1").get_attribute(
            "innerHTML"))
