"""Shared pytest fixtures."""

import pytest


# --- the generated world (owner: genrec.data.synth) ---
SMALL_WORLD_SIZE = dict(n_items=600, n_users=300, n_events=15_000, seed=7)


@pytest.fixture(scope="session")
def small_world():
    """A ~600-item, ~300-user, ~15k-event generated world (under a second); `.dataset`, `.truth`, `.save(path)`."""
    from genrec.data.synth import WorldConfig, generate_world

    return generate_world(WorldConfig(**SMALL_WORLD_SIZE))
