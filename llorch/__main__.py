"""`python -m llorch` runs the same CLI as the `llorch` console script."""

from llorch.cli import main

main()
