"""Charts drawn on the server as SVG: readable without JavaScript, no library, nothing from a CDN.

Each function takes plain data and returns one ``<svg>`` element as Markup, every text in it
escaped here, with a <title> and a <desc> for screen readers and a legend. The page puts a table
of the same numbers next to it. Only presentation attributes (fill=, stroke=, font-size=...):
the Content-Security-Policy forbids style attributes, and there is no script.

``stacked_bars`` and ``horizontal_bars`` are the two shapes; ``appointments_per_day``,
``no_show_rates`` and ``emails_per_day`` fit the dashboard's data (clinic.stats.compute_charts)
to them.
"""

import math

from markupsafe import Markup, escape

from clinic import i18n
from clinic.i18n import N_, _

WIDTH = 720
TEXT = "#1d2329"
MUTED = "#5b6670"
GRID = "#dde2e7"
# Okabe and Ito's palette: told apart with every common colour-vision deficiency.
STATUS_COLOURS = {"booked": "#0072B2", "confirmed": "#56B4E9", "completed": "#009E73",
                  "cancelled": "#999999", "no_show": "#D55E00"}
SENT, FAILED = "#009E73", "#D55E00"
SMS_SENT, SMS_FAILED = "#56B4E9", "#CC79A7"
NO_DATA = N_("No data yet.")  # translated where it is drawn


