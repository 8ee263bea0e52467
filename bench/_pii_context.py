"""How the PII corpus embeds a value: cue words per language, JSON keys, filler prose.

`Msg` records the exact span of every labelled value as the text is built, so spans never
have to be searched for afterwards (a value can occur twice, or inside another).
"""

from __future__ import annotations

import json

from _pii_values import Source


class Msg:
    """A message built piece by piece, recording the exact span of every labelled value."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._at = 0
        self.spans: list[list[object]] = []

    def add(self, text: str) -> Msg:
        self._parts.append(text)
        self._at += len(text)
        return self

    def pii(self, type_: str, value: str) -> Msg:
        self.spans.append([type_, self._at, self._at + len(value)])
        return self.add(value)

    def text(self) -> str:
        return "".join(self._parts)


def around(
    src: Source, locale: str, before: str, type_: str = "", value: str = "", after: str = ""
) -> Msg:
    """`before` + the labelled value + `after`, between filler sentences in `locale`."""
    msg = Msg()
    sep = "" if locale == "ja_JP" else src.rng.choice([" ", " ", "\n"])
    pre = src.filler(locale)
    if pre:
        msg.add(pre + sep)
    msg.add(before)
    if value:
        msg.pii(type_, value)
    msg.add(after)
    post = src.filler(locale)
    if post:
        msg.add(sep + post)
    return msg


# --- cues -----------------------------------------------------------------------------------

PHONE_CUES = {
    "en": ["Call {v}", "call me on {v}", "phone: {v}", "Phone: {v}", "Tel. {v}", "tel: {v}",
           "mobile {v}", "Mobile: {v}", "my cell is {v}", "Phone number: {v}"],
    "de": ["Telefon: {v}", "Tel.: {v}", "Handy: {v}", "Mobil: {v}", "Rufen Sie {v} an.",
           "Telefonnummer {v}"],
    "fr": ["téléphone : {v}", "Tél. : {v}", "portable : {v}", "appelez le {v}", "Tel {v}"],
    "es": ["teléfono: {v}", "Tel.: {v}", "móvil: {v}", "llame al {v}"],
    "it": ["telefono: {v}", "tel. {v}", "cellulare: {v}", "chiamare il {v}", "cell. {v}"],
    "nl": ["telefoon: {v}", "tel.: {v}", "mobiel: {v}", "bel {v}"],
    "pt": ["telefone: {v}", "celular: {v}", "tel.: {v}", "ligue para {v}", "WhatsApp: {v}"],
    "ja": ["電話：{v}", "電話番号は{v}です。", "TEL: {v}", "携帯：{v}", "お電話は{v}まで。"],  # noqa: RUF001
}  # fmt: skip
SSN_CUES = ["SSN: {v}", "ssn={v}", "social security number {v}", "SSN#{v}", "tax id {v}",
            "SSN {v}", "Social Security No. {v}", "my social is {v}"]  # fmt: skip
CARD_CUES = ["card number {v}", "Card: {v}", "CC# {v}", "credit card {v}", "Kreditkarte {v}",
             "carte bancaire {v}", "tarjeta {v}", "cartão {v}", "pay with {v}",
             "PAN {v}"]  # fmt: skip
IBAN_CUES = ["IBAN: {v}", "IBAN {v}", "Kontonummer (IBAN): {v}", "please transfer to {v}",
             "Bankverbindung: {v}", "RIB/IBAN : {v}", "IBAN: {v} (BIC {bic})"]  # fmt: skip
EMAIL_CUES = ["email: {v}", "E-Mail: {v}", "write to {v}", "mailto:{v}", "Contact: {name} <{v}>",
              "From: {name} <{v}>", "courriel : {v}", "correo: {v}"]  # fmt: skip
IP_CUES = ["from {v}", "IP: {v}", "client {v}", "X-Forwarded-For: {v}", "connect to {v}",
           "ssh admin@{v}", "ping {v}", "server at {v}"]  # fmt: skip
#: Without a cue: the value stands in the prose, next to a name or in brackets.
NO_CUE = ["{v}", "({v})", "{name}: {v}", "{name}, {v}", "{v} ({name})", "[{v}]", "{v}.",
          "- {v}"]  # fmt: skip
JSON_KEYS = {
    "PHONE": ["phone", "tel", "mobile", "phone_number", "telefon"],
    "SSN": ["ssn", "social_security_number", "tax_id"],
    "CARD": ["card_number", "cc", "pan"],
    "IBAN": ["iban", "IBAN", "bank_account"],
    "EMAIL": ["email", "mail", "reply_to"],
    "IP": ["ip", "client_ip", "remote_addr", "source_ip"],
}


SECRET_CONTEXTS = [
    "{env}={v}", "export {env}={v}", '{env}="{v}"', 'api_key = "{v}"',
    'headers = {"Authorization": "Bearer {v}"}',
    'curl -H "Authorization: Bearer {v}" https://api.example.com/v1/models',
    "my key is {v}", "here is the token: {v}", "{env}: {v}",
]  # fmt: skip


def place(
    src: Source, locale: str, type_: str, value: str, cues: list[str] | None, *, env: str = ""
) -> Msg:
    """`value` in filler prose after a cue from `cues` (None: no cue), or, with a cue,
    sometimes as a JSON field whose key is the cue."""
    rng = src.rng
    if cues is not None and type_ in JSON_KEYS and rng.random() < 0.2:
        key = rng.choice(JSON_KEYS[type_])
        name = json.dumps(src.faker(locale).name(), ensure_ascii=False)
        msg = Msg()
        if rng.random() < 0.5:
            msg.add(src.sentence(locale) + "\n")
        return msg.add(f'{{"name": {name}, "{key}": "').pii(type_, value).add('"}')
    template = rng.choice(cues if cues is not None else NO_CUE)
    template = (
        template.replace("{name}", src.faker(locale).name())
        .replace("{bic}", src.faker("de_DE").swift())
        .replace("{env}", env)
    )
    if rng.random() < 0.3 and template.endswith("{v}"):
        template += rng.choice([".", ",", ";", "!", "?"])
    before, after = template.split("{v}")
    return around(src, locale, before, type_, value, after)


def maybe(src: Source, cues: list[str], p: float = 0.5) -> list[str] | None:
    return cues if src.rng.random() < p else None
