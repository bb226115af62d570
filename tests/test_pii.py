"""The PII guard: what each detector finds and what it must leave alone, the four modes, the
JSON walker and the line scanner."""

from __future__ import annotations

import itertools
import json
import secrets
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keelwork.errors import KeelworkError
from keelwork.guards.pii import (
    DEFAULT_ENTITIES,
    ENTITY_TYPES,
    UNSCANNED,
    JsonSpan,
    Numbering,
    PiiBlockedError,
    PiiScanner,
    Span,
    redact_json,
    scan_lines,
)
from keelwork.security.keys import KEY_PREFIX

HASH_KEY = "test-secret-key-0123456789"


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    return PiiScanner(ENTITY_TYPES, hash_key=HASH_KEY)


def found(scanner: PiiScanner, text: str) -> list[tuple[str, str]]:
    return [(s.type, text[s.start : s.end]) for s in scanner.scan(text)]


def assert_finds(scanner: PiiScanner, kind: str, value: str, before: str, after: str) -> None:
    text = f"{before}{value}{after}"
    assert (kind, value) in found(scanner, text), found(scanner, text)


def assert_nothing(scanner: PiiScanner, text: str) -> None:
    assert found(scanner, text) == []


# ------------------------------------------------------------------ EMAIL


@pytest.mark.parametrize(
    "value",
    [
        "john.doe@example.com",
        "j.doe+bank@mail.example.co.uk",
        "MARIA_GARCIA77@OUTLOOK.COM",
        "müller@web.de",
        "a@b.io",
    ],
)
def test_email_addresses_are_found(scanner: PiiScanner, value: str) -> None:
    assert_finds(scanner, "EMAIL", value, "Please write to ", ", thanks.")


@pytest.mark.parametrize(
    "text",
    [
        "ping @john_doe on the app",
        "the daemon runs as support@localhost",
        "installed pkg@1.2.3 yesterday",
        "send it to john@bank please",
        "an address like john..doe@example.com is not valid",
    ],
)
def test_email_lookalikes_are_left_alone(scanner: PiiScanner, text: str) -> None:
    assert_nothing(scanner, text)


# ------------------------------------------------------------------ PHONE


@pytest.mark.parametrize(
    "value",
    [
        "(415) 555-0123",
        "415-555-0123",
        "415.555.0123",
        "+1 415 555 0123",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "+49 30 901820",
        "+33 6 12 34 56 78",
        "+91 98765 43210",
        "+61 2 9374 4000",
        "+5511987654321",
    ],
)
def test_phone_numbers_are_found_in_us_and_international_form(
    scanner: PiiScanner, value: str
) -> None:
    assert_finds(scanner, "PHONE", value, "You can call me on ", " after 5pm.")


@pytest.mark.parametrize(
    "text",
    [
        "The form shows (123) 456-7890 as my number",  # no such area code
        "it says 555-555-5555",
        "I paid on 12/05/2023 and again on 2024-01-15",
        "order number 4155550123 has not arrived",
        "the courier's tracking code is 3043359106",
        "Tracking number 9418 8310 4423 8472 3831 85 shows no movement",
        "Server 646.102.83.47 is unreachable",
        "I was charged $1,234,567.89",
        "call me at 555-0123",  # no area code: not a full number
        "measured 2026-11-22 08:14 UTC",  # a time stamp
    ],
)
def test_phone_lookalikes_are_left_alone(scanner: PiiScanner, text: str) -> None:
    assert_nothing(scanner, text)


def test_two_numbers_in_one_run_are_two_phones(scanner: PiiScanner) -> None:
    text = "home (415) 555-0100 (415) 555-0199 work"
    assert found(scanner, text) == [("PHONE", "(415) 555-0100"), ("PHONE", "(415) 555-0199")]


def test_the_default_region_decides_which_national_numbers_are_understood() -> None:
    text = "call me on 020 7946 0958 please"
    assert found(PiiScanner(["PHONE"], default_region="GB"), text) == [("PHONE", "020 7946 0958")]
    assert found(PiiScanner(["PHONE"], default_region="US"), text) == []


