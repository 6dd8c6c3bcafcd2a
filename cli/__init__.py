"""The command line behind ``run.py``: run monthly cycles, schedule them, serve the production model, simulate."""
