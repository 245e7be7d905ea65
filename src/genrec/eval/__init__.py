"""Evaluation: one harness for every `Retriever`, the same split, the same metrics."""
