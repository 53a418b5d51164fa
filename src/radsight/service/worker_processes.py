"""``radsight serve --worker-processes``: the analysis workers as processes, one a core by default, each with its
own predictor (built once, when it starts) and job store connection, claiming studies from the store as the worker
threads do (``service.worker``). The Python work of one study (maps, boxes, drawing, DICOM) then never waits for
another study's hold on the interpreter lock.

What the intake read and checked of an upload reaches the process that analyzes it on disk (``service.handover``).
A process that dies is started again; the study it held goes back to the queue (SQLite) or is claimed again once
its lease lapses (PostgreSQL). The server and its processes signal each other only through pipes and unlocked
shared bytes: a process killed at any moment leaves no lock held (``multiprocessing.Event`` would)."""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait

from radsight.runtime.memory import limit_heap_arenas
from radsight.service.backends import delivery, open_archive, open_outboxes, open_store
from radsight.service.context import Settings, service_options
from radsight.service.handover import Handover
from radsight.service.worker import Workers

log = logging.getLogger("radsight.service")
ID_LENGTH = 32  # a study id: uuid4().hex
SENT, DONE = "sent", "done "  # what a process tells its server: results put in the outbox; an outcome recorded
PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent ends
STARTUP_SECONDS = 300.0  # loading the models (longer on a first run, or a busy machine)
RESTART_PAUSE = 5.0  # seconds before a process that lived less than this is started again


class Channel:
    """Short messages, a line each, down one pipe (from the worker processes to the server). Sending never blocks:
    a full pipe drops the message (what it says is also found by reading the job store)."""

    def __init__(self, ctx):
        self.reader, self.writer = ctx.Pipe(duplex=False)
        os.set_blocking(self.writer.fileno(), False)
        self._partial = b""

    def send(self, message: str) -> None:
        try:  # one write of a short line: the pipe keeps it whole among the other processes' writes
            os.write(self.writer.fileno(), message.encode() + b"\n")
        except (BlockingIOError, BrokenPipeError):
            pass

    def receive(self, timeout: float) -> list[str]:
        """The messages that came within ``timeout`` seconds (none: an empty list)."""
        if not wait([self.reader], timeout):
            return []
        *lines, self._partial = (self._partial + os.read(self.reader.fileno(), 65536)).split(b"\n")
        return [line.decode() for line in lines]


class Bell(Channel):
    """A wake-up call down a pipe (from the server to one worker process), with the ``set``/``wait``/``clear`` of
    the event the worker loop waits on. Ringing never blocks: a full pipe means a call is pending, a broken one
    that the process ended."""

    def set(self) -> None:
        self.send("")

    def wait(self, timeout: float) -> bool:
        return bool(self.receive(timeout))

    def clear(self) -> None:
        """Nothing: :meth:`wait` took the calls it woke for."""


class Flag:
    """A stop flag in one shared byte, without a lock: the ``is_set``/``set`` of an event."""

    def __init__(self, ctx):
        self.value = ctx.Value("b", 0, lock=False)

    def is_set(self) -> bool:
        return bool(self.value.value)

    def set(self) -> None:
        self.value.value = 1


