"""The pipeline's stages, one module each, named after the stage; each reads its inputs from the run directory
and writes its artifact there atomically (docs/architecture.md). `runner.run_stages` chains them.

This file stays light (no Ray, torch or MLflow import): the CLI reads the stage names before parsing."""

STAGES = ("select", "enrich", "vectors", "tune", "evaluate", "transfer", "report")
