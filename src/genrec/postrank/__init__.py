"""Post-rankers that re-order any retriever's answer: the cascade's or the generative model's.

* `llm4pr` — LLM4PR: a language model (the shipped MiniLM) reads each (request
  text, item title) pair together with the ranker's features as soft tokens, and
  re-orders the top of the list.

The cascade's own page policies (MMR, the AIGC exposure cap) live in
`genrec.cascade.rerank`; this package is outside `genrec.cascade` so that
adding a post-ranker never invalidates a trained cascade (its code fingerprint
covers that package).
"""
