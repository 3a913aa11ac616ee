"""observe.observed renders the run's own numbers with the profile and hardware they came from."""

import pytest
import torch

from course_utils.observe import hardware, observed


def test_observed_labels_profile_and_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_PROFILE", "ci")
    monkeypatch.setattr("course_utils.observe.device", lambda: torch.device("cpu"))
    shown = []
    monkeypatch.setattr("course_utils.observe.display", shown.append)
    accuracy = 0.4375
    block = observed(f"the probe reached {accuracy:.3f}.")
    assert shown == [block]
    assert block.data.startswith("**What we observed** (ci profile, CPU (")
    assert block.data.endswith("the probe reached 0.438.")
    assert hardware() in block.data


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_observed_rejects_empty_or_non_text(bad: object) -> None:
    with pytest.raises(ValueError, match="text must be"):
        observed(bad)  # type: ignore[arg-type]
