"""One module per DVC stage: parse --epoch, read tables, call pipeline/erl.py, write tables and lineage."""
