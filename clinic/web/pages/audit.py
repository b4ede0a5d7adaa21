"""The admin's audit log page: who saw or exported which patient's history, and every access
refused, newest first, with filters. Read only: there is nothing to change or delete."""

import bottle
from bottle import request

from clinic import audit
from clinic.errors import Invalid
from clinic.models import AUDIT_OUTCOMES
from clinic.web.decorators import page
from clinic.web.inputs import one_page, paging
from clinic.web.rendering import render

routes = bottle.Bottle()

FILTERS = ("patient", "user", "action", "outcome", "from", "to")


@routes.get("/admin/audit")
@page("admin")
def audit_log():
    filters = {name: request.query.getunicode(name, "").strip() for name in FILTERS}
    number, window = paging()
    errors = {}
    try:
        entries, more = one_page(audit.search(
            filters["patient"], filters["user"], filters["action"], filters["outcome"],
            filters["from"], filters["to"], **window))
    except Invalid as exc:
        entries, more, errors = [], False, exc.fields
    return render("admin/audit.html", status=400 if errors else 200, entries=entries,
                  more=more, page=number, form=filters, errors=errors, actions=audit.actions(),
                  outcomes=AUDIT_OUTCOMES)
