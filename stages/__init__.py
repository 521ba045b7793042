"""One module per DVC stage: parse --epoch, read tables, call the step's module in pipeline/erl/, write tables and lineage.

A stage process dies with the dvc process that started it, from its first instant: arranged here, before the
seconds of imports in which a killed dvc could otherwise leave it running beside the next one."""

from pipeline.guard import die_with_parent

die_with_parent()
