"""Write `bench/pii_corpus.jsonl`: a PII corpus the detectors were not written against.

    python bench/pii_corpus.py            # regenerate (fixed seed: same file every time)
    python bench/pii_corpus.py --check    # does the checked-in file match the generator?

Ground truth is what a human privacy reviewer would call each type, built from outside
ironrt (this script and its `_pii_*` helpers import nothing from it):

- values come from independent generators (Faker's locales, libphonenumber's formats,
  providers' documented secret formats) and are kept only when an outside check agrees
  (`_pii_values`: libphonenumber validity for the region, SSA rules, Luhn, mod 97);
- Faker's phone digits are random and often invalid for their region, so a number is kept
  only if `phonenumbers.is_valid_number(phonenumbers.parse(text, region))`;
- formatted phones (separators, parentheses, `+`, extensions) and SSNs with separators are
  PII anywhere; a bare digit run is a phone or an SSN only after a cue word ("call",
  "Telefon:", "SSN: ", a `"phone"` JSON key...). The same digit runs without a cue are
  near-misses, as are never-issued SSNs, Luhn-failing card numbers, IBANs with a wrong check,
  loopback/documentation addresses, version strings, placeholders and public keys;
- private-range IPs are labelled IP (the detectors report them by default).

Each line: `{"text", "spans": [[type, start, end], ...], "kind": "positive"|"near_miss",
"family"}`; offsets are Python string indices (code points). Families name the generator
and form ("phone/DE/regional", "near/ip-version-string"), so misses point at a cause.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import ipaddress
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import _pii_context as ctx
import _pii_near as near
import _pii_secrets as sec
import _pii_values as val
from _pii_values import Source

SEED = 20250314
OUT = Path(__file__).resolve().parent / "pii_corpus.jsonl"
#: The generators the checked-in file was made with; other versions may write other text.
MADE_WITH = {"faker": "40.63.0", "phonenumbers": "9.0.43"}


Emit = Callable[[ctx.Msg, str, str], None]

PHONES_PER_REGION = 56
PHONE_NEAR_PER_REGION = 15


def phones(src: Source, emit: Emit, region: str) -> None:
    """The region's numbers cycle through the printed forms; then bare runs as near-misses."""
    locale = val.PHONE_LOCALES[region]
    lang = val.LANG[locale]
    cues = ctx.PHONE_CUES[lang] + ctx.PHONE_CUES["en"][:3] if lang != "en" else ctx.PHONE_CUES["en"]
    numbers = val.faker_phones(src, region)
    made, tries = 0, 0
    text, number = next(numbers)
    while made < PHONES_PER_REGION:
        form = val.PHONE_FORMS[tries % len(val.PHONE_FORMS)]
        tries += 1
        printed = val.phone_form(src, form, text, number, region)
        if printed is None:
            continue
        if form in val.BARE_FORMS or printed.isdigit():  # Faker writes some bare, too
            family, form_cues = f"phone/{region}/{form}+cue", cues
        else:
            family, form_cues = f"phone/{region}/{form}", ctx.maybe(src, cues)
        emit(ctx.place(src, locale, "PHONE", printed, form_cues), "positive", family)
        made += 1
        text, number = next(numbers)
    made = 0
    while made < PHONE_NEAR_PER_REGION:
        text, number = next(numbers)
        form = "bare" if src.rng.random() < 0.8 else "e164-digits"
        printed = val.phone_form(src, form, text, number, region)
        if printed is not None:
            emit(_near(src, near.neutral(src, printed)), "near_miss", f"near/phone-bare/{region}")
            made += 1


def ssns(src: Source, emit: Emit, n: int = 250) -> None:
    for i in range(n):
        a, g, s = val.ssn(src)
        form = ("dashed", "spaced", "bare")[i % 3]
        if form == "bare":
            value, cues = f"{a:03d}{g:02d}{s:04d}", ctx.SSN_CUES
        else:
            sep = "-" if form == "dashed" else " "
            value, cues = f"{a:03d}{sep}{g:02d}{sep}{s:04d}", ctx.maybe(src, ctx.SSN_CUES)
        family = f"ssn/{form}/{'cue' if cues else 'no-cue'}"
        emit(ctx.place(src, src.locale(), "SSN", value, cues), "positive", family)


