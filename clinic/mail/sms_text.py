"""How long an SMS is, in the parts (segments) a phone network carries and a gateway charges for,
and how to keep a text within a number of them.

A text that uses only the GSM 03.38 alphabet goes as GSM-7: 160 septets in one part, 153 a part
when it is split (the rest is the header that joins them). The extension characters (``^{}[]~|\\``,
``€`` and form feed) are sent as an escape plus the character, two septets, and a part never
splits the pair. Any other character sends the whole text as UCS-2: 70 UTF-16 code units in one
part, 67 a part when split, and a character outside the Basic Multilingual Plane (an emoji) is
two units that a part never splits either.
"""

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7 = "GSM-7"
UCS2 = "UCS-2"
# (units in a text of one part, units a part when split) per encoding.
SIZES = {GSM7: (160, 153), UCS2: (70, 67)}


def encoding(text):
    """GSM7 when every character is in the GSM 03.38 alphabet (basic or extension), else UCS2."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        return GSM7
    return UCS2


def _units(text, how):
    """The width of each character in the encoding's units: septets, or UTF-16 code units."""
    if how == GSM7:
        return [2 if char in GSM7_EXTENSION else 1 for char in text]
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def segments(text):
    """How many parts ``text`` is sent in (0 for no text)."""
    if not text:
        return 0
    how = encoding(text)
    single, part = SIZES[how]
    widths = _units(text, how)
    if sum(widths) <= single:
        return 1
    count, used = 1, 0
    for width in widths:  # a character never straddles two parts
        if used + width > part:
            count, used = count + 1, 0
        used += width
    return count


def fit(text, link="", limit=3):
    """``text`` followed by `` link``, shortened (cut at a word, with "…") so that the whole is
    at most ``limit`` parts; the link, the way to the rest, is always whole."""
    tail = f" {link}" if link else ""
    if segments(text + tail) <= limit:
        return text + tail
    # The ellipsis is not GSM-7: a GSM-7 text cut short ends in "..." instead, or it would
    # become UCS-2 and hold less than half as much.
    more = "…" if encoding(text + tail) == UCS2 else "..."
    words = text.split(" ")
    while len(words) > 1:
        words.pop()
        shorter = " ".join(words).rstrip(" ,;:.-") + more
        if segments(shorter + tail) <= limit:
            return shorter + tail
    # Not one word fits (a single word longer than the limit): cut by characters.
    cut = text
    while cut and segments(cut + more + tail) > limit:
        cut = cut[:-1]
    return (cut + more + tail).lstrip()
