"""A pipeline stage (`genrec run`, `genrec demo`) is reused only when it was made with today's config and inputs."""

import json

from genrec.artifacts import folder_sha256, manifest, write_json_atomic
from genrec.pipeline.run import _complete


def test_a_stage_is_reused_only_with_the_same_config_and_unchanged_inputs(tmp_path):
    source = tmp_path / "sid"
    source.mkdir()
    (source / "sids.parquet").write_bytes(b"v1")
    stage = tmp_path / "model"
    assert not _complete(stage)  # no manifest yet: never reused
    stage.mkdir()
    write_json_atomic(stage / "manifest.json", manifest({"levels": 1, "prefix": ["category", "brand"]},
                                                         inputs={"sid": folder_sha256(source)}))
    assert _complete(stage, {"levels": 1, "prefix": ("category", "brand")}, {"sid": source})
    assert not _complete(stage, {"levels": 3}, {"sid": source})  # made with another config
    (source / "sids.parquet").write_bytes(b"v2")
    assert not _complete(stage, {"levels": 1}, {"sid": source})  # its SIDs changed since
    assert json.loads((stage / "manifest.json").read_text())["config"]["levels"] == 1
