"""genrec: generative e-commerce search and recommendation.

One `Retriever` interface (`genrec.retrieval`) is shared by the generative model
and every baseline, so evaluation and serving never care which one they hold.
`genrec.load(folder)` opens a saved model (`genrec export`) for `.search` and
`.recommend`; it is imported on first use, so `import genrec` stays light.
"""

import importlib
from typing import Any

from genrec.retrieval import Ranked, Request, Retriever

__all__ = ["Ranked", "Request", "Retriever", "load"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "load":
        # Looked up by name on first use (PEP 562): genrec.portable needs pandas (torch to load), and it reaches
        # genrec.artifacts, which reads this package's __version__; a static import here would
        # make the package root and the model stack one import cycle.
        return importlib.import_module("genrec.portable.model").load
    raise AttributeError(f"module 'genrec' has no attribute {name!r}")
