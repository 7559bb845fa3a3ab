"""One line of the `edge-agent check` report."""

from typing import Dict, NamedTuple

PASS, WARN, FAIL, INFO = "pass", "warn", "fail", "info"


class CheckResult(NamedTuple):
    name: str
    status: str  # pass | warn | fail | info
    detail: str
    fix: str = ""  # one sentence, shown for warn and fail

    def as_dict(self) -> Dict[str, str]:
        return self._asdict()
