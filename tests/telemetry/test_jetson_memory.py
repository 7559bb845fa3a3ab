"""GPU memory on a Jetson (edge_agent.telemetry.jetson_memory) and how `report` shows it: read from a
fake sysfs/debugfs/procfs tree written in the kernel's own formats (nvmap's seq_printf formats, the
ones jtop parses; /proc/meminfo; the device tree's NUL-separated compatible list), counted once
(part of RSS, never added to it), with the source named; no NVML and no Tegra: "not measurable here"."""

import os
from pathlib import Path
from types import SimpleNamespace

from edge_agent.report import _notes
from edge_agent.report.measure import _mean_utilisation
from edge_agent.report.render import RESOURCE_HEAD, resource_rows
from edge_agent.telemetry.jetson_memory import (
    TegraGpuMemory,
    is_tegra,
    jtop_gpu_memory,
    parse_nvmap_clients,
)
from edge_agent.telemetry.probe import Provider, SystemProbe, TegraSysfsProvider, choose_gpu_provider

ME = os.getpid()
# nvmap_debug_iovmm_clients_show (drivers/video/tegra/nvmap/nvmap_dev.c): header, client_stringify +
# " %10uK" per client, the total row, then PRINT_MEM_STATS_NOTE(SIZE)
HEADER = "%-18s %18s %8s %11s\n" % ("CLIENT", "PROCESS", "PID", "SIZE")
NOTE = ("Note: total memory is precise account of pages allocated by NvMap.\nIt doesn't match with all clients "
        "\"SIZE\" accumulated as shared memory \nis accounted in full in each clients \"SIZE\" that shared memory.\n")


def client_row(client, process, pid, size_k):
    return "%-18s %18s %8u" % (client, process, pid) + " %10uK\n" % size_k


def total_row(size_k):
    return "%-18s %18s %8s %10uK\n" % ("total", "", "", size_k)


def clients_file(rows, total_k):
    return HEADER + "".join(client_row(*row) for row in rows) + total_row(total_k) + NOTE


def maps_file(rows, total_k):
    """nvmap_debug_maps_show (what jtop reads, iovmm/maps): each client row is followed by one line per
    handle (maps_stringify, starting with two empty %-18s columns) and a blank line."""
    text = HEADER + "%-18s %18s %8s %11s %8s %6s %9s %21s %18s\n" % (
        "", "", "BASE", "SIZE", "FLAGS", "SHARE", "UID", "MAPS", "MAPSIZE")
    for row in rows:
        text += client_row(*row)
        text += "%-18s %-18s %8x %10uK %8x %6u %16s %12s %12s " % ("", "", 0, row[3], 0, 1, "0x00000000c0ffee00",
                                                                   "", "") + "%6uK\n" % row[3]
        text += "\n"
    return text + "%-18s %-18s %8s %10uK\n" % ("total", "", "", total_k)


ROWS = [("user", "gnome-shell", 2101, 38912), ("user", "python3", ME, 262144), ("user", "python3", ME, 4096),
        ("user", "my worker", 3300, 1024), ("nvmap-kernel", "kernel", 0, 512)]


