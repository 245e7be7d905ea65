"""Serving: an HTTP API and a web page over any `Retriever` (`genrec serve RUN`).

`create_app` builds the FastAPI application; `load_served_model` turns a run
folder into the catalog, the user histories and the retrievers it serves.
"""

from genrec.serve.app import create_app
from genrec.serve.model import ServedModel, load_served_model, served_split

__all__ = ["ServedModel", "create_app", "load_served_model", "served_split"]
