"""The review page: a patient follows the signed link from a review request and rates the visit,
without signing in."""

import bottle

from clinic import reviews
from clinic.errors import Invalid
from clinic.i18n import _
from clinic.web.cookies import flash
from clinic.web.decorators import page, redirect
from clinic.web.inputs import form
from clinic.web.rendering import render

routes = bottle.Bottle()



@routes.get("/review/<token>")
@page()
def review_form(token):
    visit, review = reviews.visit_for(token)
    if review is not None:
        return render("review/thanks.html", visit=visit, review=review)
    return render("review/form.html", visit=visit, token=token, stars=reviews.STARS)


@routes.post("/review/<token>")
@page()
def review(token):
    data = form()
    try:
        visit, added = reviews.submit(token, data.get("rating"), data.get("comment"))
    except Invalid as exc:
        visit, _review = reviews.visit_for(token)
        return render("review/form.html", status=400, visit=visit, token=token,
                      stars=reviews.STARS, form=data, errors=exc.fields)
    if not added:
        return render("review/thanks.html", visit=visit, review=None)
    flash(_("Thank you for your review!"))
    redirect(f"/review/{token}")
