"""Keyword fallback for the support-triage demo.

`keyword_rule` maps a customer message to one of the Banking77 intents with ordered,
precompiled regular expressions. It is meant as a cheap fallback when the trained model
is unavailable: it covers only the most common phrasings and raises `LookupError` when
nothing matches, so the service can move on to its next fallback.
"""

from __future__ import annotations

import re

CONFIDENCE = 0.5


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# Order matters: the first match wins, so specific rules come before general ones.
# Every intent name is an exact entry of data/categories.json.
_NOT = r"(?:\bnot\b|n't\b|\bnever\b|\bno\b)"
_TOPUP = r"top(?:ping)?[- ]?ups?|topping[- ]?up"
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "lost_or_stolen_phone",
        _rx(r"\b(?:lost|stolen|stole)\b.*\bphone|\bphone\b.*\b(?:lost|stolen)"),
    ),
    ("pin_blocked", _rx(r"\bpin\b.*\b(?:block|lock)|\b(?:block|lock)\w*\b.*\bpin\b|pin tries")),
    ("change_pin", _rx(r"\b(?:change|reset|new|update|set)\b.*\bpin\b")),
    ("passcode_forgotten", _rx(r"passcode|forg[eo]t.*(?:code|password)|can'?t log ?in")),
    ("card_swallowed", _rx(r"swallow|\batm\b.*\b(?:ate|kept|took|eaten|stuck)\b.*\bcard")),
    ("contactless_not_working", _rx(r"contactless")),
    ("apple_pay_or_google_pay", _rx(r"apple ?pay|google ?pay|android ?pay")),
    ("visa_or_mastercard", _rx(r"\bvisa\b|master ?card")),
    (
        "disposable_card_limits",
        _rx(
            r"^(?=.*(?:disposable|virtual card))"
            r"(?=.*\b(?:limit\w*|restrict\w*|number|more|most|max\w*"
            r"|guidelines|polic\w*|several|multiple|many|times|transactions|per day)\b)"
        ),
    ),
    ("get_disposable_virtual_card", _rx(r"disposable")),
    ("virtual_card_not_working", _rx(rf"virtual card.*(?:{_NOT}|fail|declin).*work")),
    ("getting_virtual_card", _rx(r"\b(?:get|order|want|need|obtain)\b.*virtual card")),
    (
        "card_linking",
        _rx(
            r"\b(?:re-?)?link|re-?activ|found (?:my|the|it)|no longer lost|back (?:in|on)to the app"
        ),
    ),
    (
        "compromised_card",
        _rx(r"compromised|\bhack(?:ed)?\b|fraud|someone (?:else )?(?:is )?us\w* my card"),
    ),
    (
        "lost_or_stolen_card",
        _rx(r"\b(?:lost|stolen|stole)\b.*\bcard|\bcard\b.*\b(?:lost|stolen|missing)\b"),
    ),
    ("activate_my_card", _rx(r"\bactivat")),
    ("card_about_to_expire", _rx(r"expir")),
    (
        "getting_spare_card",
        _rx(r"\b(?:spare|extra|additional|second|another|supplementary) (?:physical )?cards?\b"),
    ),
    (
        "card_delivery_estimate",
        _rx(r"how long.*(?:card|deliver|arriv)|deliver\w* (?:time|estimate)"),
    ),
    (
        "card_arrival",
        _rx(
            rf"card.*{_NOT}.*\b(?:arriv|come|came|receiv|got|gotten|deliver)"
            r"|(?:still|been) waiting (?:for|on) (?:my|the) (?:new )?card"
            rf"|{_NOT}.*\b(?:received|gotten|got) (?:my|the) (?:new )?card|track\w* .*card"
        ),
    ),
    ("age_limit", _rx(r"\bage\b|years? old|\bunder 18|\bchild|\bkids?\b|teen")),
    ("terminate_account", _rx(r"\b(?:close|delete|cancel|terminate)\b.*\baccount\b")),
    ("verify_source_of_funds", _rx(r"source of (?:my |the )?(?:funds|money|income)")),
    ("verify_top_up", _rx(r"verif.*top.?up|top.?up.*(?:verif|code)")),
    (
        "unable_to_verify_identity",
        _rx(rf"(?:identity|\bid\b).*{_NOT}.*verif|(?:can'?t|cannot|unable|fail)\w* .*verif"),
    ),
    (
        "why_verify_identity",
        _rx(
            r"\b(?:why|reason|necessary|required|comfortable|without|before)\b.*(?:verif|identity)"
        ),
    ),
    ("verify_my_identity", _rx(r"verif\w* (?:my )?identity|identity (?:check|verif)")),
    ("edit_personal_details", _rx(r"\b(?:change|update|edit)\b.*\b(?:name|address|details)\b")),
    ("direct_debit_payment_not_recognised", _rx(r"direct debit")),
    ("transaction_charged_twice", _rx(r"twice|double[- ]charg|charged (?:two|2) times|duplicate")),
    ("automatic_top_up", _rx(rf"auto\w*[- ]?(?:{_TOPUP})|(?:{_TOPUP}).*automatic")),
    ("top_up_limits", _rx(rf"(?:{_TOPUP}).*\b(?:limit|max\w*)\b")),
    ("top_up_reverted", _rx(rf"(?:{_TOPUP}).*\b(?:revert|reversed|cancel)")),
    ("pending_top_up", _rx(rf"(?:{_TOPUP}).*\bpending\b|\bpending\b.*(?:{_TOPUP})")),
    ("top_up_failed", _rx(rf"(?:{_TOPUP}).*\b(?:fail|declin|reject|{_NOT} (?:work|go))")),
    (
        "top_up_by_cash_or_cheque",
        _rx(
            rf"(?:{_TOPUP}).*\b(?:cash|cheques?|checks?)\b|\b(?:cash|cheques?|checks?)\b.*(?:{_TOPUP})"
        ),
    ),
    (
        "wrong_exchange_rate_for_cash_withdrawal",
        _rx(r"exchange rate.*(?:withdr|\batm\b|cash)|(?:withdr|\batm\b|cash).*exchange rate"),
    ),
    (
        "card_payment_wrong_exchange_rate",
        _rx(
            r"\b(?:wrong|incorrect|bad|off|different|overcharg\w*)\b.*exchange rate"
            r"|exchange rate.*\b(?:wrong|incorrect|off|different|purchase|bought|payment)\b"
        ),
    ),
    ("exchange_charge", _rx(r"\b(?:fee|charge)s?\b.*\bexchang|\bexchang\w*\b.*\b(?:fee|charge)")),
    ("exchange_rate", _rx(r"exchange rate")),
    (
        "wrong_amount_of_cash_received",
        _rx(r"\b(?:wrong|incorrect|less|right|full|correct) amount\b.*(?:cash|atm|money)"),
    ),
    ("cash_withdrawal_not_recognised", _rx(rf"withdraw\w*.*(?:{_NOT}|didn't) (?:make|do|recogni)")),
    (
        "cash_withdrawal_charge",
        _rx(r"\b(?:fee|charge)\w*\b.*(?:withdr|\batm\b)|(?:withdr|\batm\b).*\b(?:fee|charged)\b"),
    ),
    ("declined_cash_withdrawal", _rx(r"(?:withdr|\batm\b|cash).*\b(?:declin|reject|refus|denied)")),
    ("pending_cash_withdrawal", _rx(r"withdr.*pending|pending.*withdr")),
    (
        "Refund_not_showing_up",
        _rx(
            rf"refund.*(?:{_NOT}|\b(?:yet|still|missing|taking)\b)"
            r"|\b(?:still|waiting|where|when|missing|can'?t (?:find|see)|unable to see)\b.*refund"
        ),
    ),
    ("request_refund", _rx(r"refund")),
    ("cancel_transfer", _rx(r"\b(?:cancel|revert|reverse)\b.*\btransfer")),
    ("top_up_by_bank_transfer_charge", _rx(rf"(?:{_TOPUP}).*transfer.*\b(?:fee|charge|cost)")),
    (
        "transfer_fee_charged",
        _rx(r"\b(?:fee|charge)d?\b.*\btransfer|\btransfer\b.*\b(?:fee|charged)\b"),
    ),
    ("declined_transfer", _rx(r"transfer.*\b(?:declin|reject)")),
    ("pending_transfer", _rx(r"transfer.*\bpending\b|\bpending\b.*transfer")),
    ("balance_not_updated_after_cheque_or_cash_deposit", _rx(r"cheque|check deposit|deposit")),
    (
        "balance_not_updated_after_bank_transfer",
        _rx(rf"balance.*{_NOT}.*updat.*transfer|transfer.*balance.*{_NOT}.*updat"),
    ),
    (
        "card_payment_not_recognised",
        _rx(r"payment.*(?:n't|not) recogni|(?:n't|not) recogni.*payment"),
    ),
    ("declined_card_payment", _rx(r"payment.*\bdeclin|declin.*payment")),
    ("pending_card_payment", _rx(r"payment.*\bpending\b|\bpending\b.*payment")),
    ("country_support", _rx(r"\bwhich countr(?:y|ies)\b|\bcountries\b")),
)


def keyword_rule(record: dict[str, object]) -> dict[str, object]:
    """Classify ``record["text"]`` by keyword; raise ``LookupError`` when nothing matches."""
    text = record.get("text")
    if not isinstance(text, str):
        raise LookupError("no keyword matched")
    for intent, pattern in _RULES:
        if pattern.search(text):
            return {"intent": intent, "confidence": CONFIDENCE}
    raise LookupError("no keyword matched")
