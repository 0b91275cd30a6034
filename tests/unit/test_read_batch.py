"""core.outbox.ReadBatch: the reader's own end-of-read object, current only in the reader's task
while it handles a read — never in another task (another connection's reader, a task started
during the read), never in another thread (another server's loop)."""

from __future__ import annotations

import threading

import trio

from edgebus.core.outbox import ReadBatch, at_end_of_read, current_read, in_read


def test_current_only_in_the_readers_task_and_only_during_the_read() -> None:
    seen: dict[str, object] = {}

    async def other_task() -> None:
        seen["other"] = current_read()

    async def started_during_read() -> None:
        # it inherits the reader's context, but the read it was started in is over
        seen["child"] = (current_read(), in_read(), at_end_of_read(lambda: None))

    async def main() -> None:
        batch = ReadBatch()
        assert current_read() is None and not in_read()
        async with trio.open_nursery() as n:
            batch.begin()
            assert current_read() is batch and in_read()
            n.start_soon(other_task)
            n.start_soon(started_during_read)
            done: list[int] = []
            assert at_end_of_read(lambda: done.append(1))
            batch.end()
            assert done == [1] and current_read() is None
        assert seen["other"] is None
        assert seen["child"] == (None, False, False)

    trio.run(main)


def test_suspend_runs_the_callbacks_and_hides_the_batch_until_resume() -> None:
    async def main() -> None:
        batch = ReadBatch()
        batch.begin()
        done: list[str] = []
        at_end_of_read(lambda: done.append("a"))
        batch.suspend()
        assert done == ["a"] and current_read() is None
        assert not at_end_of_read(lambda: done.append("x"))
        batch.resume()
        assert current_read() is batch
        at_end_of_read(lambda: done.append("b"))
        batch.end()
        assert done == ["a", "b"] and current_read() is None

    trio.run(main)


def test_a_read_in_another_thread_is_not_this_threads() -> None:
    # two servers in one process (EmbeddedServer runs each in a thread of its own)
    started, release = threading.Event(), threading.Event()
    found: list[object] = []

    def reader() -> None:
        b = ReadBatch()
        b.begin()
        started.set()
        release.wait(5)
        b.end()

    t = threading.Thread(target=reader)
    t.start()
    try:
        assert started.wait(5)
        found.append(current_read())
    finally:
        release.set()
        t.join()
    assert found == [None]
