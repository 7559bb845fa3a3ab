"""Model rollouts: desired state in, the new model built and gated beside the serving one, swapped in
between two batches, or rejected / rolled back; see docs/fleet.md.

Modules: `config` (the `rollout:` section), `request` (the desired-state payload), `download`,
`signature`, `candidate` (build and gate, in the build child), `watch` (recent frames, the build's
fps bound, the new model's outputs), `store` (what the board remembers), `controller` (the
rollout thread), `session` (wiring into `run`/`demo`), `deploy_command` / `status_command` (CLI).
"""
