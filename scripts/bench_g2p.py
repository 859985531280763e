"""G2P speed and accuracy: the recipe's training step, and a checkpoint beside g2p-en.

    python scripts/bench_g2p.py                      # the training step only
    python scripts/bench_g2p.py <run>/checkpoints/epoch_NNN.ckpt
    python scripts/bench_g2p.py A.ckpt --path cmudict.dict --batch-size 256
    python scripts/bench_g2p.py --train-steps 0 A.ckpt   # the checkpoint only

The training step (no checkpoint needed): milliseconds per optimizer step
(forward, backward, gradient clipping, Adam) of the `experiment=g2p_cmudict`
model on synthetic CMUdict-like batches (`--train-batch` words of 3-15 letters
with 3-15 phones, CMUdict's vocabulary sizes), with input feeding (the
decoder stepped token by token in Python) and without it (the decoder's cell
run over the whole target in one call, attention for every step at once),
in alternating rounds, medians side by side with their ratio, the CPU named
with its vector width (AVX2, AVX-512), since the ranking of torch's kernels
depends on it. The steps run in a plain loop, not through Lightning: the
model's cost alone.

For the checkpoint: test WER and PER with greedy search and with beam 5, and
its predict throughput in words per second (batched, this process's threads),
for each. For g2p-en (Park & Kim, the `g2p_en` package), when it is importable:
the same test words through its neural network (`G2p.predict`, not its
dictionary lookup, which would simply recall the test words), stress digits
removed, and its throughput measured the same way; its README quotes 1,265
words/s. When it is not importable (or cannot start: it reads NLTK data that an
offline machine may lack), one line says it is skipped and why.

The test words are the checkpoint's datamodule's test split (task=seq2seq
defaults: CMUdict prepared as seqmodels.data.cmudict says, the sha1 split).
Without a checkpoint the script times the training step, says the rest is
skipped and exits 0 (`make bench` runs every scripts/bench_*.py without
arguments).
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from seqmodels.checkpoint import load_run
from seqmodels.data.seq2seq import EOS, PAD, Seq2SeqBatch
from seqmodels.tasks.sequence_errors import SequenceErrorRate, TokenErrorRate

G2P_EN_QUOTED = 1265  # words/s, g2p-en's README
# CMUdict as seqmodels.data.cmudict prepares it: 4 specials, then a-z and ' / 39 phonemes.
SOURCE_VOCAB, TARGET_VOCAB = 4 + 27, 4 + 39
WORD_LENGTHS = (3, 15)  # letters and phones of a synthetic word, both ends included
TRAIN_STEP_TARGET = 2.0  # issue 28: the no-feeding step at least 2x faster than today's


def cpu() -> str:
    """The CPU's model name and its widest vector unit (from /proc/cpuinfo on Linux)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.processor() or platform.machine()} (vector width unknown)"
    name = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = set((re.search(r"^flags\s*:\s*(.+)$", info, re.M) or ["", ""])[1].split())
    width = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name.group(1).strip() if name else platform.machine()}, {width}"


