"""Data parallelism on gloo (CPU): global negatives, DDP training, resume, and the torchrun CLI.

Reference for the loss: the single-process loss of the concatenated global batch and its autograd
gradients, computed in this process. Each check starts W real processes joined by a gloo process
group. Tolerances: float32, the same sums in another order (1e-6 absolute, 1e-5 relative).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from course_utils import distributed
from course_utils.data import load_images
from course_utils.losses import nt_xent
from course_utils.train import SimCLRConfig, train_simclr

ROOT = Path(__file__).resolve().parent.parent
# fork: the ranks start in milliseconds instead of importing torch again (spawn elsewhere)
START_METHOD = "fork" if sys.platform == "linux" else "spawn"

N, D_IN, D, TAU = 4, 6, 5, 0.3  # per-rank batch, input and embedding sizes, temperature
TOL = {"rtol": 1e-5, "atol": 1e-6}


def _global_batch(world: int) -> tuple[torch.Tensor, torch.Tensor, nn.Linear]:
    """Inputs of both views for all ranks (world * N rows each) and the encoder, from fixed seeds."""
    g = torch.Generator().manual_seed(world)
    x1, x2 = torch.randn(world * N, D_IN, generator=g), torch.randn(world * N, D_IN, generator=g)
    torch.manual_seed(0)
    return x1, x2, nn.Linear(D_IN, D)


def _worker(rank: int, world: int, store: str, out: str) -> None:
    """One rank: embeddings and a DDP encoder on this rank's slice, loss with gather=True."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        x1, x2, encoder = _global_batch(world)
        mine = slice(rank * N, (rank + 1) * N)
        ddp = nn.parallel.DistributedDataParallel(encoder)
        results = {}
        for chunk in (None, 3):
            z1 = x1[mine].clone().requires_grad_()  # embeddings as leaves: their gradients
            z2 = x2[mine].clone().requires_grad_()
            loss = nt_xent(z1, z2, temperature=TAU, chunk_size=chunk, gather=True)
            loss.backward()
            ddp.zero_grad()
            param_loss = nt_xent(
                ddp(x1[mine]), ddp(x2[mine]), temperature=TAU, chunk_size=chunk, gather=True
            )
            param_loss.backward()  # DDP averages the parameter gradients over ranks
            results[chunk] = {
                "loss": loss.detach(),
                "z1": z1.grad,
                "z2": z2.grad,
                "params": [p.grad.clone() for p in encoder.parameters()],
            }
        torch.save(results, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module", params=[2, 3], ids=["2 processes", "3 processes"])
def ranks(request, tmp_path_factory) -> tuple[int, list[dict]]:
    world = request.param
    folder = tmp_path_factory.mktemp(f"world{world}")
    args = (world, str(folder / "store"), str(folder))
    mp.start_processes(_worker, args=args, nprocs=world, start_method=START_METHOD)
    return world, [torch.load(folder / f"rank{r}.pt") for r in range(world)]


@pytest.mark.parametrize("chunk", [None, 3], ids=["dense", "tiled"])
def test_gathered_loss_and_gradients_equal_the_single_process_batch(ranks, chunk) -> None:
    world, results = ranks
    x1, x2, encoder = _global_batch(world)
    z1, z2 = x1.clone().requires_grad_(), x2.clone().requires_grad_()
    ref = nt_xent(z1, z2, temperature=TAU, chunk_size=chunk)
    ref.backward()
    got = [r[chunk] for r in results]
    # the mean over ranks of each rank's loss (its 2N anchors against all 2WN views)
    torch.testing.assert_close(torch.stack([g["loss"] for g in got]).mean(), ref.detach(), **TOL)
    for r, g in enumerate(got):
        mine = slice(r * N, (r + 1) * N)
        # A rank's gradient is that of the SUM of all ranks' losses; DDP's averaging divides by W.
        torch.testing.assert_close(g["z1"] / world, z1.grad[mine], **TOL)
        torch.testing.assert_close(g["z2"] / world, z2.grad[mine], **TOL)
    param_ref = torch.autograd.grad(
        nt_xent(encoder(x1), encoder(x2), temperature=TAU, chunk_size=chunk),
        list(encoder.parameters()),
    )
    for g in got:  # every rank holds the same averaged gradient: the single-process one
        for p, want in zip(g["params"], param_ref, strict=True):
            torch.testing.assert_close(p, want, **TOL)


def test_gathered_loss_differs_from_local_negatives(ranks) -> None:
    """The check above can fail: with only local negatives the loss is a different number."""
    world, results = ranks
    x1, x2, _ = _global_batch(world)
    local = torch.stack(
        [
            nt_xent(x1[r * N : (r + 1) * N], x2[r * N : (r + 1) * N], temperature=TAU)
            for r in range(world)
        ]
    ).mean()
    gathered = torch.stack([r[None]["loss"] for r in results]).mean()
    assert (gathered - local).abs() > 0.1  # log of ~W times more negatives


def test_helpers_without_a_process_group() -> None:
    t = torch.randn(3, 2, requires_grad=True)
    assert distributed.all_gather_with_grad(t) is t
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.mean_over_ranks(t) is t
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        distributed.all_gather_with_grad([1.0])
    with pytest.raises(TypeError, match="gather must be a bool"):
        nt_xent(t, t + 1, gather=1)


def test_setup_without_torchrun_is_one_process(monkeypatch) -> None:
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    distributed.setup()
    assert not distributed.is_initialized()
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="not WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT"):
        distributed.setup()


# ---- training: DDP on two gloo processes ----------------------------------------------------------


