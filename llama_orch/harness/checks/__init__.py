"""The harness's check suite, run against a target by `llorch check` or `pytest --pyargs`.

Each check names the requirement IDs it proves (`@pytest.mark.req` or a Gherkin tag) and
speaks HTTP only, through `harness.client.OrchClient` (the `orch` fixture).
"""
