"""The benchmark suite behind `bench/run.py`: each figure is a function returning its value and
the reference it is compared with, measured in the same run (see `registry.py`)."""
