"""The dataset layer: one schema for every source, validation at the door, splits."""

from genrec.data.dataset import Dataset, DatasetError
from genrec.data.splits import Split, build_requests, interactions, leave_one_out, temporal_split

__all__ = ["Dataset", "DatasetError", "Split", "build_requests", "interactions", "leave_one_out", "temporal_split"]
