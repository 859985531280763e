"""A task=seq2seq grapheme-to-phoneme checkpoint beside g2p-en, on the same CMUdict test words.

    python scripts/bench_g2p.py <run>/checkpoints/epoch_NNN.ckpt
    python scripts/bench_g2p.py A.ckpt --path cmudict.dict --batch-size 256

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
Without a checkpoint the script says so and exits 0 (`make bench` runs every
scripts/bench_*.py without arguments).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable

import torch

from seqmodels.checkpoint import load_run
from seqmodels.data.seq2seq import BOS, EOS, PAD
from seqmodels.nn import beam_search, greedy_search
from seqmodels.tasks.sequence_errors import SequenceErrorRate, TokenErrorRate

G2P_EN_QUOTED = 1265  # words/s, g2p-en's README


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
    test = datamodule.splits["test"]
    max_len = int(module.hparams["decode"]["max_len"])
    penalty = float(module.hparams["decode"]["length_penalty"])

    def run() -> list[list[str]]:
        outputs: list[list[str]] = []
        with torch.inference_mode():
            for i in range(0, len(test), batch_size):
                items = [test[j] for j in range(i, min(i + batch_size, len(test)))]
                lengths = torch.tensor([len(s) for s, _, _ in items])
                source = torch.full((len(items), int(lengths.max())), PAD, dtype=torch.long)
                for row, (s, _, _) in enumerate(items):
                    source[row, : len(s)] = s
                state = module.encode(source, lengths)
                if beam == 1:
                    found = greedy_search(module.decoder, state, max_len, bos=BOS, eos=EOS).tokens
                else:
                    found = [
                        h[0][0]
                        for h in beam_search(
                            module.decoder, state, beam, max_len, penalty, bos=BOS, eos=EOS
                        )
                    ]
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
    p.add_argument("--batch-size", type=int, default=256)
    args = p.parse_args()
    if not args.ckpt:
        print("bench_g2p: skipped, no checkpoint given (python scripts/bench_g2p.py <ckpt>)")
        return
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
