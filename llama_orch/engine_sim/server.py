"""Build and serve a simulator app for one engine protocol (`llorch engine-sim`)."""

from __future__ import annotations

import importlib

import falcon.asgi

from llama_orch.engine_sim.engine import SimConfig, SimEngine

PROTOCOLS = ("llamacpp", "vllm", "tgi", "triton")


def build_app(config: SimConfig) -> tuple[falcon.asgi.App, SimEngine]:
    """The protocol's ASGI app around a fresh SimEngine (returned too, for its stats)."""
    if config.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {config.protocol!r}; one of {', '.join(PROTOCOLS)}")
    module = importlib.import_module(f"llama_orch.engine_sim.{config.protocol}")
    engine = SimEngine(config)
    return module.create_app(engine), engine
