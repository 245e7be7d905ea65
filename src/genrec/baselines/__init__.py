"""Baseline retrievers a generative model must beat, each a `genrec.retrieval.Retriever`.

Built by name through `genrec.registry`; each `from_run` fits on `split.train` only.
"""