def cards(src: Source, emit: Emit, per_brand: int = 30) -> None:
    for brand in val.CARD_TYPES:
        for i in range(per_brand):
            number = val.card(src, brand)
            form = ("compact", "spaced", "dashed")[i % 3]
            if form != "compact":
                number = val.card_grouped(number, " " if form == "spaced" else "-")
            emit(
                ctx.place(src, src.locale(), "CARD", number, ctx.maybe(src, ctx.CARD_CUES)),
                "positive",
                f"card/{brand}/{form}",
            )


def ibans(src: Source, emit: Emit, per_locale: int = 18) -> None:
    for locale in val.IBAN_LOCALES:
        for i in range(per_locale):
            value = val.iban(src, locale)
            form = ("compact", "grouped")[i % 2]
            if form == "grouped":
                value = val.grouped4(value)
            text_locale = locale if locale in val.LOCALES else src.locale()
            cues = ctx.maybe(src, ctx.IBAN_CUES, 0.6)
            emit(
                ctx.place(src, text_locale, "IBAN", value, cues),
                "positive",
                f"iban/{locale[-2:]}/{form}",
            )


def emails(src: Source, emit: Emit, per_form: int = 45) -> None:
    for form in val.EMAIL_FORMS:
        for _ in range(per_form):
            locale = src.locale()
            value = val.email(src, locale, form)
            emit(
                ctx.place(src, locale, "EMAIL", value, ctx.maybe(src, ctx.EMAIL_CUES)),
                "positive",
                f"email/{form}",
            )


V4_FORMS = ("plain", "plain", "port", "url", "log", "xff")
V6_FORMS = ("faker", "zeros", "exploded", "bracket-port", "url", "ifconfig")


def _v6(src: Source, form: str) -> str:
    """A public IPv6 as Faker prints it, exploded, or with zero groups compressed."""
    text = val.ipv6_public(src)
    if form == "faker":
        return text
    addr = ipaddress.IPv6Address(text)
    if form == "exploded":
        return addr.exploded
    # The first 3 or 4 groups and the last, as providers hand them out (2a00:1450:4001::200e).
    keep = 128 - src.rng.choice([48, 64])
    return ipaddress.IPv6Address(int(addr) >> keep << keep | int(addr) & 0xFFFF).compressed


def ips(src: Source, emit: Emit) -> None:
    rng = src.rng
    kinds = (("v4-public", val.ipv4_public, 120), ("v4-private", val.ipv4_private, 80))
    for name, make, n in kinds:
        for i in range(n):
            form, value, locale = V4_FORMS[i % len(V4_FORMS)], make(src), src.locale()
            if form == "plain":
                msg = ctx.place(src, locale, "IP", value, ctx.maybe(src, ctx.IP_CUES))
            elif form == "port":
                port = rng.choice([22, 443, 5432, 8080, 6379])
                msg = ctx.around(src, locale, "connect to ", "IP", value, f":{port}")
            elif form == "url":
                msg = ctx.around(src, locale, "see http://", "IP", value, "/admin")
            elif form == "log":
                when = src.when().strftime("%d/%b/%Y:%H:%M:%S +0000")
                tail = f' - - [{when}] "GET /api/v1/items HTTP/1.1" 200 {rng.randint(100, 9999)}'
                msg = ctx.Msg().pii("IP", value).add(tail)
            else:
                other = make(src)
                msg = ctx.Msg().add("X-Forwarded-For: ").pii("IP", value).add(", ").pii("IP", other)
            emit(msg, "positive", f"ip/{name}/{form}")
    for i in range(100):
        form, locale = V6_FORMS[i % len(V6_FORMS)], src.locale()
        value = _v6(src, form if form in ("faker", "exploded") else "zeros")
        if form == "bracket-port":
            msg = ctx.around(src, locale, "[", "IP", value, "]:443")
        elif form == "url":
            msg = ctx.around(src, locale, "http://[", "IP", value, "]/")
        elif form == "ifconfig":
            msg = ctx.Msg().add("    inet6 ").pii("IP", value).add("/64 scope global dynamic")
        else:
            msg = ctx.place(src, locale, "IP", value, ctx.maybe(src, ctx.IP_CUES))
        emit(msg, "positive", f"ip/v6-public/{form}")


