"""Idle OpenMP threads sleep: ``import models`` before torch sets ``OMP_WAIT_POLICY=PASSIVE``
(spinning threads take the CPU other processes wait for), unless the user set it."""

import os
import subprocess
import sys

CODE = "import os, models, torch; print(os.environ['OMP_WAIT_POLICY'])"


def policy_in_fresh_process(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    done = subprocess.run([sys.executable, "-c", CODE], env=environ, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


def test_import_models_makes_idle_threads_sleep():
    assert policy_in_fresh_process() == "PASSIVE"


def test_the_users_policy_is_kept():
    assert policy_in_fresh_process(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
