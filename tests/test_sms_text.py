"""Counting an SMS's parts as the phone network does (GSM-7 with its extension characters,
UCS-2 with surrogate pairs), and keeping a text within three of them with its link whole."""

from clinic.mail.sms_text import GSM7, UCS2, encoding, fit, segments


def test_plain_text_is_gsm7_and_160_characters_fit_one_part():
    assert encoding("Hello, see you at 10:00 @ the clinic!") == GSM7
    assert segments("a" * 160) == 1
    assert segments("a" * 161) == 2  # split: 153 a part
    assert segments("a" * 306) == 2
    assert segments("a" * 307) == 3
    assert segments("") == 0


def test_gsm7_letters_with_accents_stay_gsm7():
    assert encoding("Müller, Ångström, Señor, café, £5, ¿qué?") == GSM7


def test_extension_characters_count_as_two_septets():
    assert encoding("price: 5€ [x] {y} ~ | ^ \\") == GSM7
    assert segments("€" * 80) == 1  # 160 septets
    assert segments("€" * 81) == 2
    assert segments("a" * 159 + "€") == 2  # 161 septets


def test_an_extension_character_is_never_split_between_parts():
    # 152 septets, then an escape pair that does not fit in the first part's 153: it moves to
    # the second whole. 152 + 2 + 152 = 306 would fit two parts if it could be split.
    assert segments("a" * 152 + "€" + "a" * 152) == 3
    assert segments("a" * 151 + "€" + "a" * 153) == 2


def test_one_character_outside_gsm7_makes_it_ucs2():
    assert encoding("Zoë's appointment ✓") == UCS2
    assert encoding("Встреча") == UCS2
    assert segments("ж" * 70) == 1
    assert segments("ж" * 71) == 2  # 67 a part
    assert segments("ж" * 134) == 2
    assert segments("ж" * 135) == 3


def test_characters_outside_the_bmp_take_two_units_and_are_not_split():
    assert segments("😀" * 35) == 1  # 70 units
    assert segments("😀" * 36) == 2
    # 66 units, then a pair that would straddle the 67-unit part: it goes to the next.
    assert segments("ж" * 66 + "😀" + "ж" * 66) == 3
    assert segments("ж" * 65 + "😀" + "ж" * 67) == 2


def test_fit_leaves_a_short_text_alone_and_adds_the_link():
    assert fit("See you tomorrow.", "https://c.example/s/1.abc") == (
        "See you tomorrow. https://c.example/s/1.abc")


def test_fit_cuts_a_long_gsm7_text_at_a_word_within_three_parts_keeping_the_link():
    link = "https://clinic.example/s/12.AbCdEfGhIjKl"
    text = " ".join(["appointment"] * 100)
    out = fit(text, link)
    assert segments(out) <= 3
    assert out.endswith("... " + link)
    assert encoding(out) == GSM7  # "..." and not "…", which would make it UCS-2
    assert len(out) > 400  # not cut more than it must be


def test_fit_cuts_a_ucs2_text_with_an_ellipsis():
    link = "https://clinic.example/s/12.AbCdEfGhIjKl"
    out = fit(" ".join(["Встреча"] * 60), link)
    assert segments(out) <= 3 and out.endswith("… " + link)
    assert segments("Встреча " + out) > 3  # not a word more would fit


def test_fit_cuts_one_endless_word_by_characters():
    out = fit("x" * 1000, "https://c.example/s/1.a")
    assert segments(out) == 3 and out.endswith("... https://c.example/s/1.a")
    assert segments("x" + out) > 3  # no character more would fit
