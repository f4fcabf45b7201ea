"""Glue between the HTTP layer and the pure core: task runs, event streams, pool state.

`api/` maps HTTP to calls on `Orchestrator`; `Orchestrator` asks `core.Scheduler` for
decisions and carries them out on adapters through `pool/`. It owns no scheduling policy.
"""
