"""Data parallelism on gloo (CPU): NT-Xent with global negatives equals the single-process loss.

Reference: the single-process loss of the concatenated global batch and its autograd gradients,
computed in this process. Each check spawns W real processes joined by a gloo process group.
Tolerances: float32, the same sums in another order (1e-6 absolute, 1e-5 relative).
"""

import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from course_utils import distributed
from course_utils.losses import nt_xent

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
    # fork: the ranks start in milliseconds instead of importing torch again (spawn elsewhere)
    method = "fork" if sys.platform == "linux" else "spawn"
    args = (world, str(folder / "store"), str(folder))
    mp.start_processes(_worker, args=args, nprocs=world, start_method=method)
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
