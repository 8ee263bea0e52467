"""The recall of scanned texts (`ironrt/pii/recall.py`): a text scanned again gets the
findings a fresh scan gives, under its own rules only, within the bounds."""

from __future__ import annotations

import gc
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironrt.pii import detectors
from ironrt.pii.detectors import count_pii, find_pii
from ironrt.pii.recall import MIN_CHARS, Recall
from ironrt.pii.rules import Rules
from ironrt.pii.steps import Pace, find_steps
from tests.pii.texts import dense_pii

SAMPLES = ["jane.doe@example.com", "+44 20 7946 0958", "4111 1111 1111 1111", "123-45-6789"]


class Scans:
    """Counts the scans `find_pii` really makes (the real scan runs; it is only counted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = detectors._find_pii

        def counted(text: str, start: int, json_text: bool, rules: Rules) -> list:  # type: ignore[type-arg]
            self.count += 1
            return real(text, start, json_text, rules)

        monkeypatch.setattr(detectors, "_find_pii", counted)


def fresh(text: str, **kw: object) -> list[tuple[str, int, int, str, str]]:
    """What a scan finds, without the recall."""
    found = detectors._find_pii(text, 0, bool(kw.get("json_text")), kw.get("rules") or Rules())  # type: ignore[arg-type]
    return [(f.type, f.start, f.end, f.value, f.kind) for f in found]


def shape(found: list) -> list[tuple[str, int, int, str, str]]:  # type: ignore[type-arg]
    return [(f.type, f.start, f.end, f.value, f.kind) for f in found]


def test_a_text_sent_again_is_recalled_not_scanned(
    recall: Recall, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans = Scans(monkeypatch)
    text = dense_pii(3000, SAMPLES)
    first = find_pii(text)
    again = find_pii(text[:1500] + text[1500:])  # an equal text, another object
    assert scans.count == 1 and len(recall) == 1 and len(text) < recall.size < 3 * len(text)
    assert shape(again) == shape(first) == fresh(text) and len(first) > 20
    again.clear()  # what a caller does with its list never reaches the next one
    assert shape(find_pii(text)) == shape(first)


def test_counts_are_the_findings_counted_whether_scanned_or_recalled(
    recall: Recall, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`count_pii` (a check that detects or blocks) gives `find_pii`'s findings counted by
    type: from a scan, from the recall after a `count_pii` or a `find_pii` kept the text,
    for JSON text and under other rules as their own entries, and for a short text."""
    samples = [*SAMPLES, "10.1.2.3", "DE89 3704 0044 0532 0130 00"]
    texts = [dense_pii(2500, samples, seed=n) for n in range(5)]
    emails_only = Rules(types=frozenset({"EMAIL"}))

    def json_of(text: str) -> str:
        return '{"note": "' + text.replace("\n", "\\n") + '"}'

    def counted(text: str, **kw: object) -> dict[str, int]:
        types = [f[0] for f in fresh(text, **kw)]
        return {t: types.count(t) for t in types}

    expected = [
        (counted(t), counted(t, rules=emails_only), counted(json_of(t), json_text=True))
        for t in texts
    ]
    scans = Scans(monkeypatch)  # counts the scans from here on
    for text, (plain, emails, in_json) in zip(texts[:4], expected, strict=False):
        assert len(plain) >= 4  # several types, so the counts are worth checking
        assert dict(count_pii(text)) == plain  # scanned (and kept)
        assert dict(count_pii(text)) == plain  # recalled
        assert dict(count_pii(text, rules=emails_only)) == emails
        assert dict(count_pii(json_of(text), json_text=True)) == in_json
    assert scans.count == 3 * 4
    find_pii(texts[4])  # kept by `find_pii`, counted by `count_pii`
    assert dict(count_pii(texts[4])) == expected[4][0] and scans.count == 3 * 4 + 1
    assert count_pii("mail jane.doe@example.com or jd@example.org") == (("EMAIL", 2),)
    assert count_pii("nothing here") == ()


def test_short_texts_and_tails_are_always_scanned(
    recall: Recall, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans = Scans(monkeypatch)
    short = "mail jane.doe@example.com"
    assert len(short) < MIN_CHARS
    find_pii(short)
    find_pii(short)
    text = dense_pii(1000, SAMPLES)
    find_pii(text, 500)  # a stream's tail, read from `start`
    find_pii(text, 500)
    assert scans.count == 4 and len(recall) == 0


def test_json_text_and_rules_are_part_of_what_is_recalled(recall: Recall) -> None:
    text = '{"note": "call me\\njane.doe@example.com or +44 20 7946 0958"}' + " " * 300
    as_prose, as_json = find_pii(text), find_pii(text, json_text=True)
    assert shape(as_prose) == fresh(text) and shape(as_json) == fresh(text, json_text=True)
    assert shape(as_prose) != shape(as_json)  # `\njane...` is not an address in prose
    email_only = Rules(types=frozenset({"EMAIL"}))
    narrow = find_pii(text, rules=email_only)
    assert {f.type for f in narrow} == {"EMAIL"}
    assert {f.type for f in find_pii(text)} == {"EMAIL", "PHONE"}  # the first rules again
    assert len(recall) == 3


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([*SAMPLES, "order 12345", "\n", "see 10.0.0.1", "é"]), max_size=60),
    st.booleans(),
)
def test_a_recalled_scan_is_the_scan(parts: list[str], json_text: bool) -> None:
    recall, saved = Recall(), detectors.RECALL  # a fresh one per example
    detectors.RECALL = recall
    try:
        text = " ".join(parts) + " x" * 150
        first, second = find_pii(text, json_text=json_text), find_pii(text, json_text=json_text)
        assert shape(first) == shape(second) == fresh(text, json_text=json_text)
        assert len(recall) == 1
    finally:
        detectors.RECALL = saved


