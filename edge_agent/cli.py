"""`edge-agent` command line: dispatch of each command (the parser is `edge_agent.cli_parser`).

Errors a user can fix (EdgeAgentError) print one message and exit non-zero without a traceback;
anything else is a bug and keeps its traceback and a non-zero exit, so systemd sees the failure.
"""

import argparse
import faulthandler
import logging
import signal
import sys
import time
from typing import Any, Dict, List, Optional

from edge_agent import __version__
from edge_agent.cli_parser import build_parser
from edge_agent.errors import EdgeAgentError
from edge_agent.json_stdout import print_document, reserved_stdout

log = logging.getLogger("edge_agent")

def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    _setup_logging(args.log_level or "info")
    _stacks_on_sigusr1()
    try:
        if getattr(args, "json", False):
            with reserved_stdout():  # library chatter goes to stderr, the one document to stdout
                return int(command(args) or 0)
        return int(command(args) or 0)
    except EdgeAgentError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 141


def _stacks_on_sigusr1() -> None:
    """`kill -USR1 <pid>` prints every thread's stack to stderr: what a hung command waits on."""
    if not hasattr(signal, "SIGUSR1"):
        return
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (OSError, ValueError, RuntimeError):  # stderr is not a real file (captured, embedded)
        pass


def _setup_logging(level: str) -> None:
    from edge_agent.log_setup import setup_logging

    setup_logging(level)


def _load(path: Optional[str], overrides: Optional[Dict[str, Any]] = None) -> Any:
    from edge_agent.config_loader import load_config

    return load_config(path, overrides)


def cmd_demo(args: argparse.Namespace) -> int:
    from edge_agent.agent import running_pipeline
    from edge_agent.local_sinks import open_local_sinks
    from edge_agent.metrics import Registry
    from edge_agent.rollout.session import effective_config, rollout_session
    from edge_agent.signal_event import SignalSafeEvent
    from edge_agent.status import StatusLine, summary
    from edge_agent.telemetry import open_telemetry, pipeline_facts
    from edge_agent.telemetry.prometheus import open_prometheus
    from edge_agent.view.state import ViewState, pipeline_health

    base = _load(args.config, _merge(_mqtt_override(args.mqtt), _prometheus_override(args.prometheus),
                                     _view_override(args.view)))
    config = effective_config(base)
    registry = Registry()
    stop = SignalSafeEvent()  # set by the SIGTERM handler: a threading.Event could deadlock there
    holder: Dict[str, Any] = {}
    # SIGTERM (systemd, docker stop, kill) ends the demo like Ctrl-C and like `run`: the frame loop
    # finishes its batch and telemetry publishes "stopped", not the broker's "offline" Last Will.
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    exporter = open_prometheus(config, registry)
    local = open_local_sinks(config, registry, ViewState(registry, config.device.id, lambda: pipeline_health(
        holder.get("pipeline"), "running")))
    telemetry = None
    try:
        telemetry = open_telemetry(config, registry)
        with running_pipeline(config, registry, local.ordered(telemetry)) as pipeline, \
                rollout_session(base, config, pipeline, telemetry):
            holder["pipeline"] = pipeline
            if telemetry is not None:
                telemetry.update_facts(pipeline_facts(config, pipeline))
            started = time.monotonic()
            try:
                if args.json:
                    pipeline.run(stop, args.frames, args.duration)
                else:
                    with StatusLine(registry):
                        pipeline.run(stop, args.frames, args.duration)
            except KeyboardInterrupt:
                pass
            seconds = time.monotonic() - started
            result = summary(registry, seconds, pipeline.backend.name, pipeline.backend.model.precision)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if telemetry is not None:
            telemetry.close()
        local.close()
        if exporter is not None:
            exporter.close()
    if args.json:
        print_document(result)
    else:
        iou = "n/a" if result["mask_iou"] is None else "{:.3f}".format(result["mask_iou"])
        print("{frames} frames in {seconds:.1f} s: {fps:.1f} fps, latency p50 {latency_ms_p50:.1f} ms "
              "p99 {latency_ms_p99:.1f} ms, {defects} defects, mask IoU {iou}, RSS {rss_mb:.0f} MB "
              "({backend} {precision})".format(iou=iou, **result))
    return 0


