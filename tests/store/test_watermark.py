"""The watermark the books and the outbox keep: waiters wake when the mark passes their
value, not before; the mark never goes down; a cancelled waiter is harmless."""

from __future__ import annotations

import anyio

from ironrt.store.watermark import Watermark


def test_waiters_wake_in_turn_and_the_mark_never_goes_down() -> None:
    async def main() -> None:
        mark = Watermark(2)
        woke: list[int] = []

        async def wait(target: int) -> None:
            await mark.reach(target)
            woke.append(target)

        async with anyio.create_task_group() as tg:
            for target in (1, 5, 3):
                tg.start_soon(wait, target)
            await anyio.wait_all_tasks_blocked()
            assert woke == [1] and mark.waited_for
            mark.advance(4)
            await anyio.wait_all_tasks_blocked()
            assert woke == [1, 3]
            mark.advance(1)
            assert mark.value == 4
            with anyio.move_on_after(0.01):  # a reader that gives up
                await mark.reach(9)
            mark.advance(9)
            await anyio.wait_all_tasks_blocked()
        assert woke == [1, 3, 5] and not mark.waited_for

    anyio.run(main)
