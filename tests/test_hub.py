"""course_utils.hub: Hub loads use the local cache offline and fail fast with what to do."""

import socket
from collections.abc import Iterator

import pytest

from course_utils import hub
from course_utils.scaling import load_pythia, pythia_tokenizer


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "cache"))
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def listening() -> Iterator[str]:
    """An endpoint URL on 127.0.0.1 that accepts TCP connections (a reachable 'Hub')."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def refusing() -> str:
    """An endpoint URL on 127.0.0.1 where nothing listens (an unreachable 'Hub')."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


class Recorder:
    """A stand-in `from_pretrained` that records its calls and fails like a missing model."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, name: str, **kwargs) -> str:
        self.calls.append((name, kwargs))
        raise OSError(f"{name} is not a valid model identifier")


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_when_the_environment_says_so(monkeypatch, listening: str, var: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", listening)
    assert not hub.offline()
    monkeypatch.setenv(var, "1")
    assert hub.offline()


def test_offline_when_the_hub_refuses_connections(monkeypatch, refusing: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", refusing)
    assert hub.offline()


def test_behind_a_proxy_the_proxy_is_probed(monkeypatch, listening: str, refusing: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # never resolved: the proxy is asked
    monkeypatch.setenv("https_proxy", listening)
    assert not hub.offline()
    monkeypatch.setenv("https_proxy", refusing)
    assert hub.offline()


def test_nonexistent_model_offline_fails_fast_naming_what_to_do(monkeypatch) -> None:
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubUnavailableError) as info:
        hub.from_pretrained(
            AutoModelForCausalLM.from_pretrained,
            "course-tests/no-such-model",
            revision="step7",
            size="about 1 MB",
            alternative="the tiny local model",
        )
    message = str(info.value)
    for part in ("'course-tests/no-such-model'", "step7", "about 1 MB", "the tiny local model"):
        assert part in message
    assert "not in the local cache" in message
    assert isinstance(info.value, OSError)  # `except OSError` around Hub loads still catches it


def test_unreachable_hub_reads_the_local_cache_only(monkeypatch, refusing: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", refusing)
    loader = Recorder()
    with pytest.raises(hub.HubUnavailableError, match="cannot be reached"):
        hub.from_pretrained(loader, "org/model", revision="v1", cache_dir="/c")
    assert loader.calls == [
        ("org/model", {"revision": "v1", "local_files_only": True, "cache_dir": "/c"})
    ]


def test_reachable_hub_downloads_and_reports_its_error(monkeypatch, listening: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", listening)
    loader = Recorder()
    with pytest.raises(hub.HubUnavailableError, match="did not provide it .*not a valid model"):
        hub.from_pretrained(loader, "org/model")
    assert loader.calls == [
        (
            "org/model",
            {"revision": None, "local_files_only": False, "cache_dir": str(hub.cache_dir())},
        )
    ]


def test_local_folder_is_loaded_as_it_is(tmp_path) -> None:
    assert hub.from_pretrained(lambda name, **kw: (name, kw), str(tmp_path)) == (str(tmp_path), {})


def test_standin_folder_replaces_the_hub_repository(monkeypatch, tmp_path) -> None:
    folder = tmp_path / "hub" / "org" / "model" / "step1000"
    folder.mkdir(parents=True)
    monkeypatch.setenv("COURSE_STANDINS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    got = hub.from_pretrained(
        lambda n, **kw: (n, kw), "org/model", revision="step1000", cache_dir="c"
    )
    assert got == (str(folder), {"cache_dir": "c"})  # the folder, with no revision or Hub options
    with pytest.raises(hub.HubUnavailableError):  # another revision has no stand-in: the Hub path
        hub.from_pretrained(Recorder(), "org/model", revision="step2000")


def test_pythia_offline_names_checkpoint_size_and_the_offline_suite(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubUnavailableError) as info:
        load_pythia("70m", 1000)
    message = str(info.value)
    for part in ("EleutherAI/pythia-70m", "step1000", "0.14 GB", "mini_suite", "root=root"):
        assert part in message


def test_pythia_tokenizer_offline_names_the_byte_tokenizer(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubUnavailableError, match="pythia-70m.*encode_bytes"):
        pythia_tokenizer()


# ---- one Hugging Face cache -----------------------------------------------------------------------


def test_the_cache_is_in_the_course_cache_without_drive(tmp_path) -> None:
    assert hub.cache_dir() == tmp_path / "cache" / "huggingface"  # COURSE_DATA (fixture above)


def test_the_cache_is_on_drive_when_it_is_mounted(monkeypatch, tmp_path) -> None:
    from course_utils import train

    drive = tmp_path / "MyDrive"
    drive.mkdir()
    real = train.checkpoint_dir
    monkeypatch.setattr(train, "checkpoint_dir", lambda: real(drive))
    assert hub.cache_dir() == drive / "learning-at-scale" / "huggingface"


def test_hf_hub_cache_is_respected(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert hub.cache_dir() == tmp_path / "hf"


def test_every_hub_load_uses_the_one_cache(monkeypatch, refusing: str) -> None:
    # lesson 04's from_pretrained (no cache_dir) and lesson 06's Pythia loads ask for one folder
    monkeypatch.setenv("HF_ENDPOINT", refusing)
    loader = Recorder()
    with pytest.raises(hub.HubUnavailableError, match=f"cached in {hub.cache_dir()}"):
        hub.from_pretrained(loader, "EleutherAI/pythia-70m")
    with pytest.raises(hub.HubUnavailableError, match=f"cached in {hub.cache_dir()}"):
        pythia_tokenizer()
    assert loader.calls[0][1]["cache_dir"] == str(hub.cache_dir())