def _mqtt_override(value: Optional[str]) -> Optional[Dict[str, Any]]:
    """`--mqtt HOST[:PORT]` (or `[IPv6]:PORT`) as config overrides."""
    if value is None:
        return None
    example = "e.g. --mqtt localhost, --mqtt 10.0.0.5:1883 or --mqtt [fd00::5]:1883"
    host, port = value, "1883"
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise EdgeAgentError("--mqtt {!r}: an IPv6 address goes in brackets, {}".format(value, example))
        port = rest[1:] if rest else port
    elif value.count(":") == 1:
        host, port = value.split(":")
    if not host:
        raise EdgeAgentError("--mqtt {!r}: give a broker host name, {}".format(value, example))
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise EdgeAgentError("--mqtt {!r}: the port {!r} is not a number from 1 to 65535, {}".format(
            value, port, example))
    return {"mqtt": {"enabled": True, "host": host, "port": int(port)}}


def _view_override(value: Optional[str]) -> Optional[Dict[str, Any]]:
    """`--view HOST:PORT` as a config override."""
    return None if value is None else {"view": {"listen": value}}


def _merge(*overrides: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    merged: Dict[str, Any] = {}
    for override in overrides:
        merged.update(override or {})
    return merged or None


def cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.service import run_daemon

    config = _load(args.config, _merge(_prometheus_override(args.prometheus), _view_override(args.view)))
    if args.log_level is None:
        _setup_logging(config.logging.level)
    return run_daemon(config, args.config)


def _prometheus_override(value: Optional[str]) -> Dict[str, Any]:
    return {"prometheus": {"listen": value}} if value else {}


def cmd_inspect(args: argparse.Namespace) -> int:
    from edge_agent.inspect_command import run_inspect

    return run_inspect(args)


def cmd_check(args: argparse.Namespace) -> int:
    from edge_agent.check import run_checks

    return run_checks(args.config, as_json=args.json)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.sources:
        return _bench_sources(args)
    from edge_agent.bench import run_bench

    result = run_bench(_load(args.config), args.frames, args.rounds)
    if args.json:
        print_document(result)
    else:
        print("backend only : {backend_fps:8.1f} fps (batch {batch}, {backend} {precision}; median of {rounds})\n"
              "end to end   : {pipeline_fps:8.1f} fps ({source}; median of {rounds})\n"
              "ratio        : {ratio:8.3f}  (end to end / backend only)".format(**result))
    return 0


def _bench_sources(args: argparse.Namespace) -> int:
    from edge_agent.bench_sources import format_report, run_source_bench

    if args.fps < 0:
        raise EdgeAgentError("--fps {:g}: give 0 (unpaced) or more".format(args.fps))
    result = run_source_bench(_load(args.config), args.sources, args.resolution, args.fps, args.seconds,
                              args.max_batch, progress=lambda text: log.info("bench: %s", text))
    if args.json:
        print_document(result)
    else:
        print(format_report(result))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge_agent.engine import prepare
    from edge_agent.engine.progress import ProgressPrinter
    from edge_agent.modelcheck import verify
    from edge_agent.quickstart import config_for_model

    assumptions: List[str] = []
    if args.model:
        config, assumptions = config_for_model(Path(args.model), args.config)
        for line in assumptions:
            log.info("assumed: %s", line)
    else:
        config = _load(args.config)
    verify(config.model)
    with ProgressPrinter(sys.stderr) as progress:
        report = prepare(config, progress, force=args.force, precision=args.precision)
    if args.json:
        print_document(dict(report.as_dict(), assumptions=assumptions))
    else:
        print("\n".join(["assumed: " + line for line in assumptions] + [report.text()]))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from edge_agent.report.command import run_report_command

    return run_report_command(args)


def cmd_selftest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge_agent.selftest import format_table, run_selftest, write_report

    report = run_selftest(args.config, args.frames, args.iterations, args.iou_floor, args.require_gpu)
    if args.report:
        write_report(report, Path(args.report))
    if args.json:
        print_document(report)
    else:
        print(format_table(report))
    return 0 if report["ok"] else 1


def cmd_deploy(args: argparse.Namespace) -> int:
    from edge_agent.rollout.deploy_command import run_deploy

    return run_deploy(_load(args.config), args.model, args.sha256, args.size, args.rollout_id, args.name,
                      args.precision, args.signature, wait=not args.no_wait, timeout_s=args.timeout,
                      as_json=args.json)


def cmd_status(args: argparse.Namespace) -> int:
    from edge_agent.rollout.status_command import show_status

    return show_status(_load(args.config), as_json=args.json)


def cmd_version(args: argparse.Namespace) -> int:
    print("edge-agent " + __version__)
    return 0


COMMANDS = {"demo": cmd_demo, "run": cmd_run, "inspect": cmd_inspect, "check": cmd_check, "bench": cmd_bench,
            "build": cmd_build, "selftest": cmd_selftest, "report": cmd_report, "deploy": cmd_deploy,
            "status": cmd_status, "version": cmd_version}


if __name__ == "__main__":
    sys.exit(main())
