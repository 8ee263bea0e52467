"""Fuzz the control API over its real Unix socket, as its own `/v1/openapi.json` describes it.

Two generators drive every operation of the document (but one, see `EXCLUDED`):

- valid requests, generated from the document (hypothesis-jsonschema): the request body's
  schema, the query parameters' types and ranges, path parameters that are often the names,
  ids and id prefixes of agents that exist, so handlers act on real agents;
- hostile requests of our own, for what broke the daemon before: huge and negative numbers
  (2**63, -1, 1e300), values of the wrong type, unknown fields, deep nesting, JSON that is
  not an object, bytes that are not JSON, path parameters like `..` or `%00`, query
  values like `nan` or `1e309`.

Properties, for every answer: it matches the document (a documented status, a documented
content type, a body valid against the schema of that status: jsonschema); an error body
is `{"error": {"code", "message", "field"}}` with a status and code listed in docs/api.md,
so the only 5xx are 500 `internal` and 507 `storage_error`. A valid request refused as
invalid (`invalid_request`) names the field at fault; a hostile body is refused with a 400 or 422 that
names its bad field. After each run the daemon process is alive and `/v1/health` is ok.

Schemathesis would drive the document too (over the socket, with httpx's UDS transport),
but importing it patches hypothesis for the whole pytest session (it blanks every
falsifying example hypothesis prints, in every test of the suite), so it is not used.

Agents are cheap (`sleep`, `true`, in a temporary cwd) and their number is capped
(`MAX_STARTS`). Runs a few seconds in CI; `IRONRT_FUZZ_EXAMPLES=5000` runs longer (see
tests/fuzzing.py); `IRONRT_FUZZ_STATS=1` (with `-s`) prints what the run reached.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from ironrt.tempdaemon import TempDaemon
from tests.fuzzing import TimeCap, fuzz_settings

HOST = "http://ironrt"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
#: Stopping the daemon is that route's documented job: a fuzzer that ends the process under
#: test learns nothing more from it, and every later example would fail for that reason.
EXCLUDED = {("POST", "/v1/daemon/stop")}
#: Agents the fuzz may start: the two it keeps around, and valid starts it generates.
MAX_STARTS = 12
#: A long poll on a live agent (`wait`) lasts its `timeout`: kept short here.
MAX_WAIT_S = 0.3


def documented_errors() -> dict[int, set[str]]:
    """The error statuses and codes of docs/api.md's table ("| 404 | `a`, `b` | ... |")."""
    table: dict[int, set[str]] = {}
    section = DOCS.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        match = re.match(r"\|\s*(\d{3})\s*\|([^|]*)\|", line)
        if match:
            codes = re.findall(r"`([a-z_]+)`", match.group(2))
            table.setdefault(int(match.group(1)), set()).update(codes)  # a status may have rows
    return table


# ---- the document -----------------------------------------------------------------------------


@dataclass
class Op:
    method: str
    path: str
    path_params: list[str]
    query: dict[str, dict[str, Any]]  # name -> parameter (its schema under "schema")
    body: str | None  # the request body's component name
    body_required: bool
    responses: dict[str, Any]

    def __repr__(self) -> str:
        return f"{self.method} {self.path}"


