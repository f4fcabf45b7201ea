"""llama-orch: a compliance harness for LLM-inference orchestrators, and a reference that passes it.

Subpackages: `harness` (judges any OrchQueue v1 target over HTTP), `reference_impl` (the
reference orchestrator), `engine_sim` (protocol-faithful engine simulators both sides use),
`determinism_suite`, `spec_extract` and `cli` (the `llorch` command).
"""
