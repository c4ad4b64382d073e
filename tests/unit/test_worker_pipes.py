"""The parent reads a pool pipe in chunks: every message whole, in order, then the end."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from tq.worker.pipes import READ_CHUNK_BYTES, JobReader, PipeReader, send_pickled


@pytest.fixture
def pipe():
    reader, writer = multiprocessing.Pipe(duplex=False)
    yield reader, writer
    for end in (reader, writer):
        if not end.closed:
            end.close()


def test_messages_sent_before_a_read_come_in_one_read_in_order(pipe) -> None:
    reader, writer = pipe
    results = PipeReader(reader.fileno())
    assert results.read() == []  # nothing yet: no waiting
    for n in range(50):
        send_pickled(writer, (n, "ok", False))
    assert results.read() == [(n, "ok", False) for n in range(50)]


def test_a_message_larger_than_a_read_waits_for_its_end(pipe) -> None:
    reader, writer = pipe
    results = PipeReader(reader.fileno())
    big = "x" * (3 * READ_CHUNK_BYTES)
    got: list = []
    pid = os.fork()
    if pid == 0:  # the pipe holds 64 KiB: the writer blocks until the reader takes some
        try:
            send_pickled(writer, (1, big, False))
            send_pickled(writer, (2, "small", False))
        finally:
            os._exit(0)
    writer.close()
    for _ in range(10_000):
        got += results.read()
        if len(got) == 2:
            break
        os.sched_yield()
    os.waitpid(pid, 0)
    assert got == [(1, big, False), (2, "small", False)]


def test_the_end_of_the_pipe_comes_after_the_last_message(pipe) -> None:
    reader, writer = pipe
    results = PipeReader(reader.fileno())
    send_pickled(writer, "last words")
    writer.close()
    assert results.read() == ["last words"]
    with pytest.raises(EOFError):
        results.read()


def test_a_message_cut_off_by_the_writer_s_death_is_the_end(pipe) -> None:
    reader, writer = pipe
    results = PipeReader(reader.fileno())
    os.write(writer.fileno(), b"\x00\x00\x01\x00partial")  # 256 bytes announced, 7 sent
    writer.close()
    assert results.read() == []  # what came so far: no message yet
    with pytest.raises(EOFError):
        results.read()


def test_a_pool_process_reads_its_jobs_one_by_one_from_fewer_reads(pipe, monkeypatch) -> None:
    reader, writer = pipe
    jobs = JobReader(reader.fileno())
    reads: list[int] = []
    real_read = os.read

    def counted_read(fd: int, size: int) -> bytes:
        reads.append(fd)
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", counted_read)
    writer.send((1, "first"))  # Connection.send, as the parent's send_pickled frames it
    send_pickled(writer, (2, "second"))
    send_pickled(writer, None)  # the parent's "stop"
    assert [jobs.recv(), jobs.recv(), jobs.recv()] == [(1, "first"), (2, "second"), None]
    assert len(reads) == 1  # Connection.recv: two reads a job
    writer.close()
    with pytest.raises(EOFError):
        jobs.recv()


def test_a_job_split_across_reads_is_read_whole(pipe) -> None:
    reader, writer = pipe
    jobs = JobReader(reader.fileno())
    big = ("x" * (2 * READ_CHUNK_BYTES),)
    pid = os.fork()
    if pid == 0:
        try:
            send_pickled(writer, (1, big))
        finally:
            os._exit(0)
    writer.close()
    assert jobs.recv() == (1, big)
    os.waitpid(pid, 0)


def test_an_error_handling_one_result_does_not_lose_the_others_or_the_child(pipe) -> None:
    """An error raised while handling a result (a broker write failing) reaches the loop once
    every result read is handled; the child is not taken for dead."""
    from tq.worker.pool import Child, PreforkPool

    reader, writer = pipe
    for job_id in (1, 2):
        send_pickled(writer, (job_id, "outcome", False))
    handled: list[int] = []
    exits: list[Child] = []

    def on_result(child: Child, result) -> None:
        handled.append(result[0])
        if result[0] == 1:
            raise ConnectionResetError("the broker went away while acking")

    pool = PreforkPool(
        size=0,
        child_main=lambda *args: None,
        on_result=on_result,
        on_exit=exits.append,
        add_reader=lambda *args: None,
        remove_reader=lambda fd: None,
    )
    child = Child(index=1, pid=0, result_reader=reader, results=PipeReader(reader.fileno()))
    pool.children.append(child)
    with pytest.raises(ConnectionResetError):
        pool._on_readable(child)
    assert handled == [1, 2]
    assert exits == [] and not child.exited and child in pool.children
