"""Checkpoints: the format (file names, manifest), saving, loading, and resharding to
another layout. See format.py for the files on disk."""
from megamed.checkpoint.format import CheckpointError, optimizer_layout
from megamed.checkpoint.load import load
from megamed.checkpoint.reshard import reshard
from megamed.checkpoint.save import save

__all__ = ["CheckpointError", "load", "optimizer_layout", "reshard", "save"]
