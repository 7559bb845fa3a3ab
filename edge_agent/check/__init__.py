"""`edge-agent check`: the technician's doctor. One line per check, pass / warn / fail / info,
with the fix in one sentence; exit status 1 when anything fails; `--json` for machines.

Checks never raise: a check that breaks reports itself as a failure with the reason, so the
report is always complete.
"""

import logging
from typing import Callable, List, Optional

from edge_agent import __version__
from edge_agent.check.result import FAIL, INFO, PASS, WARN, CheckResult
from edge_agent.errors import ConfigError
from edge_agent.json_stdout import print_document

__all__ = ["CheckResult", "FAIL", "INFO", "PASS", "WARN", "collect", "run_checks"]

log = logging.getLogger(__name__)


def run_checks(config_path: Optional[str], as_json: bool = False) -> int:
    results = collect(config_path)
    failed = any(r.status == FAIL for r in results)
    if as_json:
        print_document({"version": __version__, "ok": not failed,
                        "counts": {s: sum(r.status == s for r in results) for s in (PASS, WARN, FAIL, INFO)},
                        "checks": [r.as_dict() for r in results]})
    else:
        for r in results:
            print("{:<5} {:<16} {}".format(r.status.upper(), r.name, r.detail))
            if r.fix and r.status in (WARN, FAIL):
                print("      {:<16} fix: {}".format("", r.fix))
        print("\n{} failed, {} warning(s), {} passed".format(
            sum(r.status == FAIL for r in results), sum(r.status == WARN for r in results),
            sum(r.status == PASS for r in results)))
    return 1 if failed else 0


def collect(config_path: Optional[str]) -> List[CheckResult]:
    from edge_agent.check import host, io, model, platform
    from edge_agent.config_loader import load_config

    results = [CheckResult("edge-agent", INFO, __version__)]
    config = None
    try:
        config = load_config(config_path)
        where = config_path or "built-in demo settings"
        results.append(CheckResult("config", PASS, "{}: valid; model {}, backend {} {}, {} source(s)".format(
            where, config.model.path.name, config.backend.type, config.backend.precision, len(config.sources))))
    except ConfigError as exc:
        results.append(CheckResult("config", FAIL, str(exc), "edit the config as the message says, then run "
                                   "`edge-agent check --config FILE` again"))
    checks: List[Callable[[], List[CheckResult]]] = [platform.checks]
    if config is not None:
        checks += [lambda: model.checks(config), lambda: host.checks(config), lambda: io.checks(config)]
    else:
        checks += [lambda: host.checks(None)]
    for check in checks:
        results += _guarded(check)
    return results


def _guarded(check: Callable[[], List[CheckResult]]) -> List[CheckResult]:
    try:
        return check()
    except Exception as exc:  # a broken probe must not hide the rest of the report
        log.debug("check crashed", exc_info=True)
        return [CheckResult(getattr(check, "__module__", "check").rsplit(".", 1)[-1], FAIL,
                            "the check itself failed: {}: {}".format(type(exc).__name__, exc),
                            "report this with `edge-agent check --json` attached")]

