"""The one hostname rule (workers.common.names): what it accepts, the one form it returns,
and what it refuses, always naming the field it was given."""

from __future__ import annotations

import pytest

from workers.common.names import covers, validate_hostname

LONGEST = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters

ACCEPTED = [
    ("example.com", "example.com"),
    ("App.Example.TEST", "app.example.test"),
    ("Example.COM.", "example.com"),  # the absolute form: one trailing dot is dropped
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("a-b.c0.example", "a-b.c0.example"),
    ("1.2.3.example", "1.2.3.example"),  # digits are fine where they do not end the name
    (LONGEST, LONGEST),
    (LONGEST + ".", LONGEST),
]

REFUSED = [
    ("", "must not be empty"),
    (".", "must not be empty"),
    ("localhost", "needs at least two labels"),
    ("example.com..", "empty label"),
    ("a..example.com", "empty label"),
    (".example.com", "empty label"),
    ("*.example.com", "wildcards"),
    ("a.*.example.com", "wildcards"),
    ("bücher.example.com", "ASCII"),
    ("bad host.example.com", "may only contain"),
    ("a;b.example.com", "may only contain"),
    ("a\nb.example.com", "may only contain"),
    ("under_score.example.com", "may only contain"),
    ("-a.example.com", "must not start or end"),
    ("a-.example.com", "must not start or end"),
    ("a" * 64 + ".example.com", "longer than 63"),
    (LONGEST[:-1] + "bb", "254 characters"),
    ("10.0.0.1", "IP address"),
    ("10.0.0.1.", "IP address"),
    ("127.1", "IP address"),
    ("1.0x7f", "IP address"),
    ("example.0X1F", "IP address"),
    ("::1", "IP address"),
    ("[::1].example", "may only contain"),
    ("[::1]", "IP address"),
    ("2001:db8::1", "IP address"),
]


@pytest.mark.parametrize(("host", "stored"), ACCEPTED)
def test_a_valid_hostname_is_returned_in_its_one_stored_form(host: str, stored: str) -> None:
    assert validate_hostname(host) == stored


@pytest.mark.parametrize(("host", "reason"), REFUSED)
def test_an_invalid_hostname_is_refused_with_the_field_and_the_reason(
    host: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=r"^hostname: ") as raised:
        validate_hostname(host, field="hostname")
    assert reason in str(raised.value)


@pytest.mark.parametrize("value", [None, 42, b"example.com"])
def test_a_value_that_is_not_text_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"^name: must be a string"):
        validate_hostname(value, field="name")  # type: ignore[arg-type]  # on purpose


def test_the_field_defaults_to_host() -> None:
    with pytest.raises(ValueError, match=r"^host: "):
        validate_hostname("localhost")


@pytest.mark.parametrize(
    ("owned", "name", "covered"),
    [
        ("example.org", "example.org", True),
        ("example.org", "a.b.example.org", True),
        ("example.org", "badexample.org", False),  # a label boundary, not a suffix of text
        ("a.example.org", "example.org", False),
    ],
)
def test_an_owned_name_covers_itself_and_the_names_below_it(
    owned: str, name: str, covered: bool
) -> None:
    assert covers(owned, name) is covered