def recipe_model(input_feeding: bool, seed: int = 0):
    """The experiment=g2p_cmudict task module (CMUdict's vocabulary sizes), its optimizer
    and gradient clipping, with input feeding on or off."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from seqmodels.cli import config_dir

    with (
        tempfile.TemporaryDirectory() as out,
        initialize_config_dir(config_dir(), version_base="1.3"),
    ):
        cfg = compose("train", overrides=["experiment=g2p_cmudict", f"paths.output_dir={out}"])
    torch.manual_seed(seed)
    module = instantiate(
        cfg.task,
        _recursive_=False,
        encoder=cfg.model,
        source_vocab_size=SOURCE_VOCAB,
        target_vocab_size=TARGET_VOCAB,
        input_feeding=input_feeding,
    ).train()
    optimizer = torch.optim.Adam(module.parameters(), lr=float(cfg.task.optimizer.lr))
    return module, optimizer, float(cfg.trainer.gradient_clip_val or 0.0)


def synthetic_batches(n: int, batch_size: int, seed: int = 0) -> list[Seq2SeqBatch]:
    """CMUdict-like batches: words of 3-15 letters, pronunciations of 3-15 phones, + EOS."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = WORD_LENGTHS
    batches = []
    for _ in range(n):
        source_lengths = torch.randint(lo, hi + 1, (batch_size,), generator=g)
        target_lengths = torch.randint(lo, hi + 1, (batch_size,), generator=g) + 1  # EOS
        source = torch.randint(4, SOURCE_VOCAB, (batch_size, hi), generator=g)
        target = torch.randint(4, TARGET_VOCAB, (batch_size, hi + 1), generator=g)
        steps_s, steps_t = torch.arange(hi), torch.arange(hi + 1)
        source = source.masked_fill(steps_s >= source_lengths[:, None], PAD)
        target = target.masked_fill(steps_t >= target_lengths[:, None], PAD)
        target[torch.arange(batch_size), target_lengths - 1] = EOS
        s, u = int(source_lengths.max()), int(target_lengths.max())
        batches.append(Seq2SeqBatch(source[:, :s], source_lengths, target[:, :u], []))
    return batches


def training_step_ms(batch_size: int, steps: int, rounds: int, warmup: int) -> dict[bool, float]:
    """Median ms per training step, by input_feeding, over alternating rounds of `steps`."""
    runs = {feeding: recipe_model(feeding) for feeding in (True, False)}
    batches = synthetic_batches(4, batch_size)
    times: dict[bool, list[float]] = {True: [], False: []}
    for r in range(rounds + 1):  # round 0 warms up: first calls, allocator, oneDNN primitives
        for feeding, (module, optimizer, clip) in runs.items():
            for i in range(warmup if r == 0 else steps):
                batch = batches[i % len(batches)]
                start = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                logits, _ = module(batch.source, batch.source_lengths, batch.target)
                loss = module.loss(logits, batch.target, module.hparams["label_smoothing"])
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
                optimizer.step()
                if r > 0:
                    times[feeding].append(time.perf_counter() - start)
    return {feeding: 1000 * statistics.median(t) for feeding, t in times.items()}


def print_training_step(batch_size: int, steps: int, rounds: int, warmup: int) -> None:
    ms = training_step_ms(batch_size, steps, rounds, warmup)
    lo, hi = WORD_LENGTHS
    print(
        f"training step of experiment=g2p_cmudict (forward, backward, clipping, Adam): batch "
        f"{batch_size}, synthetic words of {lo}-{hi} letters and {lo}-{hi} phones, medians of "
        f"{rounds} alternating rounds of {steps} steps"
    )
    print(f"CPU: {cpu()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'decoder':<44} {'ms/step':>8}")
    print(f"{'input feeding (a Python step per token)':<44} {ms[True]:8.1f}")
    print(f"{'no input feeding (the target in one call)':<44} {ms[False]:8.1f}")
    ratio = ms[True] / ms[False]
    met = "met" if ratio >= TRAIN_STEP_TARGET else "not met"
    print(
        f"{'speed-up (feeding / no feeding)':<44} {ratio:7.2f}x   "
        f"target >= {TRAIN_STEP_TARGET:.1f}x: {met}"
    )
    sys.stdout.flush()


def rates(outputs: list[list[str]], references: list[list[list[str]]]) -> tuple[float, float]:
    """(WER, PER) in percent, tokens compared as strings."""
    table: dict[str, int] = {}
    ids = lambda seq: [table.setdefault(t, len(table)) for t in seq]  # noqa: E731
    out = [ids(o) for o in outputs]
    refs = [[ids(r) for r in rs] for rs in references]
    wer, per = SequenceErrorRate(), TokenErrorRate()
    wer.update(out, refs)
    per.update(out, refs)
    return 100 * float(wer.compute()), 100 * float(per.compute())


