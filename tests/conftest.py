"""Shared pytest fixtures."""

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test runs torch on one thread: CI has 2 shared cores, and a second
    spinning OpenMP thread made small models up to 10× slower there."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the generated world (owner: genrec.data.synth) ---
SMALL_WORLD_SIZE = dict(n_items=600, n_users=300, n_events=15_000, seed=7)


@pytest.fixture(scope="session")
def small_world():
    """A ~600-item, ~300-user, ~15k-event generated world (under a second); `.dataset`, `.truth`, `.save(path)`."""
    from genrec.data.synth import WorldConfig, generate_world

    return generate_world(WorldConfig(**SMALL_WORLD_SIZE))


@pytest.fixture
def small_sid_run(small_world, tmp_path):
    """A run folder holding the small world's data and block SIDs (item index → 10 × 8 × 8
    codes, no text model needed): what `train_generative` reads."""
    import numpy as np

    from genrec.sid.table import SidTable

    ids = small_world.dataset.items["item_id"].to_numpy()
    index = np.arange(len(ids))
    run = tmp_path / "run"
    small_world.save(run / "data")
    SidTable(ids, np.stack([index // 64, (index // 8) % 8, index % 8], axis=1), [10, 8, 8]).save(run / "sid")
    return run