class WorkerProcesses:
    """``settings.workers`` processes. ``store``: the server's job store (for the studies of processes that died);
    ``delivered``: called in the server after a process put results in the outboxes (their senders wake);
    ``finished``: called in the server with the id of each study whose outcome a process recorded."""

    def __init__(self, settings: Settings, store, delivered: Callable[[], None] = lambda: None,
                 finished: Callable[[str], None] = lambda study_id: None):
        self.settings, self.store, self.delivered, self.finished = settings, store, delivered, finished
        self._ctx = multiprocessing.get_context("spawn")
        self._stop, self._news = Flag(self._ctx), Channel(self._ctx)
        count = settings.workers
        self._bells = [Bell(self._ctx) for _ in range(count)]
        self._ready = [Flag(self._ctx) for _ in range(count)]
        self._held = [self._ctx.Array("c", ID_LENGTH, lock=False) for _ in range(count)]
        self._processes: list = [None] * count
        self._started: list[float] = [0.0] * count
        self._ended: list[float | None] = [None] * count  # when a process that died was found dead
        self._stopping = threading.Event()
        self._watch = threading.Thread(target=self._supervise, name="radsight-worker-watch", daemon=True)

    def start(self, timeout: float = STARTUP_SECONDS) -> None:
        """Start the processes and wait until each has loaded its models; RuntimeError when one ends first."""
        for i in range(len(self._processes)):
            self._spawn(i)
        deadline = time.monotonic() + timeout
        for p, ready in zip(self._processes, self._ready):
            while not ready.is_set():
                if not p.is_alive() or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"worker process {p.name} did not start (exit code {p.exitcode}); "
                                       "run without --worker-processes to see why")
                time.sleep(0.05)
        self._watch.start()

    def _spawn(self, i: int) -> None:
        self._ready[i].value.value = 0
        self._started[i], self._ended[i] = time.monotonic(), None
        p = self._ctx.Process(target=_work, name=f"radsight-worker-{i}", daemon=True,
                              args=(os.getpid(), self.settings, self._stop, self._bells[i], self._held[i], self._news,
                                    self._ready[i]))
        p.start()
        self._processes[i] = p

    def notify(self) -> None:
        for bell in self._bells:
            bell.set()

    def stop(self) -> None:
        self._stopping.set()
        self._stop.set()
        self.notify()
        if self._watch.is_alive():
            self._watch.join(timeout=5)
        for p in self._processes:
            if p is not None:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()

    def _supervise(self) -> None:
        """Pass on what the processes tell (results put in the outbox, outcomes recorded); start again a process
        that died."""
        while not self._stopping.is_set():
            try:
                self._watch_once()
            except Exception:  # the job store unreachable, say: keep watching
                log.exception("worker processes: watching failed")
                time.sleep(1.0)

    def _watch_once(self) -> None:
        for message in self._news.receive(0.5):
            if message == SENT:
                self.delivered()
            elif message.startswith(DONE):
                self.finished(message[len(DONE):])
        now = time.monotonic()
        for i, p in enumerate(self._processes):
            if p.is_alive() or self._stopping.is_set():
                continue
            if self._ended[i] is None:
                self._ended[i] = now
                held = self._held[i].value.decode()
                log.warning("worker process %s ended (exit code %s)%s; starting another", p.name, p.exitcode,
                            f" while analyzing study {held}" if held else "")
                if held and not self.store.lease_seconds:
                    self.store.requeue(held)
                self._held[i].value = b""
            # one that ended soon after it started is started again only after a pause: never in a tight loop
            if self._ended[i] - self._started[i] >= RESTART_PAUSE or now - self._ended[i] >= RESTART_PAUSE:
                self._spawn(i)


def _work(server: int, settings: Settings, stop: Flag, bell: Bell, held, news: Channel, ready: Flag) -> None:
    """A worker process: its own predictor, store and delivery, claiming studies until ``stop`` is set."""
    _end_with(server)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops its workers
    limit_heap_arenas()
    options = service_options(settings)
    predictor = options.predictor()
    deliver = delivery(open_outboxes(settings, open_archive(settings)))

    def deliver_and_tell(source, results) -> None:
        deliver(source, results)
        news.send(SENT)

    def hold(study_id: str) -> None:
        held.value = study_id.encode()
    workers = Workers(open_store(settings), predictor, options, settings.data_dir, 1,
                      deliver_and_tell if deliver is not None else None, Handover(settings.data_dir, predictor).read,
                      stop=_OrServerGone(stop, server), wake=bell, holding=hold,
                      finished=lambda study_id: news.send(DONE + study_id))
    ready.set()
    workers.run()


class _OrServerGone:
    """``stop``, or the server process ended (this one was orphaned)."""

    def __init__(self, stop: Flag, server: int):
        self.stop, self.server = stop, server

    def is_set(self) -> bool:
        return self.stop.is_set() or os.getppid() != self.server

    def set(self) -> None:
        self.stop.set()


def _end_with(server: int) -> None:
    """On Linux, this process is killed when the server process ends, however it ends (kill -9 included): no
    orphan goes on claiming studies beside a restarted server (its study is then resumed as the server's are)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: it stops once it finds itself orphaned
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != server:  # the server ended before the request took effect
        os._exit(1)
