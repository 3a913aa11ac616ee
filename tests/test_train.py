"""SimCLR training loop: resume == uninterrupted run, schedule, non-finite message, bad inputs."""

import json
import math
import shutil

import pytest
import torch
import torch.distributed as dist

from course_utils import train
from course_utils.data import load_images
from course_utils.train import SimCLRConfig, main, train_simclr


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_images("digits", "train")
    return images[:128], labels[:128]


def _config(**overrides) -> SimCLRConfig:
    kwargs = dict(
        epochs=3,
        batch_size=64,
        lr=0.3,
        warmup_epochs=1.0,
        width=4,
        proj_hidden=16,
        proj_dim=8,
        crop_scale=(0.5, 1.0),
        flip_p=0.0,
        knn_k=10,
        progress=False,
    )
    kwargs.update(overrides)
    return SimCLRConfig(**kwargs)


class Disconnect(Exception):
    """Stands for a Colab disconnect after an epoch."""


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path, digits) -> None:
    images, labels = digits
    monitor = (images, labels, images[:32], labels[:32])
    full = train_simclr(_config(checkpoint=str(tmp_path / "a.pt")), images, monitor=monitor)

    def disconnect_after_first_epoch(history) -> None:
        if len(history) == 1:
            raise Disconnect

    config = _config(checkpoint=str(tmp_path / "b.pt"))
    with pytest.raises(Disconnect):
        train_simclr(config, images, monitor=monitor, on_epoch=disconnect_after_first_epoch)
    assert torch.load(tmp_path / "b.pt", weights_only=False)["epoch"] == 1
    resumed = train_simclr(config, images, monitor=monitor)

    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for key in ("loss", "lr", "knn"):  # bitwise: same weights, optimizer, schedule and RNG states
        assert [r[key] for r in resumed.history] == [r[key] for r in full.history]
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert not list(tmp_path.glob("*.part"))  # atomic saves leave no partial file


def test_finished_checkpoint_returns_without_training(tmp_path, digits) -> None:
    config = _config(epochs=1, checkpoint=str(tmp_path / "c.pt"))
    first = train_simclr(config, digits[0])
    calls = []
    again = train_simclr(config, digits[0], on_epoch=calls.append)
    assert calls == []  # no epoch ran
    assert again.history == first.history
    for a, b in zip(first.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_with_another_config_is_refused(tmp_path, digits) -> None:
    path = str(tmp_path / "d.pt")
    train_simclr(_config(epochs=1, checkpoint=path), digits[0])
    with pytest.raises(ValueError, match="different config.*temperature"):
        train_simclr(_config(epochs=1, checkpoint=path, temperature=0.2), digits[0])


def _interrupted_after_first_epoch(config: SimCLRConfig, images: torch.Tensor) -> None:
    """Train `config` until a disconnect right after its first epoch's checkpoint."""

    def disconnect(history) -> None:
        raise Disconnect

    with pytest.raises(Disconnect):
        train_simclr(config, images, on_epoch=disconnect)


def test_a_moved_checkpoint_resumes_under_other_monitoring_options(tmp_path, digits) -> None:
    # Colab: the checkpoint is copied to Google Drive and resumed from there on a new runtime.
    images = digits[0]
    full = train_simclr(_config(epochs=2), images)
    _interrupted_after_first_epoch(_config(epochs=2, checkpoint=str(tmp_path / "vm.pt")), images)
    drive = tmp_path / "drive" / "MyDrive"
    drive.mkdir(parents=True)
    shutil.copy(tmp_path / "vm.pt", drive / "simclr.pt")
    moved = _config(epochs=2, checkpoint=str(drive / "simclr.pt"), knn_k=5, knn_temperature=0.2)
    resumed = train_simclr(moved, images)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)  # bitwise the uninterrupted run: nothing restarted


@pytest.mark.filterwarnings("ignore:Detected call of")  # fp16 skips overflowing steps
@pytest.mark.parametrize(
    ("saved", "resumed"), [("fp32", "fp16"), ("bf16", "fp16"), ("fp16", "bf16"), ("fp16", "fp32")]
)
def test_resume_under_another_precision(tmp_path, digits, saved, resumed) -> None:
    # A checkpoint of one GPU (bf16 on an A100) resumed on another (fp16 + loss scaling on a T4).
    path = str(tmp_path / "p.pt")
    _interrupted_after_first_epoch(_config(epochs=2, precision=saved, checkpoint=path), digits[0])
    first = torch.load(path, weights_only=False)
    run = train_simclr(_config(epochs=2, precision=resumed, checkpoint=path), digits[0])
    assert run.history[0] == first["history"][0]  # epoch 1 came from the checkpoint
    assert len(run.history) == 2 and math.isfinite(run.history[1]["loss"])
    scaler = torch.load(path, weights_only=False)["scaler"]
    assert (scaler != {}) == (resumed == "fp16")  # loss scaling follows the precision now in use
    if resumed == "fp16" and saved != "fp16":
        assert scaler["scale"] > 0  # a fresh scale, grown or backed off from its initial value