def test_without_a_default_region_only_international_numbers_are_found() -> None:
    scanner = PiiScanner(["PHONE"], default_region=None)
    text = "(415) 555-0123 or +1 415 555 0124"
    assert found(scanner, text) == [("PHONE", "+1 415 555 0124")]


# ------------------------------------------------------------------ CARD


@pytest.mark.parametrize(
    "value",
    [
        "4111 1111 1111 1111",  # Visa
        "4111-1111-1111-1111",
        "4111111111111111",
        "5555 5555 5555 4444",  # Mastercard
        "2223 0031 2200 3222",  # Mastercard 2-series
        "3782 822463 10005",  # American Express, 4-6-5
        "6011 1111 1111 1117",  # Discover
        "3056 9309 0259 04",  # Diners Club
        "3530 1113 3330 0000",  # JCB
        "6200 0000 0000 0005",  # UnionPay
        "6759 6498 2643 8453",  # Maestro
    ],
)
def test_card_numbers_are_found(scanner: PiiScanner, value: str) -> None:
    assert_finds(scanner, "CARD", value, "My card number is ", ", exp 09/27.")


@pytest.mark.parametrize(
    "text",
    [
        "reference 4111 1111 1111 1112",  # fails Luhn
        "receipt 7992739871300000",  # passes Luhn, but no network issues numbers starting with 7
        "order number 356-0253943-1374193",  # order-number grouping, not card grouping
        "card 4111 1111-1111 1111",  # two kinds of separator
        "id 41111111111111110000",  # 20 digits
        "invoice X4111111111111111",  # glued to a letter
        "total 4111111111111111.50",  # an amount
    ],
)
def test_card_lookalikes_are_left_alone(scanner: PiiScanner, text: str) -> None:
    assert [f for f in found(scanner, text) if f[0] == "CARD"] == []


# ------------------------------------------------------------------ IBAN


@pytest.mark.parametrize(
    "value",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
        "CH93 0076 2011 6238 5295 7",
        "BE68 5390 0754 7034",
        "NO93 8601 1117 947",
    ],
)
def test_ibans_are_found(scanner: PiiScanner, value: str) -> None:
    assert_finds(scanner, "IBAN", value, "Please refund to ", ". Thanks")


@pytest.mark.parametrize(
    "text",
    [
        "The IBAN DE88 3704 0044 0532 0130 00 was rejected",  # bad checksum
        "The IBAN DE89 3704 0044 0532 0130 0 was rejected",  # one character short
        "code XX89 3704 0044 0532 0130 00",  # no such country
    ],
)
def test_iban_lookalikes_are_left_alone(scanner: PiiScanner, text: str) -> None:
    assert [f for f in found(scanner, text) if f[0] == "IBAN"] == []


# ------------------------------------------------------------------ US_SSN


def test_dashed_ssns_are_found(scanner: PiiScanner) -> None:
    assert_finds(scanner, "US_SSN", "123-45-6789", "My SSN is ", ".")
    assert_finds(scanner, "US_SSN", "536-22-1094", "For verification: ", "")


def test_ssns_without_dashes_need_an_ssn_cue(scanner: PiiScanner) -> None:
    assert_finds(scanner, "US_SSN", "536 22 1094", "SSN: ", "")
    assert_finds(scanner, "US_SSN", "536221094", "my social security number is ", "")
    assert_nothing(scanner, "ticket 536 22 1094 was closed")


@pytest.mark.parametrize(
    "value", ["000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000"]
)
def test_ssns_in_ranges_never_issued_are_left_alone(scanner: PiiScanner, value: str) -> None:
    assert_nothing(scanner, f"My SSN is {value}.")


# ------------------------------------------------------------------ IP_ADDRESS


@pytest.mark.parametrize(
    "value",
    [
        "192.168.1.20",
        "8.8.8.8",
        "2001:db8::8a2e:370:7334",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "fe80::1ff:fe23:4567:890a",
        "::ffff:192.0.2.128",
    ],
)
def test_ip_addresses_are_found(scanner: PiiScanner, value: str) -> None:
    assert_finds(scanner, "IP_ADDRESS", value, "I logged in from ", " and was locked out.")


