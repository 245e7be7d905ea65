"""genrec: generative e-commerce search and recommendation.

One `Retriever` interface (`genrec.retrieval`) is shared by the generative model
and every baseline, so evaluation and serving never care which one they hold.
"""

from genrec.retrieval import Ranked, Request, Retriever

__all__ = ["Ranked", "Request", "Retriever"]
__version__ = "0.1.0"