def timed(run: Callable[[], list[list[str]]]) -> tuple[list[list[str]], float]:
    start = time.perf_counter()
    outputs = run()
    return outputs, time.perf_counter() - start


def ours(module, datamodule, batch_size: int, beam: int) -> Callable[[], list[list[str]]]:
    """The checkpoint's search (its task.decode settings) over the test words, in batches."""
    test = datamodule.splits["test"]

    def run() -> list[list[str]]:
        outputs: list[list[str]] = []
        with torch.inference_mode():
            for i in range(0, len(test), batch_size):
                items = [test[j] for j in range(i, min(i + batch_size, len(test)))]
                lengths = torch.tensor([len(s) for s, _, _ in items])
                source = torch.full((len(items), int(lengths.max())), PAD, dtype=torch.long)
                for row, (s, _, _) in enumerate(items):
                    source[row, : len(s)] = s
                found = module.search(module.encode(source, lengths), beam)
                outputs += [datamodule.target_tokens_of(ids) for ids in found]
        return outputs

    return run


def g2p_en(words: list[str]) -> tuple[Callable[[], list[list[str]]] | None, str]:
    """g2p-en's neural prediction for every word, or None and why it is skipped."""
    try:
        from g2p_en import G2p  # type: ignore[import-not-found]
    except ImportError as e:
        return None, f"g2p-en skipped: not importable ({e}); pip install g2p-en to compare"
    try:
        model = G2p()
    except Exception as e:  # NLTK data it cannot find offline, a broken install
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, f"g2p-en skipped: installed but it cannot start ({first})"
    stress = re.compile(r"\d")

    def run() -> list[list[str]]:
        return [[stress.sub("", p) for p in model.predict(w)] for w in words]

    return run, "g2p-en: its network (G2p.predict), one word at a time as its API runs"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("ckpt", nargs="?", help="a task=seq2seq checkpoint (CMUdict)")
    p.add_argument("--path", default=None, help="cmudict.dict to read (default: the run's data)")
    p.add_argument("--batch-size", type=int, default=256, help="words per decoding batch")
    p.add_argument("--train-batch", type=int, default=256, help="words per training step")
    p.add_argument("--train-steps", type=int, default=10, help="timed steps per round (0: skip)")
    p.add_argument("--train-rounds", type=int, default=5, help="alternating rounds")
    p.add_argument("--train-warmup", type=int, default=3, help="untimed steps first")
    args = p.parse_args()
    if args.train_steps > 0:
        print_training_step(
            args.train_batch, args.train_steps, args.train_rounds, args.train_warmup
        )
    if not args.ckpt:
        print(
            "bench_g2p: decoding skipped, no checkpoint given (python scripts/bench_g2p.py <ckpt>)"
        )
        return
    print()
    cfg, module, datamodule = load_run(args.ckpt)
    if args.path:
        datamodule.path = args.path
    datamodule.setup()
    test = datamodule.splits["test"]
    words = [datamodule.decode_source(s) for s in test.sources]
    references = [[datamodule.target_tokens_of(r) for r in refs] for refs in test.references]
    print(
        f"{len(words)} test words, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"batches of {args.batch_size}"
    )
    print(f"{'model':<34} {'WER %':>7} {'PER %':>7} {'words/s':>9}")
    for beam in (1, 5):
        outputs, seconds = timed(ours(module, datamodule, args.batch_size, beam))
        wer, per = rates(outputs, references)
        name = f"seqmodels, {'greedy' if beam == 1 else f'beam {beam}'}"
        print(f"{name:<34} {wer:7.2f} {per:7.2f} {len(words) / seconds:9.0f}")
    run, note = g2p_en(words)
    if run is None:
        print(note)
    else:
        outputs, seconds = timed(run)
        wer, per = rates(outputs, references)
        print(f"{'g2p-en (measured here)':<34} {wer:7.2f} {per:7.2f} {len(words) / seconds:9.0f}")
        print(note)
    print(f"{'g2p-en (its README)':<34} {'27.20':>7} {'':>7} {G2P_EN_QUOTED:9d}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
