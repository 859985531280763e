"""Helpers shared by the test modules: real data, config composition, small datasets.

Real data (IMDB, MNIST, Tiny Shakespeare, vic_elec) is found through one
variable, SEQMODELS_TEST_DATA (default: ../shared/data beside the checkout);
tests that need it skip with that name in the reason when it is absent.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from seqmodels.cli import config_dir

CONFIGS = Path(config_dir())
REAL_DATA = Path(
    os.environ.get("SEQMODELS_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def real_data(*parts: str) -> Path:
    """A path under the real-data folder; skips the test when it is not there."""
    path = REAL_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set SEQMODELS_TEST_DATA to its folder)")
    return path


def options(group: str) -> list[str]:
    """The option names of a config group (configs/<group>/*.yaml)."""
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def compose_train(*overrides: str, output_dir: str | Path, hydra: bool = False) -> DictConfig:
    """The `seqmodels-train` config for these overrides, with its outputs under output_dir."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=hydra)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.data_dir = str(Path(output_dir) / "data")
        if OmegaConf.is_interpolation(cfg, "run_name"):  # ${hydra:...} needs a Hydra run
            cfg.run_name = "run"
    return cfg


def run_dirs(root: Path) -> list[Path]:
    """Every run folder (one with a .hydra/ config) under root, sorted."""
    return sorted(p.parent for p in root.rglob(".hydra"))


# -- small datasets in the real layouts ----------------------------------------------------

POS = [
    "a great film, wonderful acting!",
    "loved it<br /><br />Great story and great cast",
    "wonderful, moving and funny",
    "one of the best films I've seen",
]
NEG = [
    "an awful, boring film",
    "terrible acting<br />I hated it",
    "boring boring boring?",
    "the worst film; awful script",
]


def write_tiny_imdb(folder: Path, per_label: int = 12) -> Path:
    """folder/{train,test}/{pos,neg}/<id>_<rating>.txt: 48 short reviews."""
    for split in ("train", "test"):
        for label, texts, rating in (("pos", POS, 9), ("neg", NEG, 2)):
            d = folder / split / label
            d.mkdir(parents=True)
            for i in range(per_label):
                # Vary the length so the bucketing has something to sort.
                words = " ".join([texts[i % len(texts)]] * (1 + i % 5))
                if split == "test" and i == 0:
                    words += " zyzzyva"  # a test-only word: must map to UNK
                (d / f"{i}_{rating}.txt").write_text(words, encoding="utf-8")
    return folder


def write_synthetic_mnist(
    root: Path, n_train: int = 48, n_test: int = 16, gz: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """Four small IDX files with MNIST's names: random uint8 digits, labels 0..9."""
    from seqmodels.data.idx import write_idx
    from seqmodels.data.mnist import FILES

    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images_name, labels_name = FILES[split]
        arrays[images_name] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[labels_name] = (np.arange(n) % 10).astype(np.uint8)
    for name, a in arrays.items():
        write_idx(Path(root) / (name if gz else name.removesuffix(".gz")), a)
    return arrays


def write_synthetic_series(
    path: Path, days: int = 40, start: str = "2013-03-20", seed: int = 0
) -> Path:
    """A half-hourly series in vic_elec's layout: Time (UTC, ISO 8601 with Z), Demand,
    Temperature, Date (local, Australia/Melbourne), Holiday (TRUE/FALSE). From local
    midnight of `start` for `days` local days; the default crosses the end of daylight
    saving on 2013-04-07, a local day of 50 half-hours. Demand follows the time of day,
    the weekday and the temperature, plus noise."""
    import pandas as pd

    zone = "Australia/Melbourne"
    first = pd.Timestamp(start, tz=zone)
    end = pd.Timestamp(pd.Timestamp(start) + pd.Timedelta(days=days), tz=zone)  # local midnight
    time = pd.date_range(first, end, freq="30min", inclusive="left")  # evenly spaced in UTC
    local = time.tz_convert(zone)
    rng = np.random.default_rng(seed)
    tod = (local.hour * 60 + local.minute).to_numpy() / 1440
    temperature = 16 + 6 * np.sin(2 * np.pi * (tod - 0.4)) + rng.normal(0, 1, len(time))
    holiday = np.isin(local.strftime("%m-%d"), ["03-29", "04-01", "04-25"])
    demand = (
        4500
        + 900 * np.sin(2 * np.pi * (tod - 0.3))
        - 500 * (local.day_of_week >= 5)
        - 400 * holiday
        + 40 * (temperature - 16) ** 2 / 6
        + rng.normal(0, 60, len(time))
    )
    frame = pd.DataFrame(
        {
            "Time": time.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Demand": demand.round(3),
            "Temperature": temperature.round(2),
            "Date": local.strftime("%Y-%m-%d"),
            "Holiday": np.where(holiday, "TRUE", "FALSE"),
        }
    )
    frame.to_csv(path, index=False)
    return Path(path)


# The synthetic series' splits (write_synthetic_series' defaults): train 2013-03-20..04-13,
# validation 04-14..04-21 (8 local midnights), test 04-22..04-28 (7).
SERIES_SPLITS = ("data.val_start=2013-04-14", "data.test_start=2013-04-22")


TEXT = (
    "to be, or not to be, that is the question:\n"
    "whether 'tis nobler in the mind to suffer\n"
    "the slings and arrows of outrageous fortune,\n"
) * 12


# A toy pronouncing dictionary in cmudict.dict's layout: each letter has its own phoneme(s),
# so a model can learn it; with alternates, comments and stress digits as in the real one.
LETTER_PHONES = {
    "a": "AE1",
    "b": "B",
    "d": "D",
    "e": "EH0",
    "k": "K",
    "l": "L",
    "m": "M",
    "n": "N",
    "o": "OW2",
    "r": "R",
    "s": "S",
    "t": "T",
    "u": "UW1",
}


def write_tiny_cmudict(path: Path, n: int = 400, seed: int = 0) -> Path:
    """n distinct random words of 2-7 letters, pronounced letter by letter; every 10th
    has an alternate `word(2)`, every 7th a `# comment`, and two lines are dropped words."""
    rng = np.random.default_rng(seed)
    letters = sorted(LETTER_PHONES)
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(letters, size=int(rng.integers(2, 8)))))
    lines = ["a.m. EY2 EH1 M", "abc123 EY1 B IY1"]  # not ^[a-z']+$: dropped
    for i, word in enumerate(sorted(words)):
        phones = " ".join(LETTER_PHONES[c] for c in word)
        lines.append(f"{word} {phones}" + (" # place, toy" if i % 7 == 0 else ""))
        if i % 10 == 0:
            lines.append(f"{word}(2) {phones} AH0")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


# A toy NER corpus in CoNLL-2003's layout: token, POS, chunk, entity (IOB1, as the
# original), with -DOCSTART- lines. Names follow "mr"/"in" so a model can learn them.
PEOPLE = ["Smith", "Jones", "Brown", "Taylor"]
PLACES = ["Paris", "Rome", "Oslo", "Lima"]


def write_tiny_conll(path: Path, n: int = 60, seed: int = 0) -> Path:
    """n sentences such as "mr Smith lives in New Rome ." with IOB1 entity tags."""
    rng = np.random.default_rng(seed)
    lines = ["-DOCSTART- -X- -X- O", ""]
    for i in range(n):
        person = str(rng.choice(PEOPLE))
        place = str(rng.choice(PLACES))
        words = [("mr", "O"), (person, "I-PER")]
        if i % 3 == 0:
            words.append((str(rng.choice(PEOPLE)), "I-PER"))
        words += [("lives", "O"), ("in", "O")]
        if i % 4 == 0:
            words.append(("New", "I-LOC"))
        words += [(place, "I-LOC"), (".", "O")]
        lines += [f"{w} NN I-NP {t}" for w, t in words] + [""]
        if i == n // 2:
            lines += ["-DOCSTART- -X- -X- O", ""]
    Path(path).write_text("\n".join(lines), encoding="utf-8")
    return Path(path)


# Overrides that point every task at the small datasets above (see small_data fixture).
def small_data_overrides(task: str, root: Path) -> list[str]:
    return {
        "parity": ["data.num_train=64", "data.num_val=16", "data.num_test=16", "data.batch_size=4"],
        "imdb": [
            f"data.root={root / 'imdb'}",
            "data.val_size=4",
            "data.min_freq=1",
            "data.batch_size=4",
            "data.eval_batch_size=4",
        ],
        "mnist": [
            f"data.root={root / 'mnist'}",
            "data.verify=false",
            "data.val_size=8",
            "data.batch_size=4",
        ],
        "chargen": [
            f"data.path={root / 'text.txt'}",
            "data.batch_size=4",
            "data.seq_len=16",
            "data.val_fraction=0.1",
            "data.test_fraction=0.1",
        ],
        "forecast": [
            f"data.path={root / 'series.csv'}",
            *SERIES_SPLITS,
            "data.stride=8",
            "data.batch_size=16",
            "data.eval_batch_size=8",
        ],
        "tagging": [
            f"data.path={root / 'ner.conll'}",
            "data.batch_size=8",
            "data.eval_batch_size=16",
            "task.embedding_dim=16",
            "task.char_hidden_size=8",
            "model.hidden_size=16",
        ],
        "seq2seq": [
            f"data.path={root / 'cmudict.dict'}",
            "data.batch_size=32",
            "data.eval_batch_size=16",
            "task.decode.max_len=12",
        ],
    }[task]


def signal_at(monkeypatch, step, signum=signal.SIGTERM, hook="on_train_batch_start"):
    """Runs of this test send themselves `signum` once, at `hook` of global step `step`."""
    from seqmodels import checkpoint

    class SignalAt(checkpoint.RunState):
        sent = False

        def fire(self, trainer):
            if trainer.global_step == step and not SignalAt.sent:
                SignalAt.sent = True
                os.kill(os.getpid(), signum)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
            if hook == "on_train_batch_start":
                self.fire(trainer)

        def on_validation_start(self, trainer, pl_module):
            if hook == "on_validation_start" and not trainer.sanity_checking:
                self.fire(trainer)

    monkeypatch.setattr("seqmodels.train.RunState", SignalAt)