class Document:
    """The OpenAPI document the daemon serves, and the answers it allows."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.components = doc["components"]
        self.ops: list[Op] = []
        for path, methods in doc["paths"].items():
            for method, op in methods.items():
                if (method.upper(), path) in EXCLUDED:
                    continue
                params = op.get("parameters", [])
                body, required = None, False
                if "requestBody" in op:
                    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                    body = ref.rsplit("/", 1)[1]
                    required = op["requestBody"].get("required", False)
                self.ops.append(
                    Op(
                        method.upper(),
                        path,
                        [p["name"] for p in params if p["in"] == "path"],
                        {p["name"]: p for p in params if p["in"] == "query"},
                        body,
                        required,
                        op["responses"],
                    )
                )
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        self._strategies: dict[str, st.SearchStrategy[Any]] = {}

    def schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A schema that resolves the document's `#/components/...` references."""
        return {**schema, "components": self.components}

    def values(self, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
        """Values valid against a schema of the document (strategies built once)."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self._strategies:
            self._strategies[key] = from_schema(self.schema(schema))
        return self._strategies[key]

    def body_schema(self, op: Op) -> dict[str, Any]:
        assert op.body is not None
        return self.components["schemas"][op.body]  # type: ignore[no-any-return]

    def check(self, op: Op, r: httpx.Response, errors: dict[int, set[str]]) -> None:
        """The answer is one the document allows: status, content type, body."""
        status = str(r.status_code)
        if status not in op.responses:
            assert r.status_code >= 400, f"undocumented status {r.status_code}"
            status = "default"
        response = op.responses[status]
        media = r.headers.get("content-type", "").split(";")[0].strip()
        content = response.get("content", {})
        assert media in content, f"content type {media!r}, documented: {sorted(content)}"
        if media == "application/json":
            key = f"{op.method} {op.path} {status}"
            if key not in self._validators:
                schema = self.schema(content[media].get("schema", {}))
                self._validators[key] = jsonschema.Draft202012Validator(schema)
            self._validators[key].validate(r.json())
        if r.status_code >= 400:
            code = r.json()["error"]["code"]
            documented = errors.get(r.status_code)
            assert documented is not None, f"status {r.status_code} is not in docs/api.md"
            assert code in documented, f"{r.status_code} {code!r} is not in docs/api.md"


# ---- the daemon -------------------------------------------------------------------------------


@dataclass
class Call:
    """One request to send, and what is known of it."""

    op: Op
    path_params: dict[str, str]
    query: dict[str, str]
    body: bytes | None
    #: The body is invalid, or a query parameter unknown: a 400/422 unless the path names
    #: no route (then a 404).
    invalid_body: bool = False
    #: The field the refusal must name, when the request has one bad field.
    field: str | None = None

    def url(self) -> str:
        path = self.op.path
        for name, value in self.path_params.items():
            # Dots are escaped too: a client resolves a literal `..` before it is ever sent.
            path = path.replace("{" + name + "}", quote(value, safe="").replace(".", "%2E"))
        return path

    def __repr__(self) -> str:
        body = None if self.body is None else self.body[:300]
        return (
            f"{self.op.method} {self.url()[:300]} query={self.query!r} body={body!r} "
            f"field={self.field!r}"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints this for a falsifying example


@dataclass
class Control:
    """One daemon, its control socket, and what the fuzz did to it."""

    daemon: TempDaemon
    client: httpx.Client
    doc: Document
    cwd: Path
    errors: dict[int, set[str]]
    starts: int = 0
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    #: (method, route, status) of every fuzzed answer: what the run reached.
    seen: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    death: str | None = None

    def send(self, method: str, url: str, **kw: Any) -> httpx.Response:
        self.recent.append(f"{method} {url[:300]} {str(kw)[:300]}")
        if self.death is not None:
            raise AssertionError(self.death)
        try:
            return self.client.request(method, url, **kw)
        except httpx.TransportError as exc:
            alive = self.daemon.proc is not None and self.daemon.proc.poll() is None
            self.death = (
                f"the control socket failed ({exc!r}); daemon alive: {alive}. The last "
                "requests, newest last:\n  "
                + "\n  ".join(self.recent)
                + f"\ndaemon stderr: {self.daemon.stderr()}"
            )
            raise AssertionError(self.death) from exc

    def call(self, c: Call) -> httpx.Response:
        if c.op.path.endswith("/wait") and "timeout" not in c.query:
            c.query["timeout"] = str(MAX_WAIT_S)
        headers = {"content-type": "application/json"} if c.body is not None else {}
        r = self.send(c.op.method, c.url(), params=c.query, content=c.body, headers=headers)
        self.seen[(c.op.method, c.op.path, r.status_code)] += 1
        if r.status_code == 201:
            self.starts += 1
        try:
            self.doc.check(c.op, r, self.errors)
        except BaseException as exc:
            exc.add_note(exchange(r))
            raise
        return r

    def op(self, method: str, path: str) -> Op:
        return next(o for o in self.doc.ops if (o.method, o.path) == (method, path))

    def refs(self) -> list[str]:
        """Names, ids and id prefixes of the agents there are now."""
        agents = self.send("GET", "/v1/agents").json()["agents"]
        out: list[str] = []
        for a in agents:
            out += [a["name"], a["id"], a["id"][:1], a["id"][:4], f"agent:{a['name']}"]
        return out

    def seed(self) -> None:
        """Keep a live agent and an ended one around (started again if the fuzz removed them)."""
        names = {a["name"] for a in self.send("GET", "/v1/agents").json()["agents"]}
        for name, command in (
            ("fz-live", [shutil.which("sleep") or "/bin/sleep", "300"]),
            ("fz-done", [shutil.which("true") or "/bin/true"]),
        ):
            if name not in names and self.starts < MAX_STARTS:
                self.starts += 1
                body = {"command": command, "cwd": str(self.cwd), "name": name}
                r = self.send("POST", "/v1/agents", json=body)
                assert r.status_code == 201, r.text

    def assert_healthy(self) -> None:
        d = self.daemon
        assert d.proc is not None and d.proc.poll() is None, d.stderr()
        assert self.send("GET", "/v1/health").json()["ok"] is True


def exchange(r: httpx.Response) -> str:
    """The request and its answer, for a failure report."""
    req = r.request
    return (
        f"request: {req.method} {req.url.raw_path.decode(errors='replace')[:300]} "
        f"body={req.content[:300]!r}\nanswer: {r.status_code} "
        f"{r.headers.get('content-type')} {r.text[:500]!r}"
    )


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Control]:
    cwd = tmp_path_factory.mktemp("fuzz-cwd")
    with TempDaemon() as d:
        transport = httpx.HTTPTransport(uds=str(d.home / "ironrt.sock"))
        with httpx.Client(transport=transport, base_url=HOST, timeout=30) as client:
            doc = Document(client.get("/v1/openapi.json").json())
            c = Control(d, client, doc, cwd, documented_errors())
            c.seed()
            yield c
            if os.environ.get("IRONRT_FUZZ_STATS"):
                for key, n in sorted(c.seen.items()):
                    print(*key, n)


def test_documented_errors_are_parsed() -> None:
    """The table the fuzz judges by is really docs/api.md's (not an empty parse)."""
    errors = documented_errors()
    assert errors[400] == {"invalid_request"} and errors[500] == {"internal"}
    assert errors[507] == {"storage_error"} and errors[404] == {"agent_not_found", "not_found"}


def _follows(value: str) -> bool:
    """Whether the daemon reads a query value as true (`Request.flag`)."""
    return value.lower() in ("1", "true", "yes")


def tame(c: Call) -> None:
    """Keep a request from blocking by design: no follow stream (endless until the client
    hangs up), no long wait (a long poll on a live agent lasts its timeout)."""
    if _follows(c.query.get("follow", "")):
        c.query["follow"] = "false"
    if c.op.path.endswith("/wait"):
        try:
            if not float(c.query.get("timeout", "inf")) <= MAX_WAIT_S:
                c.query["timeout"] = str(MAX_WAIT_S)
        except ValueError:
            pass  # refused as it is: a 400, no waiting


# ---- valid requests, from the document -----------------------------------------------------


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@st.composite
def valid_calls(draw: st.DrawFn, control: Control, refs: list[str]) -> Call:
    doc = control.doc
    op = draw(st.sampled_from(doc.ops))
    path_params = {
        name: draw(st.sampled_from(refs) | st.text(min_size=1, max_size=30))
        for name in op.path_params
    }
    query: dict[str, str] = {}
    for name, param in op.query.items():
        if draw(st.booleans()):
            value = doc.values(param["schema"]).map(_query_text)
            query[name] = draw(value | st.just("") if param.get("allowEmptyValue") else value)
    body = None
    if op.body is not None and not op.body_required and draw(st.integers(0, 9)) == 9:
        body = b""  # an empty body reads as {}: every field absent
    elif op.body is not None:
        value = draw(doc.values({"$ref": f"#/components/schemas/{op.body}"}))
        if op.body == "StartRequest" and draw(st.booleans()):
            # A start that succeeds, with generated options: a cheap program, a real cwd,
            # no restart loop running on for the rest of the module.
            value.update(command=[shutil.which("true") or "/bin/true"], cwd=str(control.cwd))
            value["restart"] = "no"
        body = json.dumps(value).encode()
    return Call(op, path_params, query, body)


def test_valid_requests_get_documented_answers(control: Control) -> None:
    cap = TimeCap()
    # Inputs a longer run found, kept so every run tries them first.
    limits = control.op("PUT", "/v1/limits/{scope}")
    found = [Call(limits, {"scope": "fz-live"}, {}, b'{"window": ""}')]

    @fuzz_settings(ci_examples=60)
    @given(c=valid_calls(control, control.refs()))
    @cap.guard
    def run(c: Call) -> None:
        control.seed()
        tame(c)
        if c.op.method == "POST" and c.op.path == "/v1/agents" and control.starts >= MAX_STARTS:
            return
        r = control.call(c)
        if r.status_code >= 400 and r.json()["error"]["code"] == "invalid_request":
            # Well-formed and typed as documented: only a value can be at fault, and the
            # refusal names it.
            named = {*c.query, *c.path_params, *json.loads(c.body or b"{}")}
            assert r.json()["error"]["field"] in named, exchange(r)

    for c in found:
        run = example(c=c)(run)
    run()
    control.assert_healthy()


# ---- hostile requests -----------------------------------------------------------------------

BAD_NUMBERS: list[Any] = [-1, -1.5, 2**63, 2**64, -(2**63) - 1, 10**40, 1e300, -1e300]
BAD_TYPES: list[Any] = ["1", "", [], {}, [1], True, {"a": 1}, "x" * 10_000, 1.5, 7]
BAD_QUERY = [
    "-1",
    "9223372036854775808",
    "1e309",
    "nan",
    "-inf",
    "0x10",
    "maybe",
    "\x00",
    "%zz",
    "[]",
    "x" * 5000,
]
BAD_REFS = [
    "..",
    ".",
    "%00",
    "\x00",
    "\u202e",
    "x" * 5000,
    "agent:",
    "project:",
    "project:" + "a" * 200,
    "agent:..",
    "team:x",
    "-1",
    "9223372036854775808",
    "null",
    "%",
    "*",
    "a b",
]
RAW_BODIES = [
    b"{",
    b'{"a":NaN}',
    b"\xff\xfe{}",
    b'{"a":1,}',
    b"1e99999",
    b"\x00",
    b"[" * 100_000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
]


def _types(prop: dict[str, Any]) -> set[str]:
    found = {prop["type"]} if "type" in prop else set()
    for alt in prop.get("anyOf", []):
        found |= _types(alt)
    return found


def _fits(value: Any, prop: dict[str, Any]) -> bool:
    """Whether a JSON value is of a type the property allows (then it is not a bad type)."""
    if "enum" in prop or any("enum" in alt for alt in prop.get("anyOf", [])):
        return False  # none of BAD_TYPES is a member of one of the protocol's enums
    kinds = _types(prop)
    if not kinds:
        return True
    json_kind = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }[type(value)]
    return json_kind in kinds or (json_kind == "integer" and "number" in kinds)


