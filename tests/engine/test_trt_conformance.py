"""Every tensorrt name the project uses, checked against the real bindings of each supported version."""

import ast
import json

import pytest
from trt_introspect import REPO, SNAPSHOT, run_names, run_version
from trt_surface_852 import ADDED_IN_8_6, derive_852

from edge_agent.engine.trt_surface import NAMES, SUPPORTED_VERSIONS, SURFACE


@pytest.fixture(scope="module", params=SUPPORTED_VERSIONS)
def real_surface(request):
    data, reason = run_version(request.param)
    if data is None:
        pytest.skip("TensorRT {} bindings unavailable, conformance NOT checked: {}".format(request.param, reason))
    assert data["version"] == request.param
    return request.param, data["surface"]


def test_every_used_name_exists_or_is_probed(real_surface):
    version, surface = real_surface
    missing = [u.name for u in SURFACE if not u.probed and not surface[u.name]["exists"]]
    assert missing == [], "TensorRT {} lacks {}: probe them with hasattr and mark probed=True".format(
        version, missing)


def test_call_shapes_match_the_real_signatures(real_surface):
    version, surface = real_surface
    wrong = []
    for use in SURFACE:
        entry = surface[use.name]
        if not entry["exists"] or entry["kind"] not in ("method", "class"):
            if use.params and entry["exists"]:
                wrong.append("{} is a {}, not callable".format(use.name, entry["kind"]))
            continue
        fits = any([name for name, _ in params[:len(use.params)]] == list(use.params)
                   and all(default for _, default in params[len(use.params):])
                   for params in entry["signatures"])
        if not fits:
            wrong.append("{}{} vs real {}".format(use.name, use.params, entry["signatures"]))
    assert wrong == [], "TensorRT {}: {}".format(version, wrong)


def test_recorded_snapshot_matches_the_real_bindings(real_surface):
    version, surface = real_surface
    recorded = json.loads(SNAPSHOT.read_text()).get(version)
    assert recorded == surface, ("tests/engine/trt_surface_snapshot.json is stale for {}: run "
                                 "`python tests/engine/trt_introspect.py --write`".format(version))


def test_the_852_surface_is_861_minus_what_86_added():
    """Every removal names something the real 8.6.1 bindings have (else the list is wrong), cites
    its source, and the recorded 8.5.2 surface is exactly the derivation."""
    assert all(citation.strip() for citation in ADDED_IN_8_6.values())
    snapshot = json.loads(SNAPSHOT.read_text())
    assert snapshot["8.5.2"] == derive_852(snapshot["8.6.1"])
    assert not snapshot["8.5.2"]["IBuilderConfig.builder_optimization_level"]["exists"]
    data, reason = run_names("8.6.1", sorted(ADDED_IN_8_6))
    if data is None:
        pytest.skip("TensorRT 8.6.1 bindings unavailable, the 8.5.2 removals NOT checked: {}".format(reason))
    absent = [name for name, entry in data["surface"].items() if not entry["exists"]]
    assert absent == [], "not in the real 8.6.1 bindings, so not an 8.6 addition to remove: {}".format(absent)


def test_snapshot_covers_the_declared_surface():
    snapshot = json.loads(SNAPSHOT.read_text())
    assert sorted(snapshot) == sorted(SUPPORTED_VERSIONS)
    for version, surface in snapshot.items():
        assert set(surface) == set(NAMES), "run `python tests/engine/trt_introspect.py --write` ({})".format(version)


def _trt_references(tree):
    """Dotted paths below a name `trt` (how the code refers to the imported tensorrt module)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, inner = [], node
            while isinstance(inner, ast.Attribute):
                parts.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id == "trt":
                found.add(".".join(reversed(parts)))
    return found


def test_every_trt_reference_in_edge_agent_is_declared():
    undeclared = {}
    for path in (REPO / "edge_agent").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for ref in _trt_references(tree):
            if ref not in NAMES and not any(name.startswith(ref + ".") for name in NAMES):
                undeclared.setdefault(str(path.relative_to(REPO)), []).append(ref)
    assert undeclared == {}, "declare these in edge_agent/engine/trt_surface.py: {}".format(undeclared)


def test_the_ast_check_can_fail():
    assert _trt_references(ast.parse("x = trt.Builder(trt.Logger())\ny = trt.NoSuchThing.X")) == {
        "Builder", "Logger", "NoSuchThing.X", "NoSuchThing"}


def test_no_version_string_comparisons():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "edge_agent").rglob("*.py")
                 if "__version__ <" in p.read_text() or "__version__ >" in p.read_text()
                 or "__version__.startswith" in p.read_text()]
    assert offenders == []