def test_it_holds_at_most_its_budget_least_recently_used_out_first() -> None:
    a, b, c, huge = "a" * 400, "b" * 400, "c" * 400, "d" * 700
    each = Recall.cost(a, ())
    recall = Recall(budget=int(each * 2.5), largest=600)
    rules = Rules()
    recall.put(a, False, rules, [])
    recall.put(b, False, rules, [])
    assert recall.get(a, False, rules) == []  # a is now the most recent
    recall.put(c, False, rules, [])  # three do not fit: the least recent (b) goes
    assert recall.get(b, False, rules) is None
    assert recall.get(a, False, rules) == [] and recall.get(c, False, rules) == []
    recall.put(huge, False, rules, [])  # longer than `largest`: never held
    assert recall.get(huge, False, rules) is None
    assert recall.size == 2 * each and len(recall) == 2


def test_findings_count_against_the_budget_as_the_text_does() -> None:
    """Short texts dense with findings hold more in their findings than in their text:
    the budget counts both, so such texts cannot hold more memory than it says."""
    rules = Rules()
    text = " ".join(f"u{i}@example.com" for i in range(40))
    found = find_pii(text)
    assert len(found) == 40
    packed_cost = Recall.cost(
        text,
        tuple(x for f in found for x in (f.type, f.start, f.end, f.value, f.kind)),
        (("EMAIL", 40),),
    )
    assert packed_cost > 2 * Recall.cost(text, ())
    recall = Recall(budget=(packed_cost + 29) * 10)  # ten of the longest fit, not eleven
    for n in range(30):
        recall.put(text + " " * n, False, rules, found)
    assert len(recall) == 10 and recall.size <= recall.budget
    assert recall.get(text + " " * 29, False, rules) is not None
    assert recall.get(text, False, rules) is None


def test_what_it_holds_is_nothing_the_garbage_collector_follows(recall: Recall) -> None:
    """Strings and ints in tuples: untracked once the collector has met them, so a full
    recall costs the collections nothing (held as objects, it cost every call)."""
    for n in range(50):
        find_pii(dense_pii(2000, SAMPLES, seed=n))
    assert len(recall) == 50
    # An entry holds its findings' tuple and its counts' tuple of pairs: a tuple is
    # untracked the pass after those it holds are.
    for _ in range(3):
        gc.collect()
    held = recall._entries  # what it holds, looked at from outside
    assert all(not gc.is_tracked(k) and not gc.is_tracked(v) for k, v in held.items())
    assert sum(len(packed) for packed, _, _ in held.values()) > 50 * 5
    assert all(sum(n for _, n in counts) == len(packed) // 5 for packed, _, counts in held.values())


def test_threads_sharing_it_keep_it_within_bounds() -> None:
    texts = [f"{i:04d}" * 100 for i in range(40)]  # 400 characters each
    each = Recall.cost(texts[0], ())
    recall = Recall(budget=each * 12, largest=1000)
    rules = Rules()
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for n in range(400):
                text = texts[(n * 7 + k) % len(texts)]
                if recall.get(text, False, rules) is None:
                    recall.put(text, False, rules, [])
        except BaseException as exc:  # pragma: no cover - what the test looks for
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert recall.size <= recall.budget and recall.size == each * len(recall) and len(recall) >= 10


def test_a_large_text_checked_in_steps_is_recalled_whole(
    recall: Recall, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = dense_pii(20_000, SAMPLES)
    stretches = list(find_steps(text, Pace(step_s=0.0, size=1500)))
    assert len(stretches) > 5
    assert len(recall) == 1
    scans = Scans(monkeypatch)
    again = list(find_steps(text, Pace(step_s=0.0, size=1500)))
    assert scans.count == 0 and len(again) == 1 and again[0][0] == text
    assert shape(again[0][1]) == fresh(text)
    # and the stretches, shifted, were those findings too
    shifted, offset = [], 0
    for stretch, found in stretches:
        shifted += [(f.type, f.start + offset, f.end + offset, f.value, f.kind) for f in found]
        offset += len(stretch)
    assert shifted == fresh(text)


def test_resizing_drops_the_oldest_until_it_fits_and_zero_holds_nothing(
    recall: Recall, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [dense_pii(1000, SAMPLES, seed=n) for n in range(6)]
    for text in texts:
        find_pii(text)
    assert len(recall) == 6
    recall.resize(recall.size // 2)
    assert 0 < len(recall) < 6 and recall.size <= recall.budget
    assert recall.get(texts[-1], False, Rules()) is None  # another rules object: not it
    scans = Scans(monkeypatch)
    find_pii(texts[-1])  # the newest stayed
    find_pii(texts[0])  # the oldest went
    assert scans.count == 1
    recall.resize(0)
    assert len(recall) == 0 and recall.size == 0
    find_pii(texts[-1])
    find_pii(texts[-1])
    assert scans.count == 3 and len(recall) == 0


def test_a_text_too_large_to_hold_is_not_even_looked_up(
    recall: Recall, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashing a huge text would hold the loop the stepped scan exists to give back."""
    monkeypatch.setattr(recall, "largest", 5000)
    text = dense_pii(8000, SAMPLES)
    before = (recall.hits, recall.misses)
    for _ in range(2):
        stretches = list(find_steps(text, Pace(step_s=0.0, size=1500)))
        assert len(stretches) > 3
        find_pii(text)
    assert (recall.hits, recall.misses) == before and len(recall) == 0
    find_pii(text[:4000])  # one it may hold is looked up
    assert (recall.hits, recall.misses) == (before[0], before[1] + 1) and len(recall) == 1
