"""The phantom must-shows run as pytest files, on demand (not in CI: each is one or more whole
induction studies of a phantom, tens of minutes to hours on 2 cores).

    python -m pytest -p no:cacheprovider benchmarks/phantom_must_shows -x -v
"""
