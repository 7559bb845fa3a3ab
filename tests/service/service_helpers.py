"""Helpers for the service tests: the service manager's end of the notify socket, tiny configs,
the daemon as a subprocess. (Not in conftest.py: `from conftest import` would be ambiguous.)"""

import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent / "daemon_harness.py"


class NotifyListener:
    """The service manager's end of $NOTIFY_SOCKET: a bound Unix datagram socket collecting messages."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.messages: List[Tuple[float, Dict[str, str]]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="notify-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._cond:
                self.messages.append((time.monotonic(), fields))
                self._cond.notify_all()

    def pings_between(self, start: float, end: float) -> List[float]:
        """Arrival times of WATCHDOG=1 between two monotonic instants."""
        return [t for t, _ in self.having("WATCHDOG", "1") if start <= t <= end]

    def having(self, key: str, value: Optional[str] = None) -> List[Tuple[float, Dict[str, str]]]:
        with self._cond:
            return [(t, m) for t, m in self.messages if key in m and (value is None or m[key] == value)]

    def wait_for(self, key: str, value: Optional[str] = None, timeout: float = 20.0,
                 count: int = 1) -> List[Tuple[float, Dict[str, str]]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.having(key, value)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("no {} x{} {}={} within {} s; got {}".format(
                        count, "", key, value, timeout, [m for _, m in self.messages]))
                self._cond.wait(remaining)
            return self.having(key, value)

    def statuses(self) -> List[str]:
        return [m["STATUS"] for _, m in self.having("STATUS")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


def config_data(model: Path, sources: Optional[List[Dict]] = None, **sections: Dict) -> Dict:
    data = {
        "device": {"id": "test-node", "site": "lab", "line": "l1"},
        "model": {"path": str(model), "input": {"width": 64, "height": 64},
                  "output": {"classes": ["background", "defect"]}},
        "sources": sources if sources is not None else [
            {"type": "synthetic", "name": "cam0", "width": 96, "height": 64, "fps": 50}],
        "logging": {"level": "info"},
    }
    data.update(sections)
    return data


def write_yaml(path: Path, data: Dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


class Daemon:
    """`edge-agent run` in a subprocess, its stderr in a file."""

    def __init__(self, process: subprocess.Popen, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if time.monotonic() > deadline:
                raise AssertionError("{!r} not logged within {} s; log:\n{}".format(text, timeout, self.log))
            if self.process.poll() is not None:
                raise AssertionError("daemon exited {} before logging {!r}; log:\n{}".format(
                    self.process.returncode, text, self.log))
            time.sleep(0.05)
