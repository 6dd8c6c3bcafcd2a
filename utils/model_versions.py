"""Find the production model version in the Model Control Plane."""

from zenml.client import Client


def production_version(model_name: str):
    try:
        return Client().get_model_version(model_name, "production")
    except KeyError:
        return None
