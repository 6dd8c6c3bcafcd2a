"""ZenML-side helpers that are not steps (as in ZenML's e2e template): the Model Control Plane contract."""
