"""Markers given by what a test does, so ``make test-fast`` (``-m "not slow and not integration"``)
runs unit tests only. ``integration``: the test starts a Jupyter kernel (papermill, nbval), a
runner or worker process, a daemon or a git clone."""
from __future__ import annotations

import pytest

#: Whole files whose every test starts kernels, worker processes or daemons.
_INTEGRATION_FILES = {"test_notebooks.py", "test_book_notebooks.py", "test_book.py"}
#: Fixtures that execute a notebook (or a grid of them) once for the tests that use them.
_INTEGRATION_FIXTURES = {"ran_grid", "cell"}
#: Single tests that start a kernel or clone the repository.
_INTEGRATION_TESTS = {"test_prune_again_notebook_runs_a_pass", "test_slim_hides_the_kept_files_and_unslim_brings_them_back",
                      "test_two_local_workers_give_the_sequential_tables", "test_slurm_array_job_runs_the_grid"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if (item.path.name in _INTEGRATION_FILES or _INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ()))
                or item.originalname in _INTEGRATION_TESTS):
            item.add_marker(pytest.mark.integration)
