"""Markers given by what a test does, so ``make test-fast`` (``-m "not slow and not integration"``)
runs unit tests only. ``integration``: the test starts a Jupyter kernel (papermill, nbval), a
runner or worker process, a daemon or a git clone. ``slow`` is also given here to the few unit
tests that each take several seconds of CPU (real training steps of a VGG, long Monte Carlo
estimates): ``make test`` runs them, ``make test-fast`` leaves them out to stay under 2 minutes."""
from __future__ import annotations

import pytest

#: Whole files whose every test starts kernels, worker processes or daemons.
_INTEGRATION_FILES = {"test_notebooks.py", "test_book_notebooks.py", "test_book.py"}
#: Fixtures that execute a notebook (or a grid of them) once for the tests that use them.
_INTEGRATION_FIXTURES = {"ran_grid", "cell"}
#: Single tests that start a kernel or clone the repository.
_INTEGRATION_TESTS = {"test_prune_again_notebook_runs_a_pass", "test_slim_hides_the_kept_files_and_unslim_brings_them_back",
                      "test_two_local_workers_give_the_sequential_tables", "test_slurm_array_job_runs_the_grid"}


#: Unit tests of 3.5 s or more on one core (pytest --durations, 2026-12-03): slow, not integration.
_HEAVY_UNIT_TESTS = {"test_shared_noise_variance_does_not_average_away", "test_gpu_need_counts_the_published_protocol",
                     "test_sweep_table", "test_gradient_mean_is_gradient_of_expected_objective",
                     "test_bf16_fit_learns_keeps_fp32_weights_and_is_reproducible",
                     "test_matched_noise_reads_retention_against_bridgeout_with_its_interval",
                     "test_prune_never_modifies_input", "test_seeded_runs_are_bit_identical",
                     "test_resume_after_crash_is_exact"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.originalname in _HEAVY_UNIT_TESTS:
            item.add_marker(pytest.mark.slow)
        if (item.path.name in _INTEGRATION_FILES or _INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ()))
                or item.originalname in _INTEGRATION_TESTS):
            item.add_marker(pytest.mark.integration)
