"""Steps of the suggest pipeline: the open month matched by the production model, written back."""
