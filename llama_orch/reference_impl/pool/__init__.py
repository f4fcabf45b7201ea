"""Pool manager: pools from config, their replicas and adapters, preload, drain and reload.

Modules: `manager` (PoolManager, the lifecycle of every pool), `runtime` (per-pool faults,
heartbeats, restarts), `supervisor` (engine processes it launches), `backoff` (restart
pacing and circuit breaker, pure), `devices` (NVML discovery and placement), `catalog`
(model digests), `preflight` (the checks before a load), `factory` (adapters), `state`,
`requests` (the adapter contract types the service uses).
"""