def _number(value):
    """A coordinate: two decimals at most, no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _svg(chart_id, title, desc, height, body):
    chart_id = escape(chart_id)
    return Markup(  # noqa: S704 (every text and attribute in it went through escape())
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{chart_id}" class="chart" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'font-family="sans-serif" font-size="12" fill="{TEXT}">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>'
        f'{"".join(body)}</svg>')


def _text(x, y, content, anchor="start", **attrs):
    extra = "".join(f' {name.replace("_", "-")}="{escape(value)}"'
                    for name, value in attrs.items())
    return (f'<text x="{_number(x)}" y="{_number(y)}" text-anchor="{anchor}"{extra}>'
            f'{escape(content)}</text>')


def _line(x1, y1, x2, y2, colour=GRID):
    return (f'<line x1="{_number(x1)}" y1="{_number(y1)}" x2="{_number(x2)}" '
            f'y2="{_number(y2)}" stroke="{colour}" stroke-width="1"/>')


def _legend(entries, y=16, x=8):
    """Coloured squares with their names, in one row."""
    parts = ['<g class="legend">']
    for label, colour in entries:
        parts.append(f'<rect x="{_number(x)}" y="{y - 10}" width="12" height="12" '
                     f'fill="{escape(colour)}"/>')
        parts.append(_text(x + 17, y, label))
        x += 17 + 7 * len(label) + 18  # a generous estimate of the text's width
    parts.append("</g>")
    return "".join(parts)


def nice_scale(largest, ticks=4):
    """``(top, step)``: a round step (1, 2 or 5 times a power of ten, whole numbers at least) and
    the first multiple of it at or above ``largest``, so the axis reads 0, step, ... top."""
    if largest <= 0:
        return 1, 1
    rough = largest / ticks
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    step = max(1, step)
    return step * math.ceil(largest / step), step


def no_data(chart_id, title, message=""):
    """What a chart is when there is nothing to draw: its title and a plain sentence."""
    desc = f"{_(NO_DATA)} {message}".strip()
    body = [_text(WIDTH / 2, 36, _(NO_DATA), "middle", font_size="16", font_weight="bold")]
    if message:
        body.append(_text(WIDTH / 2, 60, message, "middle", fill=MUTED))
    return _svg(chart_id, title, desc, 80, body)


def stacked_bars(chart_id, title, columns, series, x_label, y_label, empty=""):
    """Vertical bars, one per column, each stacked from its series' values.

    ``columns``: ``[(label, {key: value} or None)]``, None for a column with no figures (no bar,
    said so in the description); ``series``: ``[(key, label, colour)]``, drawn bottom up.
    With no figures at all, the ``no_data`` chart with the ``empty`` sentence."""
    known = [(label, values) for label, values in columns if values is not None]
    if not known:
        return no_data(chart_id, title, empty)
    height, top_y, left, right, bottom = 300, 40, 52, 12, 56
    plot_w, plot_h = WIDTH - left - right, height - top_y - bottom
    base_y = top_y + plot_h
    totals = [sum(values.get(key, 0) for key, _, _ in series) for _, values in known]
    top, step = nice_scale(max(totals))
    body = [_legend([(label, colour) for _, label, colour in series])]
    for tick in range(0, top + 1, step):
        y = base_y - tick / top * plot_h
        body.append(_line(left, y, WIDTH - right, y))
        body.append(_text(left - 6, y + 4, str(tick), "end", fill=MUTED))
    slot = plot_w / len(columns)
    bar = max(1.0, slot * 0.7)
    every = max(1, math.ceil(len(columns) / 10))  # about ten labels along the axis
    for index, (label, values) in enumerate(columns):
        x = left + index * slot + (slot - bar) / 2
        if index % every == 0:
            body.append(_text(left + (index + 0.5) * slot, base_y + 16, label, "middle"))
        if values is None:
            continue
        y = base_y
        for key, name, colour in series:
            value = values.get(key, 0)
            if not value:
                continue
            h = value / top * plot_h
            y -= h
            body.append(
                f'<rect x="{_number(x)}" y="{_number(y)}" width="{_number(bar)}" '
                f'height="{_number(h)}" fill="{escape(colour)}" data-series="{escape(key)}" '
                f'data-value="{value}"><title>{escape(label)}: {value} {escape(name)}</title>'
                f'</rect>')
    body.append(_line(left, base_y, WIDTH - right, base_y, MUTED))
    body.append(_text(left + plot_w / 2, height - 10, x_label, "middle", fill=MUTED))
    body.append(_text(14, top_y + plot_h / 2, y_label, "middle", fill=MUTED,
                      transform=f"rotate(-90 14 {_number(top_y + plot_h / 2)})"))
    sums = ", ".join(f"{name} {sum(values.get(key, 0) for _, values in known)}"
                     for key, name, _ in series)
    desc = (f"{title}, from {columns[0][0]} to {columns[-1][0]}: {sums}. The most in one "
            f"column: {max(totals)}.")
    if len(known) < len(columns):
        desc += f" {len(columns) - len(known)} of {len(columns)} have no figures."
    return _svg(chart_id, title, desc, height, body)


def horizontal_bars(chart_id, title, rows, legend, colour, x_label, empty=""):
    """One horizontal bar per row for a share (0 to 1), its name above it and the figure at
    its end. ``rows``: ``[(label, share, note)]``, e.g. ("Dr Clark", 0.25, "2 of 8")."""
    if not rows:
        return no_data(chart_id, title, empty)
    row_h, top_y, left, right = 40, 40, 16, 120
    plot_w = WIDTH - left - right
    height = top_y + row_h * len(rows) + 44
    base_y = top_y + row_h * len(rows)
    top, step = nice_scale(max(round(share * 100) for _, share, _ in rows))
    top = min(100, max(top, 10))
    step = max(step, top // 5)
    body = [_legend([(legend, colour)])]
    for tick in range(0, top + 1, step):
        x = left + tick / top * plot_w
        body.append(_line(x, top_y, x, base_y))
        body.append(_text(x, base_y + 16, f"{tick}%", "middle", fill=MUTED))
    for index, (label, share, note) in enumerate(rows):
        y = top_y + index * row_h
        shown = label if len(label) <= 80 else label[:79] + "…"
        body.append(_text(left, y + 14, shown))
        width = share * 100 / top * plot_w
        figure = f"{share:.0%} ({note})" if note else f"{share:.0%}"
        body.append(
            f'<rect x="{left}" y="{y + 19}" width="{_number(width)}" height="14" '
            f'fill="{escape(colour)}" data-value="{share}"><title>{escape(label)}: '
            f'{escape(figure)}</title></rect>')
        body.append(_text(left + width + 6, y + 31, figure))
    body.append(_line(left, base_y, left + plot_w, base_y, MUTED))
    body.append(_text(left + plot_w / 2, height - 8, x_label, "middle", fill=MUTED))
    desc = f"{title}: " + "; ".join(f"{label} {share:.0%}" + (f" ({note})" if note else "")
                                    for label, share, note in rows) + "."
    return _svg(chart_id, title, desc, height, body)


# -- the dashboard's three ------------------------------------------------------------------------


def _day(day):
    return i18n.formatted(day, "day_month")


def appointments_per_day(data):
    # The status words are the macros' (templates/macros.html), in the catalog already.
    series = [(status, _(status.replace("_", " ")), STATUS_COLOURS[status])
              for status in STATUS_COLOURS]
    columns = [(_day(day), figures) for day, figures in data["days"]]
    return stacked_bars("chart-appointments", _("Appointments per day, by status"), columns,
                        series, _("Day (the day each appointment starts)"), _("Appointments"),
                        empty=_("The daily-stats job records each day's figures every night."))


def emails_per_day(data):
    series = [("emails_sent", _("sent"), SENT), ("emails_failed", _("failed"), FAILED),
              ("sms_sent", _("SMS sent"), SMS_SENT), ("sms_failed", _("SMS failed"), SMS_FAILED)]
    columns = [(_day(day), figures) for day, figures in data["days"]]
    return stacked_bars("chart-emails", _("Emails and SMS sent and failed per day"), columns,
                        series, _("Day"), _("Emails and SMS"),
                        empty=_("The daily-stats job records each day's figures every night."))


def no_show_rates(data):
    rows = [(row["name"], row["rate"], f"{row['no_shows']} of {row['due']}")
            for row in data["no_shows"]]
    return horizontal_bars("chart-no-shows", _("No-show rate per doctor"), rows,
                           _("No-shows out of visits due (completed or no-show)"),
                           STATUS_COLOURS["no_show"], _("Share of visits due that were no-shows"),
                           empty=_("No visit was completed or missed in these days."))


def dashboard(data):
    """The dashboard's three charts, by name."""
    return {"appointments": appointments_per_day(data), "no_shows": no_show_rates(data),
            "emails": emails_per_day(data)}
