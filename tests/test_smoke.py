"""Smoke runs: every lesson and exercise master in the `gpu` and `cpu` profiles' code paths, on the CPU.

`COURSE_SMOKE=1` keeps each profile's data sets, models and branches but takes the tiny sizes of
`Profile.size(smoke=...)`; `COURSE_STANDINS` points the loaders at stand-ins in the real formats
(tests/standins.py), so nothing is downloaded. A cell that raises fails the test: only asserts about
learned effects (inside `P.claims()`) are reported instead of raised at this size.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import standins
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted(
    (ROOT / "solutions").glob("ex*.ipynb")
)


@pytest.fixture(scope="session")
def smoke_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a smoke run: stand-ins built once per test process, a private data cache."""
    base = tmp_path_factory.mktemp("smoke")
    return {
        "COURSE_SMOKE": "1",
        "COURSE_STANDINS": str(
            standins.build(base / "standins", pythia_steps=(1000, 53_000, 143_000))
        ),
        "COURSE_DATA": str(base / "cache"),  # never the user's cache (a smoke checkpoint there
        "HF_HUB_OFFLINE": "1",  # would be found by a real run)
        "OMP_NUM_THREADS": "1",
    }


def run_smoke(notebook: Path, profile: str, env: dict[str, str], mp: pytest.MonkeyPatch) -> None:
    """Execute `notebook` in a fresh kernel under a smoke run of `profile`."""
    for key, value in {**env, "COURSE_PROFILE": profile}.items():
        mp.setenv(key, value)  # the kernel inherits this process's environment
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": notebook.parent}}
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{notebook.name}, smoke run of the {profile} profile:\n{exc}", pytrace=False)


# One class per profile: pytest-xdist's loadscope sends each class to one worker, in parallel.
class TestSmokeGpu:
    @pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
    def test_notebook_runs(self, notebook: Path, smoke_env: dict[str, str], monkeypatch) -> None:
        run_smoke(notebook, "gpu", smoke_env, monkeypatch)


class TestSmokeCpu:
    @pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
    def test_notebook_runs(self, notebook: Path, smoke_env: dict[str, str], monkeypatch) -> None:
        run_smoke(notebook, "cpu", smoke_env, monkeypatch)
