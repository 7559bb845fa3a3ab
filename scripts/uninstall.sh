#!/usr/bin/env bash
# Removes the edge-agent service and its software. Keeps the config (/etc/edge-agent), the
# outbox (/var/lib/edge-agent), the engine cache (/var/cache/edge-agent), the user and the site's
# own unit overrides (`systemctl edit edge-agent`) unless --purge.
set -eu

usage() {
    cat <<'EOF_USAGE'
Usage: sudo scripts/uninstall.sh [--purge [--yes]] [--dry-run] [--root DIR]

Stops and disables edge-agent.service, removes the unit, the drop-ins install.sh wrote, /opt/edge-agent
and the edge-agent command. Keeps /etc/edge-agent, /var/lib/edge-agent, /var/cache/edge-agent, the
edge-agent user and your own overrides (edge-agent.service.d/override.conf from `systemctl edit`).
  --purge     also delete those: first shows what would be lost (unsent telemetry in the outbox,
              cached engines) and asks
  --yes       with --purge: do not ask (for scripts)
  --dry-run   print every action without doing it
  --root DIR  act on the staging root DIR (systemctl and userdel are printed, not run)
EOF_USAGE
}

DRY_RUN=0
ROOT=""
PURGE=0
YES=0
while [ $# -gt 0 ]; do
    case "$1" in
        --purge) PURGE=1 ;;
        --yes) YES=1 ;;
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
SYSTEMD=0
if [ -n "$ROOT" ] || [ -d /run/systemd/system ]; then SYSTEMD=1; fi
DROPINS=/etc/systemd/system/edge-agent.service.d

if [ "$PURGE" = 1 ]; then
    # what --purge would lose, counted before anything is stopped or deleted
    OUTBOX="$ROOT/var/lib/edge-agent/outbox.sqlite"
    UNSENT="none"
    if [ -f "$OUTBOX" ]; then
        UNSENT="$( (command -v sqlite3 >/dev/null 2>&1 && sqlite3 "file:$OUTBOX?mode=ro" 'SELECT COUNT(*) FROM outbox' 2>/dev/null) \
                   || python3 -c 'import sqlite3,sys; print(sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True).execute("SELECT COUNT(*) FROM outbox").fetchone()[0])' "$OUTBOX" 2>/dev/null \
                   || echo "an unknown number of")"
    fi
    ENGINES=0
    if [ -d "$ROOT/var/cache/edge-agent" ]; then
        # one manifest (.json) beside each cached engine
        ENGINES="$(find "$ROOT/var/cache/edge-agent" -type f -name '*.json' | wc -l)"
    fi
    say "--purge deletes, beyond the software:"
    say "  /etc/edge-agent (the config) and your unit overrides in $DROPINS"
    say "  /var/lib/edge-agent: $UNSENT unsent telemetry message(s) in the outbox"
    say "  /var/cache/edge-agent: $ENGINES cached engine(s) (rebuilt at the next install, minutes each)"
    say "  the edge-agent user"
    if [ "$YES" = 0 ] && [ "$DRY_RUN" = 0 ]; then
        if [ ! -t 0 ]; then
            echo "uninstall.sh: --purge asks before deleting; not on a terminal, so pass --yes to confirm. Nothing was changed." >&2
            exit 1
        fi
        printf 'Delete all of this? [y/N] '
        read -r answer
        case "$answer" in y|Y|yes|YES) ;; *) say "nothing was changed"; exit 1 ;; esac
    fi
fi

if [ -n "$ROOT" ] || systemctl cat edge-agent >/dev/null 2>&1; then
    system_change systemctl disable --now edge-agent
fi
remove /etc/systemd/system/edge-agent.service
# the drop-ins install.sh wrote; the site's own overrides stay (unless --purge)
for name in groups.conf jtop.conf memory.conf restart.conf; do remove "$DROPINS/$name"; done
if [ "$PURGE" = 1 ]; then
    remove "$DROPINS"
elif [ -d "$ROOT$DROPINS" ] && [ -z "$(ls -A "$ROOT$DROPINS" 2>/dev/null)" ]; then
    change rmdir "$ROOT$DROPINS"
elif [ -d "$ROOT$DROPINS" ]; then
    say "  kept: $DROPINS (your overrides: $(ls "$ROOT$DROPINS" | paste -sd ' ' -))"
fi
if [ "$SYSTEMD" = 1 ]; then
    system_change systemctl daemon-reload
else
    say "  systemd is not running here: nothing to reload"
fi
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
