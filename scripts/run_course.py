"""Execute every lesson notebook in order and write the executed HTML (used by `make course`).

The HTML reads offline: MathJax (from the jupyter-server-mathjax wheel) and the Jupyter widget manager
with RequireJS (npm packages the Makefile unpacks into the environment) are copied into `<out>/static`
and every page loads them from there, never from a CDN.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter
from tqdm.auto import tqdm

WEB_ASSETS = Path(sys.prefix) / "share" / "learning-at-scale" / "web"
# The wheel ships STIX-Web as MathJax's only web font: a local config file selects it.
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe,local/course"
MATHJAX_LOCAL_CONFIG = """\
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], webFont: "STIX-Web", imageFont: null}});
MathJax.Ajax.loadComplete("[MathJax]/config/local/course.js");
"""


def install_static(out_dir: Path, web_assets: Path = WEB_ASSETS) -> HTMLExporter:
    """Copy MathJax and the widget manager into `<out_dir>/static`; an exporter whose pages use them."""
    widget_manager = web_assets / "html-manager" / "dist" / "embed-amd.js"
    for needed in (widget_manager, web_assets / "require.js"):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed} is missing: `make course` unpacks the widget manager and RequireJS "
                "there with npm"
            )
    mathjax = importlib.util.find_spec("jupyter_server_mathjax")
    if mathjax is None:
        raise ModuleNotFoundError(
            "MathJax comes from jupyter-server-mathjax: pip install -e '.[lab]'"
        )
    static = out_dir / "static"
    shutil.copytree(Path(mathjax.origin).parent / "static", static / "mathjax", dirs_exist_ok=True)
    (static / "mathjax" / "config" / "local").mkdir(exist_ok=True)
    (static / "mathjax" / "config" / "local" / "course.js").write_text(MATHJAX_LOCAL_CONFIG)
    shutil.copytree(web_assets, static, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
    return HTMLExporter(
        mathjax_url=f"static/mathjax/MathJax.js?config={MATHJAX_CONFIG}",
        require_js_url="static/require.js",
        widget_renderer_url="static/html-manager/dist/embed-amd.js",
    )


def run(notebook: Path, out_dir: Path, timeout: int, exporter: HTMLExporter) -> float:
    """Execute one notebook in its own folder, write `<out_dir>/<name>.html`, return seconds."""
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": notebook.parent}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        html, _ = exporter.from_notebook_node(nb)
        (out_dir / f"{notebook.stem}.html").write_text(html, encoding="utf-8")
    return time.perf_counter() - start


def choose_profile() -> str:
    """`COURSE_PROFILE` if set, else `gpu` with a CUDA GPU and `ci` without; say which, and pass
    it on to the notebooks (the library's own default without a GPU, `cpu`, takes hours here)."""
    import os

    import torch

    name = os.environ.get("COURSE_PROFILE", "").strip()
    if not name:
        name = "gpu" if torch.cuda.is_available() else "ci"
        reason = "a CUDA GPU is" if name == "gpu" else "no GPU is"
        print(
            f"COURSE_PROFILE is not set and {reason} available: running the {name!r} profile "
            "(set COURSE_PROFILE=ci, cpu or gpu to choose)."
        )
        os.environ["COURSE_PROFILE"] = name
    return name


def main() -> int:
    """Run the course; stop at the first failing notebook with its name and the cell's error."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebooks", type=Path, help="folder of lesson notebooks")
    parser.add_argument("out", type=Path, help="folder for the executed HTML")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    args = parser.parse_args()
    choose_profile()
    notebooks = sorted(args.notebooks.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        print(f"no lesson notebooks found in {args.notebooks}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        exporter = install_static(args.out)
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 1
    bar = tqdm(notebooks, unit="notebook")
    for notebook in bar:
        bar.set_description(notebook.stem)
        try:
            seconds = run(notebook, args.out, args.timeout, exporter)
        except CellExecutionError as exc:
            bar.close()
            print(f"\nFAILED: {notebook}\n{exc}", file=sys.stderr)
            print(
                f"The partly executed notebook is in {args.out / notebook.stem}.html",
                file=sys.stderr,
            )
            return 1
        tqdm.write(f"{notebook.name}: {seconds:.1f} s -> {args.out / notebook.stem}.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