@pytest.mark.filterwarnings("ignore:Detected call of")  # fp16 skips overflowing steps
def test_auto_precision_resumes_on_a_gpu_with_another_precision(
    monkeypatch, tmp_path, digits
) -> None:
    # precision="auto" in both configs: bf16 where saved (A100), fp16 where resumed (T4).
    path = str(tmp_path / "auto.pt")
    monkeypatch.setattr(train, "_precision", lambda config, dev: torch.bfloat16)
    _interrupted_after_first_epoch(_config(epochs=2, checkpoint=path), digits[0])
    monkeypatch.setattr(train, "_precision", lambda config, dev: torch.float16)
    run = train_simclr(_config(epochs=2, checkpoint=path), digits[0])
    assert [r["epoch"] for r in run.history] == [1, 2]
    assert torch.load(path, weights_only=False)["scaler"]["scale"] > 0


def test_checkpoints_go_to_google_drive_when_it_is_mounted(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "cache"))
    drive = tmp_path / "drive" / "MyDrive"
    assert train.checkpoint_dir(drive) == tmp_path / "cache"  # not mounted: the data cache
    drive.mkdir(parents=True)  # drive.mount("/content/drive") made it
    folder = train.checkpoint_dir(drive)
    assert folder == drive / "learning-at-scale" and folder.is_dir()
    assert train.checkpoint_dir(drive) == folder  # a second call finds the same folder


def test_learning_rate_follows_warmup_then_cosine(digits) -> None:
    config = _config(epochs=4, warmup_epochs=1.0)
    run = train_simclr(config, digits[0])
    steps, warmup, total = 2, 2, 8  # 128 images / batch 64 = 2 steps per epoch
    for row in run.history:
        step = row["epoch"] * steps  # the next step's learning rate is logged
        progress = (step - warmup) / (total - warmup)
        expected = config.lr * 0.5 * (1 + math.cos(math.pi * progress))
        assert row["lr"] == pytest.approx(expected, abs=1e-12)
    assert run.history[0]["lr"] == pytest.approx(config.lr)  # peak right after warm-up
    assert run.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.filterwarnings("ignore:Detected call of")  # fp16 skips
def test_non_finite_half_precision_loss_raises_a_clear_message(digits) -> None:
    # An absurd learning rate overflows fp16 activations (max 65504) within a few steps.
    config = _config(epochs=2, precision="fp16", lr=1e8, warmup_epochs=0.0, weight_decay=0.0)
    with pytest.raises(FloatingPointError, match=r"non-finite .* float16 .*precision='fp32'"):
        train_simclr(config, digits[0])


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"epochs": 0}, "epochs must be"),
        ({"batch_size": 1.5}, "batch_size must be"),
        ({"lr": 0.0}, "lr must be"),
        ({"temperature": -1.0}, "temperature must be"),
        ({"flip_p": 1.5}, "flip_p must be in"),
        ({"gray_p": -0.1}, "gray_p must be in"),
        ({"precision": "fp8"}, "precision must be one of"),
    ],
)
def test_bad_config(overrides, match) -> None:
    with pytest.raises(ValueError, match=match):
        _config(**overrides)


def test_bad_images(digits) -> None:
    images, labels = digits
    with pytest.raises(ValueError, match="images must be a uint8"):
        train_simclr(_config(), images.float())
    with pytest.raises(ValueError, match="images must be a uint8"):
        train_simclr(_config(), images[:, 0])
    with pytest.raises(ValueError, match="batch_size .* must be <= the number of images"):
        train_simclr(_config(batch_size=200), images)
    with pytest.raises(ValueError, match="monitor must be"):
        train_simclr(_config(), images, monitor=(images, labels))


def test_a_process_group_of_one_gives_the_single_process_run(tmp_path, digits) -> None:
    """torchrun --nproc_per_node=1: the DDP code path (gather, rank helpers) changes nothing."""
    images, labels = digits
    monitor = (images, labels, images[:32], labels[:32])
    alone = train_simclr(_config(epochs=2), images, monitor=monitor)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        grouped = train_simclr(_config(epochs=2), images, monitor=monitor)
    finally:
        dist.destroy_process_group()
    for key in ("loss", "lr", "knn"):
        assert [r[key] for r in grouped.history] == [r[key] for r in alone.history]
    for a, b in zip(
        alone.model.state_dict().values(), grouped.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


@pytest.mark.parametrize("world", [1, 3])
def test_ranks_draw_disjoint_shards_of_one_permutation(monkeypatch, world) -> None:
    data = torch.arange(100)
    seen = []
    for rank in range(world):
        monkeypatch.setattr(train.distributed, "world_size", lambda: world)
        monkeypatch.setattr(train.distributed, "rank", lambda r=rank: r)
        generator = torch.Generator().manual_seed(0)  # the same state on every rank
        seen.append(torch.cat(list(train._epoch_batches(data, 8, generator))))
    everything = torch.cat(seen)
    assert len(everything.unique()) == len(everything) == world * (100 // world // 8 * 8)
    if world == 1:  # exactly the single-process order of data.batches
        assert torch.equal(
            everything, torch.randperm(100, generator=torch.Generator().manual_seed(0))[:96]
        )


def test_cli_help_lists_every_config_field(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for name in SimCLRConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in text, name


def test_cli_trains_and_writes_history(tmp_path) -> None:
    history = tmp_path / "h.json"
    main(
        ["--dataset", "digits", "--epochs", "1", "--batch-size", "256", "--width", "4",
         "--proj-hidden", "16", "--proj-dim", "8", "--crop-scale", "0.5", "1.0", "--no-knn",
         "--no-progress", "--history", str(history)]
    )  # fmt: skip
    rows = json.loads(history.read_text())
    assert len(rows) == 1 and math.isfinite(rows[0]["loss"]) and "knn" not in rows[0]
