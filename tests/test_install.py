"""Every install path finds the configs and the Optuna sweeper from any folder.

Hydra finds a sweeper by importing the `hydra_plugins` namespace package and
walking its `__path__` with pkgutil. A plain `pip install -e .` (PEP 660) by
setuptools installs an import hook instead of a folder on sys.path; pkgutil
cannot list what only the hook knows, so unless the repository's
`hydra_plugins/` folder itself is a portion of the namespace (the package
`hydra_plugins` listed in pyproject.toml), Hydra answers "Unknown plugin class".

The fast tests build the wheel (plain and PEP 660 editable) from a copy of the
checkout with setuptools' own build hooks, unpack it into a fresh folder and ask
Hydra's plugin discovery, in a Python that sees the current environment's
site-packages (torch, Hydra) but not the checkout. The slow ones create
virtual environments, `pip install` into them and run a search from another folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import optuna
import pytest

REPO = Path(__file__).resolve().parents[1]
SWEEPER = "hydra_plugins.seqmodels_optuna.sweeper.OptunaSweeper"
SOURCES = ("pyproject.toml", "README.md", "seqmodels", "configs", "hydra_plugins")
# The current environment's own folders: its packages, but not the paths that .pth
# files add (an editable install of the checkout) nor PYTHONPATH.
SITE_PACKAGES = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}

DISCOVER = """
import inspect, json, sys
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
import seqmodels.cli
print(json.dumps({
    "sweepers": {f"{p.__module__}.{p.__name__}": inspect.getfile(p)
                 for p in Plugins.instance().discover(Sweeper)},
    "configs": seqmodels.cli.config_dir(),
    "seqmodels": seqmodels.__file__,
}))
"""


def copy_checkout(dest: Path) -> Path:
    """The files a build reads, copied (a build writes egg-info and build/ beside them)."""
    dest.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


def build(project: Path, hook: str, out: Path) -> Path:
    """setuptools.build_meta.<hook> (build_wheel, or build_editable as `pip install -e` calls it)."""
    out.mkdir()
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def discover(site: Path, cwd: Path) -> dict:
    """What Hydra discovers in a Python whose site-packages are `site` (its .pth files
    processed, as at start-up) and then the current environment's own folders."""
    code = (
        f"import site, sys; site.addsitedir({str(site)!r}); "
        f"sys.path.extend({SITE_PACKAGES!r})\n" + DISCOVER
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=cwd, env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("hook", ["build_editable", "build_wheel"])
def test_hydra_discovers_the_sweeper_and_the_configs(tmp_path, hook):
    project = copy_checkout(tmp_path / "checkout")
    wheel = build(project, hook, tmp_path / "dist")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
        names = z.namelist()
    if hook == "build_editable":  # the import-hook kind of editable install, the hard case
        assert any(n.endswith("_finder.py") for n in names), names
        home = project
    else:
        assert "hydra_plugins/__init__.py" not in names  # a namespace other plugins share
        home = site
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    found = discover(site, elsewhere)

    assert SWEEPER in found["sweepers"], found["sweepers"]
    assert Path(found["sweepers"][SWEEPER]).is_relative_to(home)
    assert Path(found["seqmodels"]).is_relative_to(home)
    configs = Path(found["configs"])
    assert configs.is_relative_to(home) and (configs / "train.yaml").is_file()
    assert (configs / "hparams_search" / "parity_optuna.yaml").is_file()


# -- slow: real environments, pip, a search run from another folder ----------------------


def fresh_venv(path: Path) -> Path:
    """A virtual environment that also sees the current one's packages (torch is not
    installed again): its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "zz_parent_environment.pth").write_text("\n".join(SITE_PACKAGES) + "\n")
    return python


@pytest.mark.slow
@pytest.mark.parametrize("editable", [True, False], ids=["pip-install-e", "pip-install"])
def test_a_search_runs_from_another_folder_after_pip_install(tmp_path, editable):
    project = copy_checkout(tmp_path / "checkout")
    python = fresh_venv(tmp_path / "venv")
    target = f"{project}[slurm]"
    pip = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*pip, *(["-e", target] if editable else [target])],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    run = subprocess.run(
        [
            str(python.parent / "seqmodels-train"),
            "-m",
            "hparams_search=parity_optuna",
            "hydra.sweeper.n_trials=1",
            "trainer.max_epochs=1",
            "data.num_train=64",
            "data.num_val=16",
            "data.num_test=16",
            "logger=none",
            "trainer.enable_progress_bar=false",
        ],
        cwd=elsewhere,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "Unknown plugin" not in run.stderr
    db = elsewhere / "outputs" / "parity" / "optuna.db"
    study = optuna.load_study(study_name="parity", storage=f"sqlite:///{db}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