@pytest.mark.parametrize(
    "text",
    [
        "Server 256.1.1.1 is unreachable",
        "I'm on version 4.2.0.1 of the app",
        "the app v1.2.3.4 crashed",
        "section 3.2.1 says otherwise",
        "my MAC is 00:1A:2B:3C:4D:5E",
        "at 12:30:45 today",
        "it uses std::vector internally",
    ],
)
def test_ip_lookalikes_are_left_alone(scanner: PiiScanner, text: str) -> None:
    assert_nothing(scanner, text)


# ------------------------------------------------------------------ DATE_OF_BIRTH


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("My date of birth is 12/05/1990.", "12/05/1990"),
        ("DOB: 1985-03-02", "1985-03-02"),
        ("D.O.B. 02.03.1985, thanks", "02.03.1985"),
        ("I was born on 3rd of March 1985.", "3rd of March 1985"),
        ("Birthday: March 3, 1985, can I open an account?", "March 3, 1985"),
        ("1990-05-12 is my date of birth", "1990-05-12"),
        ("my birthday is 14 July", "14 July"),
    ],
)
def test_dates_next_to_a_birth_cue_are_dates_of_birth(
    scanner: PiiScanner, text: str, value: str
) -> None:
    assert ("DATE_OF_BIRTH", value) in found(scanner, text)


@pytest.mark.parametrize(
    "text",
    [
        "The transfer on 12/05/2023 is still pending.",
        "I paid for my friend's birthday dinner on 12/05/2023.",
        "I was born in 1990 and I'm asking for my son.",
        "It's my birthday next week, and the payment from 16-02-23 still hasn't cleared.",
        "I bought a birthday present on 2024-03-15 and it was declined.",
        "My DOB is 45/13/1990.",  # no such date
    ],
)
def test_dates_without_a_birth_cue_are_left_alone(scanner: PiiScanner, text: str) -> None:
    assert [f for f in found(scanner, text) if f[0] == "DATE_OF_BIRTH"] == []


# ------------------------------------------------------------------ SECRET

ALNUM = "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xYz"


@pytest.mark.parametrize(
    "value",
    [
        "sk-ant-api03-" + ALNUM * 3,
        "sk-proj-" + ALNUM * 2,
        "sk-" + ALNUM + "AbCdEfGhIjKlMn",
        "ghp_" + ALNUM + "abc",
        "github_pat_11ABCDEFG0" + ALNUM + "_" + ALNUM,
        "AKIAIOSFODNN7EXAMPLE",
        "xoxb-123456789012-1234567890123-" + ALNUM[:24],
        "AIzaSyA" + ALNUM[:32],
        "glpat-" + ALNUM[:20],
        "sk_live_" + ALNUM[:24],
        "rk_live_" + ALNUM[:24],
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "hf_" + ALNUM[:34],
        KEY_PREFIX + secrets.token_urlsafe(32),
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx3+Zk9\nq8Lw==\n"
        "-----END RSA PRIVATE KEY-----",
    ],
)
def test_issued_keys_and_tokens_are_secrets(scanner: PiiScanner, value: str) -> None:
    assert_finds(scanner, "SECRET", value, "here is my key ", " - please revoke it")


