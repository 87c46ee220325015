"""``python -m ridecodec.cli`` is the ``ridecodec`` command."""

from . import main

main()
