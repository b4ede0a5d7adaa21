"""The admin's staff page: the front desk and admin accounts, adding one, deactivating one
(their sign-ins end at once) and setting a new password for one."""

import bottle

from clinic import people
from clinic.errors import Invalid
from clinic.i18n import _
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form
from clinic.web.rendering import render
from clinic.web.sessions import current_user

routes = bottle.Bottle()


def _staff_page(status=200, **context):
    return render("admin/staff.html", status=status, staff=list(people.staff()),
                  form=context.pop("form", {}), errors=context.pop("errors", {}), **context)


@routes.get("/admin/staff")
@page("admin")
def staff_list():
    return _staff_page()


@routes.post("/admin/staff")
@page("admin")
def add_staff():
    data = form()
    try:
        user = people.create_staff(data.get("name"), data.get("email"), data.get("password"),
                                   data.get("role"))
    except Invalid as exc:
        return _staff_page(400, form=data, errors=exc.fields or {"__all__": exc.message})
    flash(_("%(name)s can now sign in as front desk.") % {"name": user.name}
          if user.role == "desk" else
          _("%(name)s can now sign in as admin.") % {"name": user.name})
    redirect("/admin/staff")


@routes.post("/admin/staff/<user_id:int>/<action:re:activate|deactivate>")
@page("admin")
def set_staff_active(user_id, action):
    user = people.staff_member(user_id)
    if user.id == current_user().id:
        return _staff_page(409, errors={"__all__": _("You cannot deactivate yourself.")})
    people.set_active(user.id, action == "activate")
    flash(_("%(name)s is active again.") % {"name": user.name} if action == "activate"
          else _("%(name)s is deactivated and signed out.") % {"name": user.name})
    redirect("/admin/staff")


@routes.post("/admin/staff/<user_id:int>/password")
@page("admin")
def reset_staff_password(user_id):
    try:
        user = people.reset_staff_password(user_id, form().get("password"))
    except Invalid as exc:
        return _staff_page(400, errors={f"password-{user_id}": exc.message})
    flash(_("%(name)s has a new password; their sign-ins were ended.") % {"name": user.name})
    redirect("/admin/staff")
