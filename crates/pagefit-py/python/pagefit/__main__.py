"""`python -m pagefit ...`: the `pagefit` command line."""

from . import main

main()
