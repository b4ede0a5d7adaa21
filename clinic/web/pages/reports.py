"""The admin's monthly reports page: for a month, each doctor's report (sent, made, failed or
missing), when it was sent and its figures (clinic/reports.py)."""

import bottle
from bottle import request

from clinic import reports
from clinic.errors import Invalid
from clinic.web.decorators import page
from clinic.web.rendering import render

routes = bottle.Bottle()


@routes.get("/admin/reports")
@page("admin")
def report_summary():
    month_year = request.query.getunicode("month_year", "").strip() or reports.label(
        reports.previous_month())
    try:
        summary = reports.summary(month_year)
    except Invalid as exc:
        return render("admin/reports.html", status=400, summary=None,
                      form={"month_year": month_year}, errors=exc.fields)
    return render("admin/reports.html", summary=summary, form={"month_year": month_year})
