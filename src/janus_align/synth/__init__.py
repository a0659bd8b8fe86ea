"""Synthesis of the Multifaceted Collection (docs/data.md).

One module per stage, named as in dvc.yaml: `instructions`, `preferences`, `system_messages`,
`responses`, `assemble`; `estimate` is `janus estimate`. Shared parts: `filters` (instruction
filters), `prompts` (teacher prompts, schemas, template version), `teacher` (deterministic
requests, re-asks, rejects, stats), `rows` (the row models between stages), `splits` (released
schemas), `cards` (dataset cards), `synthesis_run` (the MLflow `synthesis` run); the file
names are in `janus_align.paths`.
"""
