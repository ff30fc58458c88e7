"""Starter partitions of the concept pack, one JSON file per task."""
