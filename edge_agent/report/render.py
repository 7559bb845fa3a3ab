"""The report as files: report.json (every figure), report.md and report.html (one self-contained
page: inline CSS and SVG charts, no script, no link to anything, readable offline in any browser)."""

import html
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from edge_agent.report import scaling
from edge_agent.report.figures import Chart

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;
border-bottom:1px solid #ddd;padding-bottom:.2em}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right}th{background:#f4f6f8}td.l,th.l{text-align:left}
.pass{color:#1a7f37;font-weight:600}.fail{color:#b42318;font-weight:600}.muted{color:#667}
.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{flex:1 1 480px}.chart svg{width:100%;height:auto}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em .8em;margin:.6em 0}
ul{margin:.3em 0}
"""


def write_all(document: Dict[str, Any], charts: List[Chart], out: Path) -> Dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    texts = {"json": json.dumps(document, indent=2) + "\n", "md": markdown(document), "html": page(document, charts)}
    for kind, path in paths.items():
        temp = path.with_name(path.name + ".tmp")
        temp.write_text(texts[kind], encoding="utf-8")
        temp.replace(path)  # a reader never sees half a report
    return paths


# ---- shared table content ----------------------------------------------------------------------

def _num(value: Optional[float], digits: int = 1) -> str:
    return "–" if value is None else "{:.{}f}".format(value, digits)


def summary_rows(document: Dict[str, Any]) -> List[List[str]]:
    """One line per variant at the first batch size: the table a customer signs off on."""
    batch = str(min(document["batches"]))
    reference_fps = None
    lines = []
    for row in document["rows"]:
        cell = row.get("batches", {}).get(batch)
        if row["status"] == "not available":  # a backend this machine lacks: the notes say so, no row
            continue
        if cell is None:  # one cell: the renderers span it over the row
            lines.append([row["label"], "{}: {}".format(row["status"], row.get("reason", ""))])
            continue
        if row["backend"] == "onnxruntime" and row["precision"] == "fp32":
            reference_fps = cell["fps"]
        acc = row.get("accuracy", {})
        gate = row.get("gate", {})
        verdict = "reference" if acc.get("reference") else (
            "passed" if gate.get("passed") else "REJECTED") + (" ({})".format(_num(gate.get("iou_agreement"), 4))
                                                             if gate.get("iou_agreement") is not None else "")
        speedup = "{:.2f}×".format(cell["fps"] / reference_fps) if reference_fps else "–"
        lines.append([row["label"], _num(cell["fps"]), speedup, _num(cell["latency_ms_p50"], 2),
                      _num(cell["latency_ms_p99"], 2), _num(row["memory"]["rss_added_mb"]),
                      "ref" if acc.get("reference") else _num(acc.get("mask_iou"), 4),
                      "ref" if acc.get("reference") else _num(acc.get("defect_count_agreement"), 3), verdict])
    return lines


SUMMARY_HEAD = ["variant", "frames/s", "vs FP32", "p50 ms", "p99 ms", "RSS added MB", "mask IoU vs FP32",
                "defect counts agree", "accuracy gate"]


def batch_rows(document: Dict[str, Any]) -> List[List[str]]:
    lines = []
    for row in document["rows"]:
        for batch, cell in sorted(row.get("batches", {}).items(), key=lambda item: int(item[0])):
            lines.append([row["label"], batch, _num(cell["fps"]), _num(cell["latency_ms_p50"], 2),
                          _num(cell["latency_ms_p95"], 2), _num(cell["latency_ms_p99"], 2), str(cell["calls"])])
    return lines


BATCH_HEAD = ["variant", "batch", "frames/s", "p50 ms", "p95 ms", "p99 ms", "calls"]


def resource_rows(document: Dict[str, Any]) -> List[List[str]]:
    lines = []
    for row in document["rows"]:
        if "memory" not in row:
            continue
        use, mem = row.get("utilisation", {}), row["memory"]
        lines.append([row["label"], "{} ({})".format(_num(row.get("prepare_s"), 1), row.get("cache", "")),
                      _num(mem["host_held_mb"]), _num(mem["device_held_mb"]), _num(mem["rss_added_mb"]),
                      _num(use.get("process_rss_mb")), _num(use.get("cpu_util_pct")), _num(use.get("process_cpu_pct")),
                      _num(use.get("gpu_util_pct")), gpu_memory_cell(use)])
    return lines


def gpu_memory_cell(use: Dict[str, Any]) -> str:
    """The GPU memory figure, labelled where it is RAM (a Jetson: counted once, inside RSS / RAM in use,
    never added to it); the report's notes name the source."""
    if "gpu_mem_process_mb" in use:
        return "{} (part of RSS)".format(_num(use["gpu_mem_process_mb"]))
    if "gpu_mem_shared_mb" in use:
        return "{} whole board (part of RAM)".format(_num(use["gpu_mem_shared_mb"]))
    return _num(use.get("gpu_mem_used_mb"))


RESOURCE_HEAD = ["variant", "prepare s (cache)", "host held MB", "device held MB", "RSS added MB", "peak RSS MB",
                 "CPU % (machine)", "CPU % (process)", "GPU %", "GPU mem MB"]


