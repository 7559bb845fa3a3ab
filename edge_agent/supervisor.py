"""One small supervisor for every background thread: none can die silently.

A supervised task is a function `work(stop)` that runs until `stop` is set (or returns when its
job is done, e.g. a file source at its end). When it raises, the supervisor logs the traceback,
counts the failure, waits with exponential backoff (on the stop event, so a stop is never held
back) and runs it again. Its state and the reason are readable at any time:

    running -> restarting (after a failure, with the error) -> running ...
    failed: `give_up_after` failures in a row, none followed by `healthy_after_s` of running.
            The task still retries at the longest backoff; `recovery_failed` is what the
            systemd watchdog looks at, so the service is restarted only when in-process
            recovery has not worked.
    stuck:  a task that declares `stall_s` and stopped calling `beat()` for that long (a thread
            cannot be killed in Python; a restart of the process is the only cure).
    finished / stopped: ended on purpose.

Everything a task shares with others goes through its own code; the supervisor only starts,
restarts and reports. `SUPERVISOR` is the process-wide instance the daemon reads; tests may pass
their own.
"""

import logging
import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

log = logging.getLogger(__name__)

Work = Callable[[threading.Event], None]
Listener = Callable[["TaskStatus"], None]


class TaskStatus(NamedTuple):
    name: str
    state: str  # running | restarting | failed | stuck | finished | stopped
    reason: str
    failures: int  # since the task was spawned
    recovery_failed: bool


class Task:
    def __init__(self, supervisor: "Supervisor", name: str, work: Work, backoff_initial_s: float,
                 backoff_max_s: float, give_up_after: int, healthy_after_s: float, stall_s: Optional[float],
                 on_exit: Optional[Callable[[], None]]) -> None:
        self.name = name
        self.stop_event = threading.Event()
        self.state = "starting"
        self.reason = ""
        self.failures = 0
        self.consecutive = 0
        self._supervisor = supervisor
        self._work = work
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._give_up_after = give_up_after
        self._healthy_after_s = healthy_after_s
        self._stall_s = stall_s
        self._on_exit = on_exit
        self._beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # ---- for the task's own code ----
    def beat(self) -> None:
        """Called by a task that declared `stall_s`, on every iteration of its loop."""
        self._beat = time.monotonic()

    # ---- for its owner ----
    def start(self) -> "Task":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: Optional[float] = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def status(self) -> TaskStatus:
        state, reason = self.state, self.reason
        if state == "running" and self._stall_s is not None and time.monotonic() - self._beat > self._stall_s:
            state, reason = "stuck", "no progress for {:.0f} s".format(time.monotonic() - self._beat)
        return TaskStatus(self.name, state, reason, self.failures, state in ("failed", "stuck"))

    # ---- the thread ----
    def _run(self) -> None:
        delay = self._backoff[0]
        try:
            while not self.stop_event.is_set():
                started = time.monotonic()
                self.beat()
                self._set("running", "")
                try:
                    self._work(self.stop_event)
                except Exception as exc:  # every failure of the task is this supervisor's to handle
                    if self.stop_event.is_set():
                        log.warning("%s raised while stopping: %s", self.name, exc)
                        break
                    if time.monotonic() - started >= self._healthy_after_s:
                        self.consecutive, delay = 0, self._backoff[0]
                    self.failures += 1
                    self.consecutive += 1
                    self._supervisor.count_failure(self.name)
                    log.exception("%s failed (failure %d); restarting in %.1f s", self.name, self.failures, delay)
                    text = "{}: {}; restart {} in {:.0f} s".format(type(exc).__name__, _short(exc), self.failures,
                                                                    delay)
                    if self.consecutive >= self._give_up_after:
                        self._set("failed", "recovery failed after {} restarts in a row; last error {}".format(
                            self.consecutive, text))
                    else:
                        self._set("restarting", text)
                    self.stop_event.wait(delay)
                    delay = min(delay * 2, self._backoff[1])
                    continue
                if not self.stop_event.is_set():
                    self._set("finished", "")
                    return
        finally:
            if self.state not in ("finished",):
                self._set("stopped", "")
            if self._on_exit is not None:
                try:
                    self._on_exit()
                except Exception:
                    log.exception("%s: cleanup failed", self.name)
            self._supervisor.forget(self)

    def _set(self, state: str, reason: str) -> None:
        if (state, reason) == (self.state, self.reason):
            return
        if state == "running" and self.state in ("restarting", "failed"):
            log.warning("%s running again after %d failure(s)", self.name, self.failures)
        self.state, self.reason = state, reason
        self._supervisor.changed(self.status())


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class Supervisor:
    def __init__(self) -> None:
        self._tasks: Dict[int, Task] = {}
        self._lock = threading.Lock()
        self._failures: Dict[str, int] = {}
        self._listeners: List[Listener] = []

    def spawn(self, name: str, work: Work, backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
              give_up_after: int = 5, healthy_after_s: float = 60.0, stall_s: Optional[float] = None,
              on_exit: Optional[Callable[[], None]] = None, start: bool = True) -> Task:
        """A named, supervised thread running `work(stop)`; `on_exit` runs once when it ends for good."""
        task = Task(self, name, work, backoff_initial_s, backoff_max_s, give_up_after, healthy_after_s, stall_s,
                    on_exit)
        with self._lock:
            self._tasks[id(task)] = task
        return task.start() if start else task

    def tasks(self) -> List[TaskStatus]:
        with self._lock:
            tasks = list(self._tasks.values())
        return [task.status() for task in tasks]

    def problems(self) -> List[TaskStatus]:
        """Tasks that are not running normally right now (restarting, failed, stuck)."""
        return [status for status in self.tasks() if status.state in ("restarting", "failed", "stuck")]

    def recovery_failed(self) -> List[TaskStatus]:
        return [status for status in self.tasks() if status.recovery_failed]

    def failures(self) -> Dict[str, int]:
        """Failures per task name since the process started (tasks that ended included)."""
        with self._lock:
            return dict(self._failures)

    def add_listener(self, listener: Listener) -> None:
        """`listener(status)` on every state change (from the task's thread: keep it quick)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # ---- called by tasks ----
    def count_failure(self, name: str) -> None:
        with self._lock:
            self._failures[name] = self._failures.get(name, 0) + 1

    def changed(self, status: TaskStatus) -> None:
        for listener in list(self._listeners):
            try:
                listener(status)
            except Exception:
                log.exception("supervisor listener failed")

    def forget(self, task: Any) -> None:
        with self._lock:
            self._tasks.pop(id(task), None)


SUPERVISOR = Supervisor()


def serve(server: Any, poll_s: float = 0.2) -> Work:
    """The work of a supervised socketserver (http.server, wsgiref): requests handled one
    `handle_request()` at a time until stop, so the task ends within `poll_s` of `stop()` and its
    owner then calls `server_close()`. Not `serve_forever()`: its `shutdown()` waits forever for a
    loop that never started (a stop before the thread ran). The listening socket outlives a crash
    of the loop: a client that connects meanwhile is answered after the restart."""

    def work(stop: threading.Event) -> None:
        server.timeout = poll_s
        while not stop.is_set():
            server.handle_request()

    return work