def _train_config(**overrides) -> SimCLRConfig:
    kwargs = dict(
        epochs=2, batch_size=16, lr=0.3, warmup_epochs=1.0, width=4, proj_hidden=16, proj_dim=8,
        crop_scale=(0.5, 1.0), knn_k=10, progress=False,
    )  # fmt: skip
    return SimCLRConfig(**(kwargs | overrides))


class Disconnect(Exception):
    """Stands for a lost job after an epoch."""


def _train_worker(rank: int, store: str, out: str) -> None:
    """Rank `rank` of 2: a full run, an interrupted one, its resume, and sync_bn on the CPU."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        images, labels = load_images("digits", "train")
        images, labels = images[:128], labels[:128]
        monitor = (images, labels, images[:32], labels[:32])
        full = train_simclr(_train_config(checkpoint=f"{out}/a.pt"), images, monitor=monitor)

        def disconnect(history) -> None:
            raise Disconnect

        config = _train_config(checkpoint=f"{out}/b.pt")
        try:
            train_simclr(config, images, monitor=monitor, on_epoch=disconnect)
        except Disconnect:
            pass
        resumed = train_simclr(config, images, monitor=monitor)
        try:
            train_simclr(_train_config(sync_bn=True), images)
            sync_bn_error = ""
        except ValueError as error:
            sync_bn_error = str(error)
        result = {
            "full": full.history,
            "resumed": resumed.history,
            "full_state": full.model.state_dict(),
            "resumed_state": resumed.model.state_dict(),
            "augment_rng": resumed.augment.generator.get_state(),
            "sync_bn_error": sync_bn_error,
        }
        torch.save(result, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_process_training_resumes_every_rank(tmp_path) -> None:
    args = (str(tmp_path / "store"), str(tmp_path))
    mp.start_processes(_train_worker, args=args, nprocs=2, start_method=START_METHOD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for r in ranks:
        assert [row["epoch"] for row in r["resumed"]] == [1, 2]
        for key in ("loss", "lr"):  # bitwise: every rank restored its model, optimizer and RNGs
            assert [row[key] for row in r["resumed"]] == [row[key] for row in r["full"]]
        for name, a in r["full_state"].items():
            assert torch.equal(a, r["resumed_state"][name]), name
        assert "sync_bn=True needs one CUDA GPU per process" in r["sync_bn_error"]
    # DDP keeps the replicas' weights identical (BatchNorm running statistics are each rank's own
    # until the next forward broadcasts rank 0's); the logged loss is the mean over ranks
    for name, a in ranks[0]["full_state"].items():
        if "running_" not in name:
            assert torch.equal(a, ranks[1]["full_state"][name]), name
    assert [row["loss"] for row in ranks[0]["full"]] == [row["loss"] for row in ranks[1]["full"]]
    # kNN monitor on rank 0 only; each rank its own augmentation stream
    assert all("knn" in row for row in ranks[0]["full"])
    assert not any("knn" in row for row in ranks[1]["full"])
    assert not torch.equal(ranks[0]["augment_rng"], ranks[1]["augment_rng"])
    checkpoint = torch.load(tmp_path / "b.pt", weights_only=False)
    assert checkpoint["epoch"] == 2 and len(checkpoint["augment_rng"]) == 2


def test_cli_under_torchrun_on_two_gloo_processes(tmp_path) -> None:
    """`torchrun --nproc_per_node=2 -m course_utils.train`: one short epoch on digits."""
    history, checkpoint = tmp_path / "history.json", tmp_path / "simclr.pt"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "course_utils.train", "--dataset", "digits", "--epochs", "1", "--batch-size", "64",
        "--lr", "0.24", "--warmup-epochs", "2", "--width", "4", "--proj-hidden", "16",
        "--proj-dim", "8", "--knn-k", "10", "--no-progress", "--history", str(history),
        "--checkpoint", str(checkpoint),
    ]  # fmt: skip
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(history.read_text())
    assert len(rows) == 1 and rows[0]["loss"] > 0 and rows[0]["knn"] > 0.3  # chance: 0.1
    # 1437 images / 2 processes / batch 64 = 11 steps; the peak lr is 0.24 x 2 processes, and
    # after 11 of the 22 warm-up steps the next step's lr is 12/22 of it
    assert rows[0]["lr"] == pytest.approx(0.24 * 2 * 12 / 22)
    printed = [line for line in done.stdout.splitlines() if line.startswith('{"epoch"')]
    assert len(printed) == 1  # progress printed by rank 0 only
    state = torch.load(checkpoint, weights_only=False)
    assert state["epoch"] == 1 and len(state["augment_rng"]) == 2


# ---- launching torchrun from a notebook -----------------------------------------------------------


def test_torchrun_command_spells_the_flags() -> None:
    command = distributed.torchrun_command(
        2, "course_utils.train", dataset="digits", batch_size=64, sync_bn=True, progress=False
    )
    assert command == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "course_utils.train", "--dataset", "digits", "--batch-size", "64", "--sync-bn",
        "--no-progress",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="nproc must be an int >= 1"):
        distributed.torchrun_command(0, "course_utils.train")


@pytest.mark.parametrize(("gpus", "fails"), [(1, True), (2, False)])
def test_launch_on_too_few_gpus_explains_itself(monkeypatch, gpus: int, fails: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    if fails:
        with pytest.raises(distributed.NotEnoughGPUsError, match="GPU T4 x2"):
            distributed.launch(2, "course_utils.train")
    else:
        distributed.check_gpus(2)


def test_launch_reports_a_failed_run(capsys) -> None:
    with pytest.raises(RuntimeError, match="torchrun exited with status"):
        distributed.launch(1, "course_utils.train", dataset="no-such-set")
    assert "invalid choice: 'no-such-set'" in capsys.readouterr().out
