#!/usr/bin/env bash
# Removes the edge-agent service and its software. Keeps the config (/etc/edge-agent), the
# outbox (/var/lib/edge-agent), the engine cache (/var/cache/edge-agent) and the user unless --purge.
set -eu

usage() {
    cat <<'EOF_USAGE'
Usage: sudo scripts/uninstall.sh [--purge] [--dry-run] [--root DIR]

Stops and disables edge-agent.service, removes the unit, /opt/edge-agent and the edge-agent command.
  --purge     also delete /etc/edge-agent, /var/lib/edge-agent (unsent telemetry!),
              /var/cache/edge-agent and the edge-agent user
  --dry-run   print every action without doing it
  --root DIR  act on the staging root DIR (systemctl and userdel are printed, not run)
EOF_USAGE
}

DRY_RUN=0
ROOT=""
PURGE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --purge) PURGE=1 ;;
        --dry-run) DRY_RUN=1 ;;
        --root) ROOT="${2:?--root needs a directory}"; ROOT="${ROOT%/}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "uninstall.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$ROOT" ] && [ "$DRY_RUN" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "uninstall.sh: run as root (sudo), or use --dry-run" >&2
    exit 1
fi

. "$(cd "$(dirname "$0")" && pwd)/install-actions.sh"
remove() {
    if [ -e "$ROOT$1" ] || [ -L "$ROOT$1" ]; then change rm -rf "$ROOT$1"; else say "  ok: $1 already absent"; fi
}

if [ -n "$ROOT" ] || systemctl cat edge-agent >/dev/null 2>&1; then
    system_change systemctl disable --now edge-agent
fi
remove /etc/systemd/system/edge-agent.service
remove /etc/systemd/system/edge-agent.service.d
system_change systemctl daemon-reload
remove /usr/local/bin/edge-agent
remove /opt/edge-agent
if [ "$PURGE" = 1 ]; then
    remove /etc/edge-agent
    remove /var/lib/edge-agent
    remove /var/cache/edge-agent
    if [ -n "$ROOT" ] || getent passwd edge-agent >/dev/null 2>&1; then
        system_change userdel edge-agent
    fi
else
    say "  kept: /etc/edge-agent (config), /var/lib/edge-agent (outbox), /var/cache/edge-agent (engines);"
    say "        run with --purge to delete them too"
fi
