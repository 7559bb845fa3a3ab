"""`edge-agent check`'s installation lines: version ranges through the dependency tree, and the
service's state and MemoryMax (systemctl's answers given as systemd prints them)."""

from edge_agent.check import installation


def _dist(folder, name, version, requires=()):
    info = folder / "{}-{}.dist-info".format(name.replace("-", "_"), version)
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version]
    lines += ["Requires-Dist: " + r for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_a_dependency_outside_its_range_fails_with_the_chain(tmp_path, monkeypatch):
    # JetPack 5's old failure: the system numpy 1.17 kept next to an onnxruntime that needs newer
    _dist(tmp_path, "fake-agent", "1.0", ["fake-runtime>=1.0", "fake-extra-only; extra == 'gpu'"])
    _dist(tmp_path, "fake-runtime", "1.5", ["fake-numpy>=1.21.6"])
    _dist(tmp_path, "fake-numpy", "1.17.4")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = installation.dependencies("fake-agent")
    assert result.status == "fail", result
    assert result.detail == "fake-runtime needs fake-numpy>=1.21.6 but 1.17.4 is installed"
    assert "install.sh" in result.fix


def test_a_missing_dependency_fails_and_a_consistent_tree_passes(tmp_path, monkeypatch):
    _dist(tmp_path, "fake-agent", "1.0", ["fake-gone>=1"])
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "fake-agent needs fake-gone>=1 (not installed)" in installation.dependencies("fake-agent").detail
    assert installation.dependencies().status in ("pass", "info")  # this venv


def test_the_service_state_and_its_memory_ceiling():
    running = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "NRestarts": "0",
               "Result": "success", "MemoryMax": str(4 * 2**30)}
    state, memory = installation.service(running, limit_mb=2048)
    assert state.status == "pass" and "active (running), 0 restart(s)" in state.detail
    assert memory.status == "pass" and "MemoryMax 4096 MB" in memory.detail
    # a 6 GB budget under MemoryMax=4G: the kernel kills the service first
    assert installation.service(running, limit_mb=6144)[1].status == "fail"
    assert installation.service(running, limit_mb=3500)[1].status == "warn"
    looping = dict(running, NRestarts="7")
    assert installation.service(looping, 2048)[0].status == "warn"
    failed = dict(running, ActiveState="failed", SubState="failed", Result="exit-code")
    first = installation.service(failed, 2048)[0]
    assert first.status == "fail" and "journalctl -u edge-agent" in first.fix
    unlimited = installation.service(dict(running, MemoryMax="infinity"), 2048)[1]
    assert unlimited.status == "info"
    assert installation.service({"LoadState": "not-found"}, 2048)[0].status == "info"


def test_checks_without_systemd_leave_the_service_out():
    names = [r.name for r in installation.checks(2048, show=None)]
    if not installation._systemd_running():
        assert "service" not in names
    assert "dependencies" in names and "onnx" in names