def _base_body(schema: dict[str, Any], cwd: str) -> dict[str, Any]:
    """A body valid but for what is mutated: the required fields filled."""
    base: dict[str, Any] = {}
    if "command" in schema.get("required", []):
        base["command"] = [shutil.which("true") or "/bin/true"]
    if "cwd" in schema.get("required", []):
        base["cwd"] = cwd
    return base


@st.composite
def hostile_calls(draw: st.DrawFn, control: Control, refs: list[str]) -> Call:
    op = draw(st.sampled_from(control.doc.ops))
    path_params = {
        p: draw(
            st.sampled_from(refs) | st.sampled_from(BAD_REFS) | st.text(min_size=1, max_size=20)
        )
        for p in op.path_params
    }
    query = {}
    for name in op.query:
        if draw(st.booleans()):
            query[name] = draw(st.sampled_from(BAD_QUERY) | st.text(max_size=10))
    unknown = None
    if draw(st.booleans()):
        unknown = draw(st.sampled_from(["colour", "__proto__", "follow[]"]))
        query[unknown] = "1"
    c = Call(op, path_params, query, None)
    if unknown is not None:
        # Refused (400 naming it) once the path names a route, before anything is read.
        c.invalid_body, c.field = True, unknown
    if op.body is None:
        return c
    schema = control.doc.body_schema(op)
    props: dict[str, Any] = schema.get("properties", {})
    base = _base_body(schema, str(control.cwd))
    c.invalid_body = True
    kind = draw(st.sampled_from(["number", "type", "unknown", "nested", "top", "raw"]))
    numeric = sorted(n for n, p in props.items() if _types(p) & {"integer", "number"})
    if kind == "number" and numeric:
        name = draw(st.sampled_from(numeric))
        base[name] = draw(st.sampled_from(BAD_NUMBERS))
        c.field = unknown or name
    elif kind in ("type", "number"):
        name = draw(st.sampled_from(sorted(props)))
        base[name] = draw(st.sampled_from([v for v in BAD_TYPES if not _fits(v, props[name])]))
        c.field = unknown or name
    elif kind == "unknown":
        name = draw(st.sampled_from(["colour", "budgett_usd", "__proto__", "x" * 300]))
        base[name] = 1
        c.field = unknown or name
    elif kind == "nested":
        name = draw(st.sampled_from(sorted(props)))
        depth = draw(st.integers(min_value=2, max_value=3000))
        opener, closer = (b"[", b"]") if depth % 2 else (b'{"a":', b"}")
        base[name] = "NESTED"
        c.body = (
            json.dumps(base).encode().replace(b'"NESTED"', opener * depth + b"1" + closer * depth)
        )
        c.field = unknown or name
    if kind == "top":
        c.body = json.dumps(draw(st.sampled_from([[], [base], 1, "x", None, True]))).encode()
    elif kind == "raw":
        c.body = draw(st.sampled_from(RAW_BODIES))
    elif c.body is None:
        c.body = json.dumps(base).encode()
    return c


