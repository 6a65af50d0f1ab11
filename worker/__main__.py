"""`python -m worker` is `voicelive-worker`."""

from worker.cli import main

main()
