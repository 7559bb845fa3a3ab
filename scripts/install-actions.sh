# Sourced by install.sh and uninstall.sh: how an action is announced, counted and (not) run.
# Needs DRY_RUN (0/1) and ROOT (a staging root, or empty for the real system).
CHANGES=0
say() { printf '%s\n' "$*"; }

# A change to the filesystem under the (staging) root: printed, counted, skipped in dry-run.
change() {
    CHANGES=$((CHANGES + 1))
    if [ "$DRY_RUN" = 1 ]; then say "  would run: $*"; return 0; fi
    say "  run: $*"
    "$@"
}

# A change to the running system (accounts, ownership, systemd): never run into a staging root.
system_change() {
    if [ -n "$ROOT" ]; then say "  not run (staging root): $*"; return 0; fi
    change "$@"
}
