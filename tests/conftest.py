"""Shared test set-up. Without a GPU, Triton kernels run in the interpreter; the variable
must be set before any kernel module is imported, so it is set here, first."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def postgres_url():
    """URL (with its password) of a throwaway PostgreSQL server started for this session."""
    from pg_cluster import postgres_bin, throwaway_postgres
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    with throwaway_postgres() as (url, _):
        yield url