def test_random_looking_tokens_without_a_prefix_are_secrets(scanner: PiiScanner) -> None:
    assert_finds(scanner, "SECRET", "xK9vQ2mZ7tR4wL8pN3bY6cJ1", "token ", "")
    assert_finds(scanner, "SECRET", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret = ", "")


def test_stated_passwords_pins_and_security_codes_are_secrets(scanner: PiiScanner) -> None:
    assert_finds(scanner, "SECRET", "Summer2023!", "my password is ", "")
    assert_finds(scanner, "SECRET", "4821", "My PIN is ", " and it keeps failing.")
    assert_finds(scanner, "SECRET", "123", "CVV: ", "")


@pytest.mark.parametrize(
    "text",
    [
        "commit 3f786850e387550fdab836ed7e6dc881de23001b broke it",
        "sha256 78649f56b47f405c7844fb554c4cbe2eb848d3e0759c517e70ce0c1eb286ca05",
        "request 123e4567-e89b-12d3-a456-426614174000 failed",
        "see InternationalTransferRequest2023 and CardReplacementWorkflowV2Handler",
        "charge ch_3MtwBwLkdIwHu7ix28a3tqPa failed",
        "open https://app.bank.example.com/settings/security/two-factor",
        "I use scikit-learn and sk-learn-tutorial-notebook",
        "My password is wrong and my PIN was blocked?",
        "The PIN is 4 digits, right?",
        "password: ********",
        "tracking 1Z999AA10123456784",
    ],
)
def test_hashes_ids_and_words_are_not_secrets(scanner: PiiScanner, text: str) -> None:
    assert [f for f in found(scanner, text) if f[0] == "SECRET"] == []


# ------------------------------------------------------------------ PERSON


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("My name is John Smith and I need help.", "John Smith"),
        ("I spoke to Mrs. O'Brien yesterday.", "O'Brien"),
        ("Dr. Fatima Müller needs a statement.", "Fatima Müller"),
        ("Account holder: Kwame Mensah", "Kwame Mensah"),
        ("my card is lost.\nKind regards,\nAisha Haddad", "Aisha Haddad"),
        ("It never arrived. Thanks, Kofi", "Kofi"),
    ],
)
def test_names_after_a_cue_are_persons(scanner: PiiScanner, text: str, value: str) -> None:
    assert ("PERSON", value) in found(scanner, text)


@pytest.mark.parametrize(
    "text",
    [
        "my name is spelled wrong on the card",
        "What is my name on the account?",
        "It never arrived. Thanks, Bank",
        "Thanks in advance",
    ],
)
def test_cues_without_a_name_are_left_alone(scanner: PiiScanner, text: str) -> None:
    assert_nothing(scanner, text)


def test_person_names_are_opt_in() -> None:
    assert "PERSON" not in DEFAULT_ENTITIES
    assert found(PiiScanner(), "My name is John Smith.") == []


# ------------------------------------------------------------------ overlaps and repeats


def test_each_character_range_gets_one_span_the_longer_and_more_specific(
    scanner: PiiScanner,
) -> None:
    text = "IBAN GB82 WEST 1234 5698 7654 32, mail john.4155550123@example.com"
    assert found(scanner, text) == [
        ("IBAN", "GB82 WEST 1234 5698 7654 32"),
        ("EMAIL", "john.4155550123@example.com"),
    ]


def test_spans_are_sorted_and_never_overlap(scanner: PiiScanner) -> None:
    text = "DOB 12/05/1990, 4111 1111 1111 1111, (415) 555-0123, 10.0.0.1, 123-45-6789 " * 3
    spans = scanner.scan(text)
    assert spans == sorted(spans, key=lambda s: s.start)
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))


def test_a_value_found_once_is_found_wherever_it_repeats(scanner: PiiScanner) -> None:
    text = "card 4111111111111111 and again x4111111111111111"
    assert found(scanner, text) == [("CARD", "4111111111111111"), ("CARD", "4111111111111111")]


# ------------------------------------------------------------------ modes


def test_redact_numbers_each_distinct_value_per_type(scanner: PiiScanner) -> None:
    text = "a@x.com, b@x.com, A@X.com and (415) 555-0123 / +1 415-555-0123"
    out, spans = scanner.apply(text, "redact")
    assert out == "<EMAIL_1>, <EMAIL_2>, <EMAIL_1> and <PHONE_1> / <PHONE_1>"
    assert [s.type for s in spans] == ["EMAIL", "EMAIL", "EMAIL", "PHONE", "PHONE"]


