"""The model opened and compared with the config (edge_agent.modelcheck), as `check` lines."""

from typing import Any, List

from edge_agent.check.result import FAIL, INFO, PASS, WARN, CheckResult
from edge_agent.modelcheck import check_model

STATUS = {"fail": FAIL, "warn": WARN, "info": INFO}


def checks(config: Any) -> List[CheckResult]:
    findings = check_model(config.model)
    results = [CheckResult("model", STATUS[f.status], "{}: {}".format(f.key, f.message), f.fix) for f in findings]
    if not any(f.status == "fail" for f in findings):
        results.insert(0, CheckResult("model", PASS, "{} matches the config (input {}x{} {}, {} output, {} "
                                      "class(es))".format(config.model.path.name, config.model.input.width,
                                                          config.model.input.height, config.model.input.layout,
                                                          config.model.output.kind, len(config.model.output.classes))))
    return results