def secrets(src: Source, emit: Emit, per_kind: int = 30) -> None:
    for name, make, env in sec.SECRET_KINDS:
        contexts = [c for c in ctx.SECRET_CONTEXTS if name != "slack-webhook" or "Bearer" not in c]
        for _ in range(per_kind):
            value = make(src)
            cues = ctx.maybe(src, contexts, 0.7)
            emit(
                ctx.place(src, src.locale(), "SECRET", value, cues, env=env),
                "positive",
                f"secret/{name}",
            )
    for _ in range(3):
        value = sec.jwt(src, big=True)
        emit(
            ctx.place(src, "en_US", "SECRET", value, ctx.SECRET_CONTEXTS[4:6]),
            "positive",
            "secret/jwt-8kb",
        )
    for _ in range(20):
        msg = ctx.Msg().add("[default]\naws_access_key_id = ").pii("SECRET", sec.aws_key_id(src))
        msg.add("\naws_secret_access_key = ").pii("SECRET", sec.aws_secret(src)).add("\n")
        emit(msg, "positive", "secret/aws-credentials-file")
    for i in range(40):
        kind, pem = sec.private_key(src)
        if i % 4 == 3:  # a service-account JSON: the PEM with escaped newlines
            msg = ctx.Msg().add('{"type": "service_account", "private_key_id": "')
            msg.add(src.faker("en_US").sha1()).add('", "private_key": "')
            msg.pii("SECRET", pem.replace("\n", "\\n")).add('\\n"}')
            emit(msg, "positive", "secret/pem-in-json")
            continue
        lead = src.rng.choice(["Here is the key:\n", "```\n", "cat id_key\n", ""])
        close = "\n```" if lead == "```\n" else ""
        msg = ctx.around(src, src.locale(), lead, "SECRET", pem, close)
        emit(msg, "positive", f"secret/pem-{kind}")


def records(src: Source, emit: Emit, n: int = 40) -> None:
    """Several values in one message (user JSON, CSV, signature, log, .env), as in real
    prompts: adjacent values must not run into each other."""
    rng = src.rng
    pools = {region: val.faker_phones(src, region) for region in val.PHONE_LOCALES}

    def person() -> tuple[str, str, str, str]:
        region = rng.choice(list(pools))
        locale = val.PHONE_LOCALES[region]
        phone = None
        while phone is None:
            text, number = next(pools[region])
            form = rng.choice(["national", "international"])
            phone = val.phone_form(src, form, text, number, region)
        fake = src.faker(locale)
        mail = val.email(src, locale, rng.choice(val.EMAIL_FORMS))
        return locale, str(fake.name()), mail, phone

    for _ in range(n):
        locale, name, mail, phone = person()
        ip = rng.choice([val.ipv4_public, val.ipv4_private])(src)
        quoted = json.dumps(name, ensure_ascii=False)
        msg = ctx.Msg().add(f'{{"id": {rng.randint(1, 99999)}, "name": {quoted}, "email": "')
        msg.pii("EMAIL", mail).add('", "phone": "').pii("PHONE", phone).add('", "last_login_ip": "')
        msg.pii("IP", ip).add('"')
        if rng.random() < 0.5:
            msg.add(', "iban": "').pii(
                "IBAN", val.iban(src, rng.choice(list(val.IBAN_LOCALES)))
            ).add('"')
        emit(msg.add("}"), "positive", "record/json-user")
    for _ in range(n):
        msg = ctx.Msg().add("name,email,phone\n")
        for _row in range(rng.randint(2, 4)):
            _, name, mail, phone = person()
            msg.add(f"{name},").pii("EMAIL", mail).add(",").pii("PHONE", phone).add("\n")
        emit(msg, "positive", "record/csv")
    for _ in range(n):
        locale, name, mail, phone = person()
        fake = src.faker(locale)
        msg = ctx.Msg().add(
            f"{src.sentence(locale)}\n\n--\n{name}\n{fake.job()} | {fake.company()}\n"
        )
        msg.add(rng.choice(["T: ", "Tel: ", "Mobile: ", "☎ "])).pii("PHONE", phone).add("\n")
        msg.add(rng.choice(["E: ", "", "Email: "])).pii("EMAIL", mail)
        emit(msg, "positive", "record/signature")
    for _ in range(n):
        msg = ctx.Msg()
        for _line in range(rng.randint(1, 3)):
            when = src.when().isoformat() + "Z"
            _, _, mail, _ = person()
            ip = rng.choice([val.ipv4_public, val.ipv4_private])(src)
            msg.add(f"{when} INFO auth: login ok user=").pii("EMAIL", mail).add(" ip=").pii(
                "IP", ip
            )
            msg.add(f" latency_ms={rng.randint(3, 900)}\n")
        emit(msg, "positive", "record/log")
    for _ in range(n):
        msg = ctx.Msg().add("# .env\n")
        for _kind, make, env in rng.sample(sec.SECRET_KINDS[:9], rng.randint(2, 3)):
            msg.add(f"{env}=").pii("SECRET", make(src)).add("\n")
        msg.add(f"DEBUG=false\nPORT={rng.choice([3000, 8000, 8080])}\n")
        emit(msg, "positive", "record/env")