def test_one_numbering_keeps_placeholders_stable_across_fields(scanner: PiiScanner) -> None:
    numbering = Numbering()
    first, _ = scanner.apply("from jane@example.com", "redact", numbering)
    second, _ = scanner.apply("cc bob@example.com and jane@example.com", "redact", numbering)
    assert first == "from <EMAIL_1>"
    assert second == "cc <EMAIL_2> and <EMAIL_1>"
    fresh, _ = scanner.apply("cc bob@example.com", "redact")
    assert fresh == "cc <EMAIL_1>"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("card 4242 4242 4242 4242", "card ************4242"),
        ("mail jane.doe@example.com", "mail j***@example.com"),
        ("call (415) 555-0123", "call (***) ***-**23"),
        ("ssn 123-45-6789", "ssn ***-**-6789"),
        ("iban DE89 3704 0044 0532 0130 00", "iban DE****************3000"),
        ("ip 192.168.1.20", "ip 192.*.*.*"),
        ("DOB: 12/05/1990", "DOB: **/**/1990"),
        ("key sk-ant-api03-" + ALNUM * 3, "key sk-ant-****"),
    ],
)
def test_mask_keeps_a_hint_of_the_right_kind(scanner: PiiScanner, text: str, masked: str) -> None:
    assert scanner.apply(text, "mask")[0] == masked


def test_hash_is_stable_for_one_key_and_different_for_another() -> None:
    text = "mail jane@example.com and JANE@example.com"
    one = PiiScanner(hash_key=b"k1")
    out, _ = one.apply(text, "hash")
    first, second = out.removeprefix("mail ").split(" and ")
    assert first == second and first.startswith("<EMAIL:") and len(first) == len("<EMAIL:>") + 12
    assert "jane" not in out.lower()
    assert PiiScanner(hash_key=b"k1").apply(text, "hash")[0] == out
    assert PiiScanner(hash_key=b"k2").apply(text, "hash")[0] != out


def test_hash_mode_needs_a_key() -> None:
    with pytest.raises(ValueError, match="hash_key"):
        PiiScanner().apply("jane@example.com", "hash")


def test_block_names_types_and_positions_never_values(scanner: PiiScanner) -> None:
    text = "mail jane@example.com, card 4111 1111 1111 1111"
    with pytest.raises(PiiBlockedError) as info:
        scanner.apply(text, "block")
    err = info.value
    assert isinstance(err, KeelworkError)
    assert (err.code, err.status) == ("pii.blocked", 422)
    body = err.as_dict()
    assert [d["rule"] for d in body["details"]] == ["pii.email", "pii.card"]
    assert body["details"][0]["path"] == "$"
    assert body["details"][0]["got"] == {"type": "EMAIL", "start": 5, "end": 21}
    assert "EMAIL" in err.message and "CARD" in err.message
    serialized = json.dumps(body)
    assert "jane" not in serialized and "4111" not in serialized


def test_block_passes_text_without_findings(scanner: PiiScanner) -> None:
    assert scanner.apply("my card has not arrived", "block") == ("my card has not arrived", [])


def test_bad_configuration_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"unknown PII entity type\(s\) \['PASSPORT'\]"):
        PiiScanner(["EMAIL", "PASSPORT"])
    with pytest.raises(ValueError, match="ISO 3166"):
        PiiScanner(default_region="XX")
    with pytest.raises(ValueError, match="empty"):
        PiiScanner(hash_key="")
    with pytest.raises(ValueError, match="choose one of"):
        PiiScanner().apply("x", "erase")  # type: ignore[arg-type]


def test_entity_names_are_case_insensitive_and_one_name_is_a_list_of_one() -> None:
    assert PiiScanner("email").entities == frozenset({"EMAIL"})
    assert PiiScanner(["email", "Phone"]).entities == frozenset({"EMAIL", "PHONE"})


# ------------------------------------------------------------------ redact_json


def test_redact_json_rewrites_every_string_and_reports_paths(scanner: PiiScanner) -> None:
    doc = {
        "messages": [
            {"role": "user", "content": "I am jane@example.com"},
            {"role": "user", "content": "again jane@example.com, call (415) 555-0123"},
        ],
        "meta": {"count": 2, "ok": True, "ratio": 0.5, "note": None},
    }
    original = json.loads(json.dumps(doc))
    out, spans = redact_json(doc, scanner)
    assert out["messages"][0]["content"] == "I am <EMAIL_1>"
    assert out["messages"][1]["content"] == "again <EMAIL_1>, call <PHONE_1>"
    assert out["meta"] == doc["meta"]
    assert doc == original  # the input is not changed
    assert [(s.path, s.type) for s in spans] == [
        ("$.messages[0].content", "EMAIL"),
        ("$.messages[1].content", "EMAIL"),
        ("$.messages[1].content", "PHONE"),
    ]
    assert spans[0] == JsonSpan("$.messages[0].content", "EMAIL", 5, 21)


