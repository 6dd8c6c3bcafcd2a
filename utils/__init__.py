"""ZenML-side helpers that are not steps (as in ZenML's e2e template): the Model Control Plane contract
(``model_versions``), the alert webhook resolved at run time (``alerting``), typed results of pipeline runs
(``pipeline_runs``)."""
