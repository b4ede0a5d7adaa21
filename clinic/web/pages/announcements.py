"""The admin's announcements: write one, preview it (the email and the number of recipients),
send it in the background and follow its progress; resume one that stopped."""

import bottle

from clinic import announcements, people
from clinic.errors import Conflict, Invalid
from clinic.i18n import _, ngettext
from clinic.models import TaskRecord
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form, one_page, paging
from clinic.web.rendering import render
from clinic.web.sessions import current_user

routes = bottle.Bottle()

FIELDS = ("subject", "text", "audience", "doctor_id", "from", "to")


def _audience(data):
    """The form's audience fields as the dict announcements.parse() takes."""
    return {"type": data.get("audience", ""), "doctor_id": data.get("doctor_id", ""),
            "from": data.get("from", ""), "to": data.get("to", "")}


def _form_page(data, status=200, errors=None, preview=None, notice=None):
    return render("admin/announcement_form.html", status=status, form=data,
                  errors=errors or {}, preview=preview, notice=notice,
                  audiences=announcements.AUDIENCES,
                  doctors=list(people.doctors(active_only=False)))


@routes.get("/admin/announcements")
@page("admin")
def announcement_list():
    number, window = paging()
    rows, more = one_page(announcements.listing(**window))
    return render("admin/announcements.html", announcements=rows, page=number, more=more,
                  describe=announcements.describe)


@routes.get("/admin/announcements/new")
@page("admin")
def new_announcement():
    return _form_page({"audience": "all"})


@routes.post("/admin/announcements/new")
@page("admin")
def preview_or_send():
    """"Preview" shows the email and its recipients; "Send" (offered only with a preview) sends
    what was previewed. A message changed after its preview is previewed again, not sent."""
    submitted = form()
    data = {name: value for name, value in submitted.items() if name in FIELDS + ("checked",)}
    try:
        preview = announcements.preview(data.get("subject"), data.get("text"), _audience(data))
    except Invalid as exc:
        return _form_page(data, status=400, errors=exc.fields)
    if submitted.get("action") != "send":
        return _form_page(data, preview=preview)
    if data.get("checked") != preview["fingerprint"]:
        return _form_page(data, status=409, preview=preview,
                          notice=_("The message changed since its preview: check it again."))
    announcement, _record = announcements.start(current_user(), data.get("subject"),
                                                data.get("text"), _audience(data))
    flash(ngettext("Sending to %(num)d patient. You may leave this page: it goes on in the "
                   "background.", "Sending to %(num)d patients. You may leave this page: it goes "
                   "on in the background.", announcement.recipients)
          % {"num": announcement.recipients})
    redirect(f"/admin/announcements/{announcement.id}")


def _detail(announcement, status=200, errors=None):
    record = TaskRecord.get_or_none(TaskRecord.task_id == announcement.task_id)
    return render("admin/announcement.html", status=status, a=announcement, record=record,
                  audience=announcements.describe(announcement.audience),
                  delivery=announcements.delivery(announcement.id), errors=errors or {})


@routes.get("/admin/announcements/<announcement_id:int>")
@page("admin")
def announcement_detail(announcement_id):
    return _detail(announcements.get(announcement_id))


@routes.post("/admin/announcements/<announcement_id:int>/resume")
@page("admin")
def resume(announcement_id):
    announcement = announcements.get(announcement_id)
    try:
        announcements.resume(current_user(), announcement.id)
    except Conflict as exc:
        return _detail(announcement, status=409, errors={"__all__": exc.message})
    flash(_("Sending again: whoever has the announcement already does not get it twice."))
    redirect(f"/admin/announcements/{announcement.id}")