def test_redact_json_shares_a_numbering_passed_in(scanner: PiiScanner) -> None:
    numbering = Numbering()
    scanner.apply("bob@example.com", "redact", numbering)
    out, _ = redact_json(
        {"to": "jane@example.com", "cc": "bob@example.com"}, scanner, "redact", numbering
    )
    assert out == {"to": "<EMAIL_2>", "cc": "<EMAIL_1>"}


def test_keys_are_scanned_too_and_paths_never_carry_a_raw_value(scanner: PiiScanner) -> None:
    out, spans = redact_json({"jane@example.com": {"my key": "4111111111111111"}}, scanner)
    assert out == {"<EMAIL_1>": {"my key": "<CARD_1>"}}
    assert [s.as_dict() for s in spans] == [
        {"path": '$["<EMAIL_1>"]', "type": "EMAIL", "start": 0, "end": 16, "in_key": True},
        {"path": '$["<EMAIL_1>"]["my key"]', "type": "CARD", "start": 0, "end": 16},
    ]


def test_keys_that_mask_alike_do_not_overwrite_each_other(scanner: PiiScanner) -> None:
    doc = {"jane@example.com": "a", "joe@example.com": "(415) 555-0123"}
    out, spans = redact_json(doc, scanner, "mask")
    assert out == {"j***@example.com": "a", "j***@example.com#2": "(***) ***-**23"}
    assert [s.path for s in spans] == [
        '$["j***@example.com"]',
        '$["j***@example.com#2"]',
        '$["j***@example.com#2"]',
    ]


def test_odd_values_are_handled_never_raised(scanner: PiiScanner) -> None:
    class Opaque:
        def __str__(self) -> str:
            return "contact jane@example.com"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("cannot print")

    doc: dict[Any, Any] = {
        1: "call (415) 555-0123",
        "card": 4111111111111111,
        "small": 42,
        "huge": 10**5000,  # past Python's str() limit for integers
        "tuple": ("jane@example.com",),
        "set": {"jane@example.com"},
        "bytes": b"ip 10.0.0.1 \xff",
        "opaque": Opaque(),
        "broken": Broken(),
        Broken(): "value of a key that cannot print",
    }
    out, spans = redact_json(doc, scanner)
    assert out == {
        "1": "call <PHONE_1>",
        "card": "<CARD_1>",
        "small": 42,
        "huge": f"<{UNSCANNED}>",
        "tuple": ["<EMAIL_1>"],
        "set": ["<EMAIL_1>"],
        "bytes": "ip <IP_ADDRESS_1> \ufffd",
        "opaque": "contact <EMAIL_1>",
        "broken": f"<{UNSCANNED}>",
        f"<{UNSCANNED}>": "value of a key that cannot print",
    }
    unread = [s.path for s in spans if s.type == UNSCANNED]
    assert unread == ["$.huge", "$.broken"]


def test_containers_past_the_depth_limit_are_replaced_not_read(scanner: PiiScanner) -> None:
    doc: dict[str, Any] = {"text": "jane@example.com"}
    for _ in range(5):
        doc = {"x": doc}
    out, spans = redact_json(doc, scanner, max_depth=3)
    assert out == {"x": {"x": {"x": f"<{UNSCANNED}>"}}}
    assert spans == [JsonSpan("$.x.x.x", UNSCANNED, 0, 0)]
    deep: list[Any] = []
    cursor = deep
    for _ in range(10_000):
        cursor.append([])
        cursor = cursor[0]
    redact_json(deep, scanner)  # far past the default limit: no RecursionError
    with pytest.raises(ValueError, match="max_depth"):
        redact_json(doc, scanner, max_depth=5_000)


