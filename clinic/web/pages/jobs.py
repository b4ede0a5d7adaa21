"""The admin's jobs pages: the scheduled jobs with Run now, every task run with filters, a run's
details with Retry and Revoke, and the banner that says when background jobs are not running."""

import bottle
from bottle import request

from clinic import waitlist
from clinic.errors import Conflict, Invalid
from clinic.jobs import monitor
from clinic.models import TASK_RUN_STATES
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import one_page, paging
from clinic.web.rendering import render, templates

routes = bottle.Bottle()

# base.html shows the banner on every page an admin sees.
templates.globals["jobs_banner"] = monitor.banner

FILTERS = ("job", "state", "from", "to", "idle")


@routes.get("/admin/jobs")
@page("admin")
def jobs_page():
    filters = {name: request.query.getunicode(name, "").strip() for name in FILTERS}
    number, window = paging()
    errors = {}
    try:
        runs, more = one_page(monitor.search(filters["job"], filters["state"], filters["from"],
                                              filters["to"], idle=bool(filters["idle"]),
                                              **window))
    except Invalid as exc:
        runs, more, errors = [], False, exc.fields
    return render("admin/jobs.html", status=400 if errors else 200, jobs=monitor.overview(),
                  runs=runs, more=more, page=number, form=filters, errors=errors,
                  job_names=monitor.job_names(), states=TASK_RUN_STATES,
                  runtime=monitor.format_runtime, stats_days=monitor.STATS_DAYS,
                  offers=waitlist.offers(50))


@routes.post("/admin/jobs/<name>/run")
@page("admin")
def run_now(name):
    monitor.run_now(name)
    flash(f"{name} is queued: it starts as soon as a worker is free. Its run is listed below.")
    redirect("/admin/jobs#runs")


def _run_page(run, status=200, **context):
    return render("admin/jobs_run.html", status=status, run=run,
                  record=monitor.progress_of(run), runtime=monitor.format_runtime,
                  can_retry=run.state in monitor.RETRYABLE and run.call is not None,
                  can_revoke=run.state in monitor.WAITING, **context)


@routes.get("/admin/jobs/runs/<task_id>")
@page("admin")
def run_detail(task_id):
    return _run_page(monitor.run_for(task_id))


def _act_on_run(task_id, act, done):
    """Retry or revoke a run with ``act(task_id)``, then say ``done`` about its job on its page.
    If the run has moved on meanwhile, its page says why nothing was done."""
    run = monitor.run_for(task_id)
    try:
        act(run.task_id)
    except Conflict as exc:
        return _run_page(monitor.run_for(task_id), status=409, errors={"__all__": exc.message})
    flash(f"{run.job} {done}")
    redirect(f"/admin/jobs/runs/{run.task_id}")


@routes.post("/admin/jobs/runs/<task_id>/retry")
@page("admin")
def retry(task_id):
    return _act_on_run(task_id, monitor.retry, "is queued again; this page shows how it goes.")


@routes.post("/admin/jobs/runs/<task_id>/revoke")
@page("admin")
def revoke(task_id):
    return _act_on_run(task_id, monitor.revoke, "is revoked: it will not run.")
