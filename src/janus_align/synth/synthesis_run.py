"""The MLflow run named `synthesis`: a child of the pipeline's parent run that gathers what the
synthesis stages produced (counts, tokens, cost, the splits as dataset inputs, the cards).

`assemble` fills it; `validate` can reopen it to attach the Data Docs:

    with synthesis_run(params):
        mlflow.log_artifacts(str(paths.DATA_DOCS), artifact_path="data_docs")

The CLI has already opened the stage's own child run, and MLflow nests a new run only under
the active one, so the synthesis run is created with the pipeline run as its parent tag and
then entered by id. One synthesis run per pipeline run: it is looked up by its tags first.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from janus_align import tracking
from janus_align.config import Params

RUN_NAME = "synthesis"
_PARENT_TAG = "mlflow.parentRunId"


@contextlib.contextmanager
def synthesis_run(params: Params) -> Iterator[Any]:
    """Enter the pipeline's synthesis run (created on first use)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    active = mlflow.active_run()
    if active is None:  # called outside the CLI: a stage run of its own, under a fresh parent
        with tracking.stage_run(RUN_NAME, params) as run:
            yield run
        return
    client = MlflowClient()
    parent = client.get_run(active.info.run_id).data.tags.get(_PARENT_TAG, active.info.run_id)
    pipeline_id = os.environ.get(tracking.PIPELINE_ENV, "")
    found = client.search_runs(
        [active.info.experiment_id],
        filter_string=f"tags.stage = '{RUN_NAME}' and tags.pipeline_id = '{pipeline_id}' and tags.`{_PARENT_TAG}` = '{parent}'",
        max_results=1,
    )
    created = not found
    if found:
        run_id = found[0].info.run_id
    else:
        tags = {_PARENT_TAG: parent, **tracking.run_tags(RUN_NAME, params)}
        run_id = client.create_run(active.info.experiment_id, run_name=RUN_NAME, tags=tags).info.run_id
    with mlflow.start_run(run_id=run_id, nested=True) as run:
        if created:
            mlflow.log_params(
                tracking.stage_params(params, "assemble")
            )  # seed, teacher, synth: every synthesis stage's
        yield run