def test_block_mode_lists_every_path_at_once(scanner: PiiScanner) -> None:
    doc = {"a": "jane@example.com", "b": ["ok", "SSN 123-45-6789"]}
    with pytest.raises(PiiBlockedError) as info:
        redact_json(doc, scanner, "block")
    details = info.value.as_dict()["details"]
    assert [(d["path"], d["rule"]) for d in details] == [
        ("$.a", "pii.email"),
        ("$.b[1]", "pii.us_ssn"),
    ]
    assert "jane" not in json.dumps(info.value.as_dict())


# ------------------------------------------------------------------ scan_lines


def test_scan_lines_reports_one_record_per_line(scanner: PiiScanner) -> None:
    lines = ["mail jane@example.com\n", "nothing here\r\n", "jane@example.com again"]
    out = list(scan_lines(lines, scanner))
    assert out == [
        {"spans": [{"type": "EMAIL", "start": 5, "end": 21}], "redacted": "mail <EMAIL_1>"},
        {"spans": [], "redacted": "nothing here"},
        {"spans": [{"type": "EMAIL", "start": 0, "end": 16}], "redacted": "<EMAIL_1> again"},
    ]
    assert json.loads(json.dumps(out)) == out


def test_scan_lines_can_share_numbering_across_lines(scanner: PiiScanner) -> None:
    lines = ["bob@example.com", "jane@example.com", "bob@example.com"]
    out = [r["redacted"] for r in scan_lines(lines, scanner, "redact", Numbering())]
    assert out == ["<EMAIL_1>", "<EMAIL_2>", "<EMAIL_1>"]


def test_scan_lines_refuses_block_mode(scanner: PiiScanner) -> None:
    with pytest.raises(ValueError, match="redact"):
        list(scan_lines(["x"], scanner, "block"))


# ------------------------------------------------------------------ properties

SAMPLES = [
    "jane.doe@example.com",
    "(415) 555-0123",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "378282246310005",
    "DE89 3704 0044 0532 0130 00",
    "123-45-6789",
    "192.168.1.20",
    "2001:db8::1",
    "DOB: 12/05/1990",
    "sk-ant-api03-" + ALNUM * 3,
    "AKIAIOSFODNN7EXAMPLE",
    "my password is Hunter2!",
    "My name is John Smith",
]
texts_with_pii = st.lists(
    st.sampled_from(SAMPLES) | st.text(max_size=20), min_size=1, max_size=8
).map(" ".join) | st.lists(
    st.sampled_from(SAMPLES) | st.text(max_size=6), min_size=1, max_size=8
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400) | texts_with_pii)
def test_redacting_never_raises_and_leaves_no_found_value(text: str) -> None:
    scanner = PiiScanner(ENTITY_TYPES)
    spans = scanner.scan(text)
    out, applied = scanner.apply(text, "redact")
    assert applied == spans
    assert all(isinstance(s, Span) and 0 <= s.start < s.end <= len(text) for s in spans)
    for s in spans:
        assert text[s.start : s.end] not in out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.sampled_from(SAMPLES),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8) | st.integers() | st.sampled_from(SAMPLES), children, max_size=4
        )
    ),
    max_leaves=16,
)


@settings(max_examples=200, deadline=None)
@given(json_values, st.sampled_from(["redact", "mask", "hash"]))
def test_redact_json_never_raises(value: Any, mode: str) -> None:
    scanner = PiiScanner(ENTITY_TYPES, hash_key=HASH_KEY)
    out, spans = redact_json(value, scanner, mode)  # type: ignore[arg-type]
    dumped = json.dumps(out, default=str)
    if mode == "redact":
        for sample in ("jane.doe@example.com", "4111 1111 1111 1111", "123-45-6789"):
            assert sample not in dumped
    assert all(s.path.startswith("$") for s in spans)


def test_the_scanners_memo_of_clean_texts_holds_no_personal_data_and_stays_bounded() -> None:
    scanner = PiiScanner()
    texts = [f"user {i}" for i in range(5000)] + ["mail me: jo@example.com"] * 3
    for t in texts:
        scanner.scan(t)
    assert scanner.scan("mail me: jo@example.com")  # found every time, never memoised clean
    memo = scanner._clean
    assert 0 < len(memo) <= 4096
    assert all(not PiiScanner().scan(t) for t in memo)
