"""`python -m llama_orch.cli` runs the same CLI as the `llorch` console script."""

from llama_orch.cli.main import main

main()
