"""scripts/run_course.py: runs lessons in order, writes HTML that reads offline, stops at a failure."""

import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "run_course.py"


def _notebook(path: Path, *sources: str, markdown: str = "") -> None:
    cells = [nbformat.v4.new_markdown_cell(markdown)] if markdown else []
    nb = nbformat.v4.new_notebook(cells=cells + [nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def _run(src: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(src), str(out), "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def lessons(tmp_path: Path) -> Path:
    src = tmp_path / "notebooks"
    src.mkdir()
    _notebook(src / "01_first.ipynb", "x = 6 * 7", "print('answer', x)")
    _notebook(src / "scratch.ipynb", "raise RuntimeError('not a lesson')")  # not NN_*: skipped
    return src


def test_runs_lessons_and_writes_html(lessons: Path, tmp_path: Path) -> None:
    result = _run(lessons, tmp_path / "build")
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "build" / "01_first.html").read_text()
    assert "answer 42" in html
    assert not (tmp_path / "build" / "scratch.html").exists()


def test_stops_at_the_failing_notebook_with_its_error(lessons: Path, tmp_path: Path) -> None:
    _notebook(lessons / "02_broken.ipynb", "1 / 0")
    _notebook(lessons / "03_after.ipynb", "print('never')")
    result = _run(lessons, tmp_path / "build")
    assert result.returncode == 1
    assert "02_broken.ipynb" in result.stderr and "ZeroDivisionError" in result.stderr
    assert (tmp_path / "build" / "01_first.html").exists()
    assert not (tmp_path / "build" / "03_after.html").exists()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built page with inline and display math, a slider, and an interact output."""
    src = tmp_path_factory.mktemp("notebooks")
    _notebook(
        src / "01_math.ipynb",
        "import ipywidgets as widgets\nwidgets.IntSlider(value=7, description='k')",
        "@widgets.interact(t=widgets.FloatSlider(value=0.5, min=0, max=1))\n"
        "def show(t):\n    print('t is', t)",
        markdown="Inline $\\alpha^2 + \\mathbb{E}[x]$, display $$\\sum_{i=1}^n x_i$$",
    )
    out = src.parent / "build"
    result = _run(src, out)
    assert result.returncode == 0, result.stderr
    return out / "01_math.html"


def test_pages_load_mathjax_and_widgets_from_local_files(page: Path) -> None:
    text = page.read_text()
    sources = re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", text)
    sources += re.findall(r"widgetRendererSrc = '([^']+)'", text)
    for name in ("MathJax.js", "require.js", "embed-amd.js"):
        assert any(name in s for s in sources), f"{name} not loaded: {sources}"
    assert not re.search(r"<link[^>]*href=\"https?://", text)
    for source in sources:
        assert "://" not in source, f"{source} needs the network"
        path, _, query = source.partition("?")
        assert (page.parent / path).is_file(), f"{path} is not next to the page"
        for config in query.removeprefix("config=").split(",") if query else []:
            assert (page.parent / path).parent.joinpath("config", f"{config}.js").is_file()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_page_renders_math_and_widgets_in_a_browser_without_network(
    page: Path, tmp_path: Path
) -> None:
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}"]
        + ["--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]
        + ["--virtual-time-budget=30000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    dom = result.stdout
    visible = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.DOTALL)
    words = html.unescape(re.sub(r"<[^>]+>", " ", visible))
    assert "alpha" not in words and "$" not in words, "math left as raw TeX"
    assert dom.count('class="MathJax_Display"') == 1
    assert dom.count('class="MathJax"') == 2  # the inline formula and the display one
    assert re.search(r"widget-readout[^>]*>7<", dom), "the IntSlider did not render"
    assert re.search(r"widget-readout[^>]*>0\.50<", dom), "the interact slider did not render"
    assert "t is 0.5" in words, "the interact output did not render"
