"""The model opened and compared with the config (edge_agent.modelcheck), then tried on a few sample
images (edge_agent.trial), as `check` lines."""

from typing import Any, List

from edge_agent.check.result import FAIL, INFO, PASS, WARN, CheckResult
from edge_agent.modelcheck import check_model

STATUS = {"fail": FAIL, "warn": WARN, "info": INFO}


def checks(config: Any) -> List[CheckResult]:
    findings = check_model(config.model)
    results = [CheckResult("model", STATUS[f.status], "{}: {}".format(f.key, f.message), f.fix) for f in findings]
    if any(f.status == "fail" for f in findings):
        return results  # a model that does not match the config would only fail the trial for the same reason
    results.insert(0, CheckResult("model", PASS, "{} matches the config (input {}x{} {}, {} output, {} "
                                  "class(es))".format(config.model.path.name, config.model.input.width,
                                                      config.model.input.height, config.model.input.layout,
                                                      config.model.output.kind, len(config.model.output.classes))))
    return results + trial_checks(config)


def trial_checks(config: Any) -> List[CheckResult]:
    from edge_agent.trial import check_findings

    results = []
    for finding in check_findings(config):
        if finding.status == "info":  # all well: the trial's summary is its pass line
            results.append(CheckResult("trial", PASS, finding.message))
        else:
            results.append(CheckResult("trial", STATUS[finding.status], "{}: {}".format(finding.key, finding.message),
                                       finding.fix))
    return results
