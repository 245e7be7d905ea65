"""A trained generative retriever as a folder anyone can load: no run folder, no pickles.

    folder.py    save_pretrained / from_pretrained / export_run: the folder's files and the model card
    model.py     PretrainedModel (what `genrec.load` returns): .search and .recommend in your own ids
    commands.py  `genrec export --run RUN --out FOLDER`

The folder:

    model.safetensors   the weights (safetensors: loading runs no code, unlike a pickle)
    config.json         the run's training config and the input spec (usable as `genrec train --config`)
    encoder.json        the query vocabulary and the users' profile tokens
    sid/sids.parquet    each item's Semantic ID (the decoder's trie is built from it)
    keywords.npz        the items' BM25 keyword index (when the model weighs a search's keywords)
    catalog.parquet     item id → original id and title (when the catalog was given)
    users.parquet       user id → original id (when the users were given)
    README.md           the model card: data, validation metrics, the command that made it
    training_manifest.json  the training run's record (when exported from a run)
"""

from genrec.portable.folder import export_run, from_pretrained, save_pretrained
from genrec.portable.model import Hit, PretrainedModel, load

__all__ = ["Hit", "PretrainedModel", "export_run", "from_pretrained", "load", "save_pretrained"]
