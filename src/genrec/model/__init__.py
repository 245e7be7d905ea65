"""The generative retriever's model, built from parts.

    config.py      GenerativeConfig (hyper-parameters) and InputSpec (what the data gives)
    batches.py     EncoderBatch, SequenceBatch, DecoderState
    inputs.py      RequestEncoder: requests → EncoderBatch
    embedding.py   InputEmbedding: every input table, the parts of a request
    encoder.py     TransformerEncoder: the full and the causal view
    summary.py     Summary: per-part means → one vector for every decoder input
    copy_bias.py   CopyBias: a pointer to the newest items' leaves for recommendation
    decoder.py     SidDecoder: one SID level per step
    item_head.py   ItemHead: a catalogue softmax from the summary that re-ranks the beams (opt-in)
    query_former.py, moe.py, user_ids.py, action_fusion.py
                   opt-in backbone parts: a long history as a few tokens, a sparse-MoE feed-forward,
                   behaviour-derived user IDs, per-action sequences fused by cross-attention
    diffusion_interest.py, thoughts.py, self_distill.py
                   opt-in search-path parts: DiffusionGS's query-anchored interest token; a query's
                   thought and the self-distillation of a thought-reading teacher into the raw-query student
    layers.py      attention and blocks
    model.py       GenerativeModel: the parts wired; losses; the beam-search protocol
    checkpoint.py  a trained folder → model (with the migration of older saves)
    retriever.py   GenerativeRetriever: requests in, items out
    inference.py   FastDecoder: a decode-only copy for serving (fp32, same items; or bf16, faster)
"""

from genrec.model.batches import DecoderState, EncoderBatch, SequenceBatch
from genrec.model.config import GenerativeConfig, InputSpec, load_model_config
from genrec.model.model import GenerativeModel

__all__ = ["DecoderState", "EncoderBatch", "GenerativeConfig", "GenerativeModel", "InputSpec", "SequenceBatch",
           "load_model_config"]
