"""One module per DVC stage: parse --epoch, read tables, call the step's module in pipeline/erl/, write tables and
lineage. A stage started by `dvc repro` dies with dvc, arranged in its main (stagekit.parse), never at import."""
