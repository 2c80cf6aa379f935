"""The explorer's jobs (fits, steps, redraws) on worker threads, the newest winning.

A job submitted supersedes those before it, running or waiting, except that a step
queues behind earlier steps (each press is one iteration). A superseded job's
`cancelled()` turns True: it is the `cancel` callable em.fit polls before every EM
iteration and every start it tries, so the running fit stops within one iteration
(em.Cancelled), and the job checks it again before it shows anything. The next job
starts at once, on a thread of its own, while a superseded one winds down (the
seeding of a start or a split-and-merge evaluation runs to its end before em.fit
polls again). Jobs that draw hold `drawing` while they do. `on_submit(job)` is
called when a job is submitted, and `on_tick(newest job, seconds since it was
submitted)` every `tick` seconds while it runs, for a status line that counts. With
background=False a job runs at once in the caller's thread.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import em


@dataclass(eq=False)
class Job:
    """One unit of work. kind: "fit", "step" or "view"; doing: what it does, as the
    status line says it ("fitting K = 8 on the preview"); run: called with the job."""

    kind: str
    doing: str
    run: object
    id: int = 0
    submitted: float = field(default_factory=time.perf_counter)
    superseded: bool = False
    settled: bool = False  # its result or its error is on screen (it may still be finishing)
    done: bool = False

    def cancelled(self) -> bool:
        """Whether a newer job superseded this one (em.fit's cancel callable)."""
        return self.superseded

    def stop_if_superseded(self) -> None:
        """em.Cancelled if a newer job superseded this one (checked before showing)."""
        if self.superseded:
            raise em.Cancelled(f"superseded: {self.doing}")

    def elapsed(self) -> float:
        return time.perf_counter() - self.submitted


@dataclass(frozen=True)
class Event:
    """What happened to a job: what ("submitted"; "drawing": it was not superseded
    when it began to draw, "shown": it has drawn; "cancelled": a newer job stopped it
    running, or dropped it before it ran; "failed"), the job's id and `doing`, and
    when (time.perf_counter())."""

    what: str
    job: int
    doing: str
    at: float


class Jobs:
    """Runs jobs, the newest winning; see the module's docstring."""

    def __init__(self, background: bool = True, on_submit=None, on_tick=None,
                 tick: float = 0.5):
        self.background = background
        self.on_submit, self.on_tick, self.tick = on_submit, on_tick, tick
        self.lock = threading.RLock()
        self.drawing = threading.Lock()
        self.newest: Job | None = None
        self.events: list[Event] = []
        self._pending: list[Job] = []
        self._running: list[Job] = []   # superseded ones winding down included
        self._ids = itertools.count(1)
        self._idle = threading.Event()
        self._idle.set()
        self._ticker: threading.Thread | None = None

    @property
    def running(self) -> Job | None:
        """The job running that no newer one superseded, if any."""
        with self.lock:
            return next((j for j in self._running if not j.superseded), None)

    def record(self, what: str, job: Job) -> None:
        self.events.append(Event(what, job.id, job.doing, time.perf_counter()))

    def submit(self, job: Job) -> Job:
        """Queue job (or, with background=False, run it now); supersede the others."""
        with self.lock:
            job.id = next(self._ids)
            for old in self._pending + self._running:
                if not (job.kind == old.kind == "step"):
                    old.superseded = True
            dropped = [j for j in self._pending if j.superseded]
            self._pending = [j for j in self._pending if not j.superseded] + [job]
            self.newest = job
            self.record("submitted", job)
            for old in dropped:  # never ran: it ends here
                old.done = True
                self.record("cancelled", old)
            if self.on_submit:
                self.on_submit(job)
            if not self.background:
                self._pending.pop()
            else:
                self._idle.clear()
                if self._ticker is None:
                    self._ticker = threading.Thread(target=self._ticks, daemon=True)
                    self._ticker.start()
                self._start_next()
        if not self.background:
            self._run(job)
        return job

    def busy_with(self, *kinds: str) -> bool:
        """Whether a job of one of these kinds is running or waiting, neither
        superseded nor settled (a settled job's result is on screen: it draws no more)."""
        with self.lock:
            return any(j.kind in kinds and not (j.superseded or j.settled)
                       for j in self._pending + self._running)

    def is_newest(self, job: Job) -> bool:
        return job is self.newest and not job.superseded

    def when_newest(self, job: Job, action) -> bool:
        """action() under the lock if job is still the newest: what only the newest
        job may do (the status line). Returns whether it ran."""
        with self.lock:
            if not self.is_newest(job):
                return False
            action()
            return True

    def _start_next(self) -> None:
        """Under the lock: start the next job waiting, unless a current one runs."""
        if self._pending and self.running is None:
            job = self._pending.pop(0)
            self._running.append(job)
            threading.Thread(target=self._thread, args=(job,), daemon=True).start()

    def _thread(self, job: Job) -> None:
        self._run(job)
        with self.lock:
            self._running.remove(job)
            self._start_next()
            if not self._running and not self._pending:
                self._idle.set()

    def _run(self, job: Job) -> None:
        """job.run(job); em.Cancelled (from em.fit, or from the job when it finds
        itself superseded before it shows) ends it as "cancelled"."""
        try:
            job.run(job)
        except em.Cancelled:
            self.record("cancelled", job)
        finally:
            job.done = True

    def _ticks(self) -> None:
        while True:
            self._idle.wait(self.tick)
            with self.lock:
                if self._idle.is_set():
                    self._ticker = None
                    return
                job = self.newest
            if self.on_tick and job is not None and not (job.done or job.settled):
                self.on_tick(job, job.elapsed())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every job submitted so far has ended, the superseded ones
        included; False on timeout."""
        return self._idle.wait(timeout)
