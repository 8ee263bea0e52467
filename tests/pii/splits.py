"""What the streaming and stepped scanners must equal: shared by the PII property tests.

`splits(texts)` draws a text and a split of it into pieces; `streamed` feeds pieces to a
`StreamScanner` and `stepped` steps a `PieceScan`, each returning the findings at offsets
into the whole text, to compare with `find_pii` on it.
"""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

from ironrt.pii import Finding, StreamScanner
from ironrt.pii.pieces import PieceScan
from ironrt.pii.rules import DEFAULT_RULES, Rules


def splits(
    texts: st.SearchStrategy[str], max_cuts: int = 12
) -> st.SearchStrategy[tuple[str, list[str]]]:
    """A text from `texts` and the pieces of one split of it (joined, they are the text)."""

    @st.composite
    def split(draw: st.DrawFn) -> tuple[str, list[str]]:
        text = draw(texts)
        cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=max_cuts)))
        bounds = [0, *cuts, len(text)]
        return text, [text[a:b] for a, b in itertools.pairwise(bounds)]

    return split()


def streamed(
    pieces: list[str], batch: int = 0, rules: Rules = DEFAULT_RULES
) -> tuple[str, list[Finding]]:
    """What a scanner fed `pieces` releases, and its findings at offsets into the whole."""
    scanner = StreamScanner(batch=batch, rules=rules)
    out: list[str] = []
    got: list[Finding] = []
    offset = 0
    for piece in [*pieces, None]:
        released, findings = scanner.feed(piece) if piece is not None else scanner.flush()
        got += [
            Finding(f.type, f.start + offset, f.end + offset, f.value, f.kind) for f in findings
        ]
        out.append(released)
        offset += len(released)
    return "".join(out), got


def stepped(text: str, sizes: list[int], *, json_text: bool = False) -> list[Finding]:
    """The findings of a `PieceScan` stepped by `sizes` (cycled), at offsets into `text`."""
    scan = PieceScan(text, json_text=json_text)
    found: list[Finding] = []
    stretches: list[str] = []
    for size in itertools.cycle(sizes):
        if scan.done:
            break
        at = scan.position
        stretch, findings = scan.step(size)
        stretches.append(stretch)
        found += [Finding(f.type, f.start + at, f.end + at, f.value, f.kind) for f in findings]
    assert "".join(stretches) == text
    return found
