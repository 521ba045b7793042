"""Tools around the pipeline: the `erl` command, dvc.yaml generation, the Prefect flow, audit, comparison and
benchmarks. No stage imports anything from here, so editing a tool never invalidates a DVC stage."""
