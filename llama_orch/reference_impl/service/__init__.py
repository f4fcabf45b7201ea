"""Glue between the HTTP layer and the pure core: task runs, event streams, pool state.

`api/` maps HTTP to calls on `Orchestrator` and imports nothing below this package;
`Orchestrator` asks `core.Scheduler` for decisions and carries them out on adapters through
`pool/`. It owns no scheduling policy. Modules: `orchestrator` (the service), `admission`
(checks the core cannot make), `build` (config -> core specs), `views` (the read models the
API serves), `records`, `streams` (each task's event log), `metrics` and `telemetry`, `logs`,
`types` and `startup` (what the API needs from config and pool, re-exported).
"""