def test_hostile_requests_are_refused_as_documented(control: Control) -> None:
    cap = TimeCap()
    # What crashed the daemon before (issue 10): huge integers on a real agent.
    patch, start = control.op("PATCH", "/v1/agents/{ref}"), control.op("POST", "/v1/agents")
    huge = json.dumps({"command": ["true"], "cwd": "/", "max_restarts": 2**63}).encode()
    found = [
        Call(patch, {"ref": "fz-live"}, {}, b'{"rpm": 9223372036854775808}', True, "rpm"),
        Call(patch, {"ref": "fz-done"}, {}, b'{"tpm": 9223372036854775808}', True, "tpm"),
        Call(start, {}, {}, huge, invalid_body=True, field="max_restarts"),
    ]

    @fuzz_settings(ci_examples=100)
    @given(c=hostile_calls(control, control.refs()))
    @cap.guard
    def run(c: Call) -> None:
        control.seed()
        tame(c)
        r = control.call(c)
        if not c.invalid_body:
            return
        if "/" in "".join(c.path_params.values()):  # decoded, the path names no route
            assert r.status_code == 404, exchange(r)
            return
        assert r.status_code in (400, 422), exchange(r)
        if c.field is not None:
            assert r.json()["error"]["field"] == c.field, exchange(r)

    for c in found:
        run = example(c=c)(run)
    run()
    control.assert_healthy()