def accuracy_rows(document: Dict[str, Any]) -> List[List[str]]:
    lines = []
    for row in document["rows"]:
        acc = row.get("accuracy")
        if not acc or acc.get("reference"):
            continue
        per_class = ", ".join("{} {:.4f}".format(k, v) for k, v in acc["mask_iou_per_class"].items()) or "no defects"
        gate = row.get("gate", {})
        lines.append([row["label"], _num(acc["mask_iou"], 4), per_class, _num(acc["defect_count_agreement"], 3),
                      str(acc["defects_found"]), _num(gate.get("iou_agreement"), 4),
                      "passed" if gate.get("passed") else "rejected: " + str(gate.get("reason"))])
    return lines


ACCURACY_HEAD = ["variant", "mask IoU", "IoU per class", "defect counts agree", "defects found",
                 "gate IoU", "gate verdict"]


# ---- markdown ------------------------------------------------------------------------------------

def _md_table(head: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row + [""] * (len(head) - len(row))) + " |"
              for row in rows]
    return "\n".join(lines)


def markdown(document: Dict[str, Any]) -> str:
    parts = ["# {}".format(document["title"]), "",
             "{} on {} ({} cores), {}.".format(document["model"]["name"], document["machine"]["cpu"],
                                              document["machine"]["cpu_cores"], document["created"]), ""]
    parts += ["## Assumptions and notes", ""] + ["- " + line for line in document["assumptions"] + document["notes"]]
    parts += ["", "## Summary at batch {}".format(min(document["batches"])), "",
              _md_table(SUMMARY_HEAD, summary_rows(document)),
              "", "## Throughput and latency per batch size", "", _md_table(BATCH_HEAD, batch_rows(document)),
              "", "## Memory, build and utilisation", "", _md_table(RESOURCE_HEAD, resource_rows(document)),
              "", "## Accuracy against FP32", "", _md_table(ACCURACY_HEAD, accuracy_rows(document)), ""]
    if document.get("scaling"):
        parts += ["## " + scaling.title(document["scaling"]), "",
                  _md_table(scaling.HEAD, scaling.cells(document["scaling"])), ""]
    return "\n".join(parts)


# ---- html ----------------------------------------------------------------------------------------

def _html_table(head: List[str], rows: List[List[str]]) -> str:
    cells = "".join("<th class='l'>{}</th>".format(html.escape(h)) if i == 0 else "<th>{}</th>".format(html.escape(h))
                    for i, h in enumerate(head))
    body = []
    for row in rows:
        tds = []
        for i, cell in enumerate(row):
            css = "l" if i == 0 or not cell[:1].isdigit() else ""
            if cell.startswith("passed"):
                css += " pass"
            elif cell.startswith(("REJECTED", "rejected", "failed")):
                css += " fail"
            span = " colspan='{}'".format(len(head) - i) if i == len(row) - 1 and len(row) < len(head) else ""
            tds.append("<td class='{}'{}>{}</td>".format(css.strip(), span, html.escape(cell)))
        body.append("<tr>{}</tr>".format("".join(tds)))
    return "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>".format(cells, "".join(body))


def page(document: Dict[str, Any], charts: List[Chart]) -> str:
    machine, software, model = document["machine"], document["software"], document["model"]
    facts = [("model", "{} ({:.2f} MB, sha256 {})".format(model["name"], model["bytes"] / 2**20, model["sha256"][:16])),
             ("images", document["images"]), ("machine", "{}, {} cores, {} MB RAM, {}".format(
                 machine["cpu"], machine["cpu_cores"], machine["ram_mb"], machine["os"])),
             ("software", ", ".join("{} {}".format(k, v) for k, v in software.items() if v)),
             ("created", document["created"])]
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             "<title>{}</title><style>{}</style></head><body>".format(html.escape(document["title"]), CSS),
             "<h1>{}</h1>".format(html.escape(document["title"])),
             "<table>{}</table>".format("".join("<tr><th class='l'>{}</th><td class='l'>{}</td></tr>".format(
                 html.escape(k), html.escape(str(v))) for k, v in facts)),
             "<h2>Assumptions and notes</h2><ul>{}</ul>".format("".join(
                 "<li>{}</li>".format(html.escape(line)) for line in document["assumptions"] + document["notes"])),
             "<h2>Summary at batch {}</h2>".format(min(document["batches"])),
             _html_table(SUMMARY_HEAD, summary_rows(document))]
    if charts:
        parts.append("<h2>Charts</h2><div class='charts'>{}</div>".format("".join(
            "<div class='chart' id='chart-{}'><h3>{}</h3>{}</div>".format(c.key, html.escape(c.title), c.svg)
            for c in charts)))
    else:
        parts.append("<h2>Charts</h2><p class='note'>Charts were skipped: {}. Every figure is in the tables."
                     "</p>".format(html.escape(document.get("charts_skipped") or "")))
    parts += ["<h2>Throughput and latency per batch size</h2>", _html_table(BATCH_HEAD, batch_rows(document)),
              "<h2>Memory, build and utilisation</h2>", _html_table(RESOURCE_HEAD, resource_rows(document)),
              "<h2>Accuracy against FP32</h2>", _html_table(ACCURACY_HEAD, accuracy_rows(document))]
    if document.get("scaling"):
        parts += ["<h2 id='scaling'>{}</h2>".format(html.escape(scaling.title(document["scaling"]))),
                  _html_table(scaling.HEAD, scaling.cells(document["scaling"]))]
    parts.append("<p class='muted'>Generated by edge-agent {} (<code>edge-agent report</code>). Every figure is also "
                 "in report.json.</p></body></html>".format(html.escape(software["edge-agent"])))
    return "\n".join(parts)