def _near(src: Source, phrase: str) -> ctx.Msg:
    return ctx.around(src, src.locale(), phrase)


def near_misses(src: Source, emit: Emit) -> None:
    for maker, n in near.NEAR_MAKERS:
        for _ in range(n):
            family, phrase = maker(src)
            emit(_near(src, phrase), "near_miss", f"near/{family}")


class _Enough(Exception):
    pass


#: The sections, in file order. Each has its own seed, so one can be regenerated (or
#: changed) without the others.
SECTIONS: tuple[tuple[str, Callable[[Source, Emit], None]], ...] = (
    *((f"phones-{r}", functools.partial(phones, region=r)) for r in val.PHONE_LOCALES),
    ("ssns", ssns),
    ("cards", cards),
    ("ibans", ibans),
    ("emails", emails),
    ("ips", ips),
    ("secrets", secrets),
    ("records", records),
    ("near_misses", near_misses),
)


def generate(
    seed: int = SEED, sections: Sequence[str] | None = None, limit: int | None = None
) -> list[dict[str, object]]:
    """The corpus lines of `sections` (default: all), at most `limit` per section."""
    out: list[dict[str, object]] = []
    for index, (name, make) in enumerate(SECTIONS):
        if sections is not None and name not in sections:
            continue
        part: list[dict[str, object]] = []

        def emit(
            msg: ctx.Msg, kind: str, family: str, part: list[dict[str, object]] = part
        ) -> None:
            line = {"text": msg.text(), "spans": msg.spans, "kind": kind, "family": family}
            check(line)
            part.append(line)
            if limit is not None and len(part) >= limit:
                raise _Enough

        with contextlib.suppress(_Enough):
            make(Source(seed * 100 + index), emit)
        out.extend(part)
    return out


def check(line: dict[str, object]) -> None:
    """The generator's own check of every span, from the standards (not the detectors)."""
    text = str(line["text"])
    spans = line["spans"]
    assert isinstance(spans, list)
    if line["kind"] == "near_miss":
        assert not spans, line
    hint = str(line["family"]).split("/")[1]  # "phone/GB/national": try GB first
    regions = sorted(val.PHONE_LOCALES, key=lambda r: r != hint)
    last = 0
    for type_, start, end in sorted(spans, key=lambda s: s[1]):
        assert last <= start < end <= len(text), line
        last = end
        value = text[start:end]
        assert value == value.strip(), line
        ok = {
            "EMAIL": lambda v: "@" in v,
            "PHONE": lambda v: any(val.phone_ok(v, r) for r in regions),
            "CARD": lambda v: val.luhn_ok(v.replace(" ", "").replace("-", "")),
            "IBAN": val.iban_ok,
            "SSN": lambda v: val.ssn_issued(*val.ssn_parts(v)),
            "IP": lambda v: ipaddress.ip_address(v).is_global or ipaddress.ip_address(v).is_private,
            "SECRET": lambda v: len(v) >= 20,
        }[type_]
        assert ok(value), (type_, value, line["family"])


def dump(line: dict[str, object]) -> str:
    return json.dumps(line, ensure_ascii=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the file, write nothing")
    parser.add_argument("--prefix", type=int, help="print the first N lines of every section")
    args = parser.parse_args()
    if args.prefix:
        for name, _ in SECTIONS:
            for line in generate(sections=[name], limit=args.prefix):
                print(dump(line))
        return
    text = "".join(dump(line) + "\n" for line in generate())
    if args.check:
        same = OUT.read_text(encoding="utf-8") == text
        print(f"{OUT.name}: {'as generated' if same else 'DIFFERS from the generator'}")
        sys.exit(0 if same else 1)
    OUT.write_text(text, encoding="utf-8")
    size = OUT.stat().st_size
    print(f"wrote {OUT} ({text.count(chr(10))} messages, {size / 1e6:.2f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
