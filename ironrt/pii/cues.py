"""Context cues: the words before a number that say what it is.

`123456789` alone is an order number as often as anything; after "SSN:" it is a social
security number, and `0301234567` after "Telefon" is a phone number. As in Presidio's
context enhancement, a cue word raises a candidate that is too ambiguous alone (a bare
nine-digit SSN, a national phone number written as one digit run) to a finding; without
one such candidates are never reported, which is what keeps order numbers, ISBNs,
timestamps and long ids out.

A cue counts if it lies within the `WINDOW` characters before the candidate and only
words and separators without digits stand between (`SSN: `, `phone no. `, `my cell is `,
`Telefonnummer = `, `"phone_number": "`), none of them a word naming another kind of
number (`call about order 4155552671` is an order). The opposite, a word naming an id
right before a number (`Order 030 1234 5678`), is `id_word_before`. Both read a bounded
window only, never the whole text, and are cached per window: the streaming scanner keeps
`CONTEXT` (96) characters before its held tail, more than a window and the character
before it that a word boundary reads, so a split text sees the same windows as the whole.
"""

from __future__ import annotations

import functools
import re

__all__ = ["NONE", "PHONE", "SSN", "WINDOW", "cue_before", "id_word_before"]

#: No cue before the candidate.
NONE = 0
#: A word for a social security or taxpayer number.
SSN = 1
#: A word for a phone number.
PHONE = 2

#: The characters before the candidate a cue must lie within.
WINDOW = 40

# Words may be joined by a space, `_` or `-` (`social_security_number`, a JSON key) and
# abbreviated with a dot (`Tel.`); `_NO_ALNUM_*` bound them as `\b` would, but let `_`
# through (`"phone_number": ...`).
_SSN_WORDS = (
    r"ssns?|ss(?=[ ]?(?:#|no\b|nr\b))|social[ _-]?security(?:[ _-]?(?:numbers?|num|no|nr))?"
    r"|soc\.?[ ]?sec|tax(?:payer)?[ _-]?(?:id|identification)(?:[ _-]?(?:numbers?|no))?"
    r"|tins?|itins?|(?:my|your|his|her|their)[ ]social"
)
_PHONE_WORDS = (
    # English
    r"(?:tele|cell|smart|mobile[ _]?|home[ _]?|work[ _]?)?phones?(?:[ _-]?(?:numbers?|no|nr))?"
    r"|ph|tel|tels|mob|mobiles?|cells?|cellular|calls?|called|calling|texts?|txt|sms|fax"
    r"|whatsapp|contacts?|dial|reach|ring|hotline|landline|helpline"
    # German, Dutch
    r"|telefon\w*|handy\w*|mobil\w*|rufnummer\w*|festnetz\w*|anruf\w*|telefoon\w*"
    r"|mobiel\w*|bellen|bel"
    # French, Spanish, Italian, Portuguese
    r"|t[ée]l[ée]phone|t[ée]l|portable|appel\w*|t[ée]l[ée]fono|tfno|m[óo]vil|celular"
    r"|llam\w*|cellulare|chiam\w*|telefone|fone|ligu?e|ligar|zap"
    # "my number", "meine Nummer", "mon numéro", "mi número", "il mio numero", "mijn nummer"
    r"|(?:my|your|his|her|our|their|mein\w*|dein\w*|sein\w*|ihr\w*|mon|ma|son|votre|ton"
    r"|mi|su|tu|mio|mijn|meu|minha|seu|sua)[ ](?:numbers?|no|nummer|num[ée]ro|n[úu]mero)"
)
_CJK_WORDS = r"電話(?:番号)?|携帯(?:電話)?(?:番号)?|連絡先"
_NO_ALNUM_BEFORE, _NO_ALNUM_AFTER = r"(?<![^\W_])", r"(?![^\W_])"
_CUE = re.compile(
    rf"{_NO_ALNUM_BEFORE}(?:(?P<ssn>{_SSN_WORDS})|(?P<phone>{_PHONE_WORDS})){_NO_ALNUM_AFTER}"
    rf"\.?|(?P<cjk>{_CJK_WORDS})",
    re.IGNORECASE,
)

#: What may not stand between a cue and its candidate: a digit (another number is closer
#: to the cue), a sentence break (the abbreviations `no.`, `nr.`, `num.` are no break), a
#: blank line, or a word naming another kind of number.
_ID_WORDS = (
    r"orders?|invoices?|inv|ref|reference|accounts?|acct|tracking|tickets?|isbn|sku|serial"
    r"|case|transactions?|txn|booking|confirmation|iban|items?|part|model"
    r"|bestell\w*|rechnung\w*|commande|facture|pedido|factura|ordine|fattura|bestelling|factuur"
)
_GAP_BAD = re.compile(
    r"[0-9!?;]|\n[ \t]*\n|(?<!\bno)(?<!\bnr)(?<!\bnum)(?<!\bext)\.(?=\s|\Z)"
    rf"|\b(?:{_ID_WORDS}|ids?|zip|postcode|version|build|timestamp|epoch|policy|claim|card"
    r"|pin|otp|code|kunden\w*)\b",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=4096)
def _cue_of(window: str, pos: int) -> int:
    last = None
    for last in _CUE.finditer(window, pos):  # noqa: B007 - the last cue is the nearest
        pass
    if last is None or _GAP_BAD.search(window, last.end()) is not None:
        return NONE
    return SSN if last.group("ssn") is not None else PHONE


def cue_before(text: str, start: int) -> int:
    """`SSN`, `PHONE` or `NONE`: the cue for the candidate starting at `text[start]`.

    One character before the window is kept so that `\\b` at its edge reads as it would in
    the whole text (`recall` is not `call`).
    """
    if start > WINDOW:
        return _cue_of(text[start - WINDOW - 1 : start], 1)
    return _cue_of(text[:start], 0)


#: How far back `id_word_before` reads.
_ID_WINDOW = 28
#: A word naming another kind of number right before a candidate: `Order 0301 234 5678`.
_ID_WORD = re.compile(
    rf"(?<![^\W_])(?:{_ID_WORDS}|po)(?:[ _-]?(?:numbers?|no|nr|num|id|#))?\.?"
    r"[ \t]*[:=#]?[ \t]*[\"']?\Z",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=4096)
def _id_word(window: str, pos: int) -> bool:
    return _ID_WORD.search(window, pos) is not None


def id_word_before(text: str, start: int) -> bool:
    """Whether the candidate at `text[start]` is introduced as an id (`Order 030 1234 5678`).

    Only the word right before the candidate counts, read from at most `_ID_WINDOW`
    characters (and the one before them, for the word's boundary).
    """
    if start > _ID_WINDOW:
        return _id_word(text[start - _ID_WINDOW - 1 : start], 1)
    return _id_word(text[:start], 0)
