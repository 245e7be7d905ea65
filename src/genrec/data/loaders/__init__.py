"""Loaders that map public data sets into the canonical schema (`genrec.data.schema`).

Each returns a validated `Dataset` (`load_csv` reads your own CSV/Parquet exports); each keeps the real download code for users
with internet (`fetch_*`), while tests run on shipped fixtures or `shared/data`.
"""

from typing import Callable

from genrec.data.dataset import Dataset
from genrec.data.loaders.amazon2014 import load_amazon2014
from genrec.data.loaders.csv_files import load_csv
from genrec.data.loaders.esci import load_esci
from genrec.data.loaders.kuaisar import load_kuaisar
from genrec.data.loaders.kuaisearch import load_kuaisearch
from genrec.data.loaders.p5_amazon import load_p5_amazon
from genrec.data.loaders.recbole import load_recbole

LOADERS: dict[str, Callable[..., Dataset]] = {
    "p5-amazon": load_p5_amazon,
    "recbole": load_recbole,
    "kuaisar": load_kuaisar,
    "esci": load_esci,
    "kuaisearch": load_kuaisearch,
    "csv": load_csv,
}

__all__ = ["LOADERS", "load_amazon2014", "load_csv", "load_esci", "load_kuaisar", "load_kuaisearch", "load_p5_amazon", "load_recbole"]