def fake_tegra(root, clients=True, meminfo=True, maps=False):
    """A Jetson's files under `root`: L4T release, device tree, nvmap debugfs, /proc/meminfo."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, "
                                               "EABI: aarch64, DATE: Fri Sep 13 04:36:44 UTC 2024\n")
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/compatible").write_bytes(b"nvidia,p3737-0000+p3701-0005\0nvidia,p3701-0005\0"
                                                       b"nvidia,tegra234\0")
    iovmm = root / "sys/kernel/debug/nvmap/iovmm"
    iovmm.mkdir(parents=True)
    if clients:
        (iovmm / "clients").write_text(clients_file(ROWS, 300000))
    if maps:
        (iovmm / "maps").write_text(maps_file(ROWS, 300000))
    if meminfo:
        (root / "proc/meminfo").write_text("MemTotal:       31991044 kB\nMemFree:        27014320 kB\n"
                                           "MemAvailable:   29046764 kB\nNvMapMemUsed:     327680 kB\n")
    return root


def test_the_client_table_is_parsed_per_process_and_summed():
    per_pid, total = parse_nvmap_clients(clients_file(ROWS, 300000))
    assert per_pid[ME] == (262144 + 4096) * 1024  # two nvmap clients of this process
    assert per_pid[3300] == 1024 * 1024  # a process name with a space
    assert per_pid[0] == 512 * 1024 and per_pid[2101] == 38912 * 1024
    assert total == 300000 * 1024


def test_the_maps_table_jtop_reads_gives_the_same_rows():
    assert parse_nvmap_clients(maps_file(ROWS, 300000)) == parse_nvmap_clients(clients_file(ROWS, 300000))


def test_this_process_and_the_board_from_debugfs_and_meminfo(tmp_path):
    root = fake_tegra(tmp_path)
    memory = TegraGpuMemory(root / "sys", root / "proc")
    assert memory.read() == {"gpu_mem_process_mb": 260.0, "gpu_mem_shared_mb": 320.0}
    assert "nvmap/iovmm/clients (this process)" in memory.source and "NvMapMemUsed (whole board)" in memory.source


def test_without_root_only_the_board_figure_and_the_source_says_so(tmp_path):
    root = fake_tegra(tmp_path, clients=False)  # debugfs not readable: an unprivileged service
    memory = TegraGpuMemory(root / "sys", root / "proc")
    assert memory.read() == {"gpu_mem_shared_mb": 320.0}
    assert memory.source.endswith("meminfo NvMapMemUsed (whole board)")
    root = fake_tegra(tmp_path / "maps", clients=False, maps=True, meminfo=False)
    memory = TegraGpuMemory(root / "sys", root / "proc")
    assert memory.read() == {"gpu_mem_process_mb": 260.0, "gpu_mem_shared_mb": 293.0}  # 300000K total row
    assert "iovmm/maps" in memory.source and "debugfs total" in memory.source


def test_tegra_is_detected_from_the_release_file_or_the_device_tree(tmp_path):
    root = fake_tegra(tmp_path)
    assert is_tegra(root / "etc", root / "proc")
    (root / "etc/nv_tegra_release").unlink()
    assert is_tegra(root / "etc", root / "proc")  # the device tree alone
    (root / "proc/device-tree/compatible").write_bytes(b"raspberrypi,4-model-b\0brcm,bcm2711\0")
    assert not is_tegra(root / "etc", root / "proc")
    assert not is_tegra(tmp_path / "none", tmp_path / "none")


def test_jtop_gives_this_process_row_and_the_shared_ram():
    # jtop 4.x: processes rows [pid, user, gpu, type, priority, state, cpu %, RSS KB, GPU mem KB, name]
    jetson = SimpleNamespace(processes=[[1200, "root", "I", "Graphic", 20, "S", 0.5, 90000, 20480, "Xorg"],
                                        [ME, "edge", "I", "Graphic", 20, "R", 80.0, 900000, 266240, "python3"]],
                             memory={"RAM": {"tot": 31991044, "used": 4000000, "shared": 327680}})
    values, source = jtop_gpu_memory(jetson)
    assert values == {"gpu_mem_process_mb": 260.0, "gpu_mem_shared_mb": 320.0}
    assert source == "jtop processes (this process); jtop memory RAM shared (whole board)"
    assert jtop_gpu_memory(SimpleNamespace(processes=None, memory={}))[0] == {}


def _document(probe, use):
    return {"rows": [{"label": "TensorRT FP16", "status": "measured", "prepare_s": 1.0, "cache": "hit",
                      "memory": {"host_held_mb": 20.0, "device_held_mb": 60.0, "rss_added_mb": 75.0},
                      "utilisation": use}],
            "probe": {"providers": probe.providers, "facts": probe.facts()}, "rounds": 10,
            "seconds_per_measurement": 2.0}


def test_the_report_row_on_a_fake_tegra_tree_counts_gpu_memory_once(tmp_path):
    root = fake_tegra(tmp_path)
    provider = choose_gpu_provider(root / "sys", root / "etc", root / "proc")  # no jtop installed here
    assert isinstance(provider, TegraSysfsProvider)
    probe = SystemProbe(1.0, tmp_path, {}, gpu=provider)
    try:
        use = _mean_utilisation([probe.sample(), probe.sample()])
        document = _document(probe, use)
    finally:
        probe.close()
    assert probe.providers == ["tegra-sysfs", "psutil"]
    (row,) = resource_rows(document)
    cells = dict(zip(RESOURCE_HEAD, row))
    assert cells["GPU mem MB"] == "260.0 (part of RSS)"
    assert cells["peak RSS MB"] == "{:.1f}".format(use["process_rss_mb"])  # RSS as psutil says: nothing added
    (note,) = [n for n in _notes(document, {"cpu_cores": 2}, None) if n.startswith("GPU memory")]
    assert note.startswith("GPU memory: unified with RAM, from nvmap debugfs ") and "NvMapMemUsed" in note


def test_no_nvml_and_no_tegra_is_not_measurable_here(tmp_path):
    provider = choose_gpu_provider(tmp_path / "sys", tmp_path / "etc", tmp_path / "proc")
    assert type(provider) is Provider  # neither jtop, nor a Tegra tree, nor pynvml here
    probe = SystemProbe(1.0, tmp_path, {}, gpu=provider)
    try:
        use = _mean_utilisation([probe.sample()])
        document = _document(probe, use)
    finally:
        probe.close()
    assert not any(key.startswith("gpu_") for key in use)
    (row,) = resource_rows(document)
    assert dict(zip(RESOURCE_HEAD, row))["GPU mem MB"] == "–"
    assert ("GPU memory: not measurable here (no NVIDIA GPU that NVML can read, not a Jetson); the device column "
            "is the backend's own accounting.") in _notes(document, {"cpu_cores": 2}, None)


def test_the_roots_default_to_the_real_files():
    memory = TegraGpuMemory()
    assert memory.sys_root == Path("/sys") and memory.proc_root == Path("/proc") and memory.pid == ME
