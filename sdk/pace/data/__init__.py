"""Data shipped with the SDK: the starter concept pack, its partitions and evaluation sets.

Read the files with :mod:`importlib.resources`, e.g.
``importlib.resources.files("pace.data").joinpath("starter_pack.jsonl")``.
"""
