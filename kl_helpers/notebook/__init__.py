"""What only the notebooks need: their set-up cell and their claims.

- ``setup``: the set-up cell, the Colab install, the runtime each notebook starts with
- ``claims``: which run a notebook's measured claims belong to (06-12)
- ``tables``: tables rounded so that a re-run prints the same text (05, 07-11)
"""
