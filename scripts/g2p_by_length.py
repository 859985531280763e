"""G2P accuracy by word length: test WER and PER per bin of letters, greedy and beam 5.

    python scripts/g2p_by_length.py <run>/checkpoints/epoch_NNN.ckpt
    python scripts/g2p_by_length.py A.ckpt --set attention_window=[1,3] eos_margin=1
    python scripts/g2p_by_length.py A.ckpt --joined 500 --set attention_window=[1,3]

An accuracy measurement, not a timing: any CPU, any load, gives the same
numbers. For each decoding (the checkpoint's own `task.decode`, and with the
`--set` overrides of task.decode beside it when given), a table of the test
words by length in letters (1-4, 5-6, 7-8, 9-10, 11-12, 13-15, 16+): how many,
WER and PER with greedy search and with beam 5, and the outputs' length over
the closest reference's (below 1: outputs cut short). It first says how long
the training words are, since a model that never saw a word as long as the
one it reads may stop early.

CMUdict's test words are at most 20 letters, so the table cannot show what
happens beyond the training words' lengths. `--joined N` adds N made-up long
words: two test words of 10 letters or more written as one (`counterchallenge`
+ `superminicomputer`), whose reference is the two pronunciations in a row. A
proxy (a real compound is not always pronounced as its parts), but an output
cut short shows plainly in its length ratio and PER.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence

import torch
from bench_g2p import rates  # scripts/ is sys.path[0] when this script runs
from omegaconf import OmegaConf

from seqmodels.checkpoint import load_run
from seqmodels.data.seq2seq import PAD

BINS = ((1, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 15), (16, None))
BEAMS = (1, 5)


def transcribe(module, sources: Sequence[torch.Tensor], beam: int, batch_size: int) -> list:
    """The module's search (its task.decode) over source id tensors, in batches."""
    outputs: list[list[int]] = []
    with torch.inference_mode():
        for i in range(0, len(sources), batch_size):
            chunk = sources[i : i + batch_size]
            lengths = torch.tensor([len(s) for s in chunk])
            source = torch.full((len(chunk), int(lengths.max())), PAD, dtype=torch.long)
            for row, s in enumerate(chunk):
                source[row, : len(s)] = s
            outputs += module.search(module.encode(source, lengths), beam)
    return outputs


def length_ratio(outputs: list[list[str]], references: list[list[list[str]]]) -> float:
    """Total output length over the total length of each word's closest-length reference."""
    closest = [
        min(refs, key=lambda r: abs(len(r) - len(o)))
        for o, refs in zip(outputs, references, strict=True)
    ]
    return sum(len(o) for o in outputs) / max(1, sum(len(r) for r in closest))


def table(
    title: str,
    words: list[str],
    references: list[list[list[str]]],
    decode: Callable[[int], list[list[str]]],
    bins: Sequence[tuple[int, int | None]],
) -> None:
    outputs = {beam: decode(beam) for beam in BEAMS}
    print(title)
    head = "  ".join(f"{'greedy' if b == 1 else f'beam {b}':>22}" for b in BEAMS)
    print(f"{'letters':<8} {'words':>6}  {head}")
    print(f"{'':<8} {'':>6}  " + "  ".join(f"{'WER %':>7} {'PER %':>6} {'len':>6}" for _ in BEAMS))
    rows = [(f"{lo}-{hi}" if hi else f"{lo}+", lo, hi or 10**9) for lo, hi in bins]
    for name, lo, hi in [*rows, ("all", 0, 10**9)]:
        picked = [i for i, w in enumerate(words) if lo <= len(w) <= hi]
        if not picked:
            continue
        cells = []
        for beam in BEAMS:
            out = [outputs[beam][i] for i in picked]
            refs = [references[i] for i in picked]
            wer, per = rates(out, refs)
            cells.append(f"{wer:7.2f} {per:6.2f} {length_ratio(out, refs):6.3f}")
        print(f"{name:<8} {len(picked):6d}  " + "  ".join(cells))
    print()
    sys.stdout.flush()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("ckpt", help="a task=seq2seq checkpoint (CMUdict)")
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="task.decode overrides, e.g. attention_window=[1,3] eos_margin=1",
    )
    p.add_argument("--path", default=None, help="cmudict.dict to read (default: the run's data)")
    p.add_argument("--batch-size", type=int, default=256, help="words per decoding batch")
    p.add_argument("--joined", type=int, default=0, help="made-up long words to add (0: none)")
    p.add_argument("--seed", type=int, default=0, help="which test words --joined pairs")
    p.add_argument(
        "--split", default="test", choices=("test", "val"), help="val: to choose settings by"
    )
    args = p.parse_args()

    _, module, datamodule = load_run(args.ckpt)
    if args.path:
        datamodule.path = args.path
    datamodule.setup()
    train, evaluated = datamodule.splits["train"], datamodule.splits[args.split]
    train_words = {tuple(s.tolist()) for s in train.sources}
    counts = Counter(len(w) for w in train_words)
    longest = max(counts)
    print(
        f"training words: {len(train_words)}, the longest {longest} letters; "
        f"{sum(n for k, n in counts.items() if k > 15)} of more than 15 letters, "
        f"{sum(n for k, n in counts.items() if k > 20)} of more than 20"
    )
    words = [datamodule.decode_source(s) for s in evaluated.sources]
    references = [[datamodule.target_tokens_of(r) for r in refs] for refs in evaluated.references]
    print(
        f"{args.split} words: {len(words)}, the longest {max(map(len, words))} letters; "
        f"{sum(len(w) > 15 for w in words)} of more than 15"
    )
    print()
    sources = list(evaluated.sources)
    joined_words: list[str] = []
    joined_refs: list[list[list[str]]] = []
    joined_sources: list[torch.Tensor] = []
    if args.joined:
        rng = random.Random(args.seed)
        long = [i for i, w in enumerate(words) if len(w) >= 10]
        for _ in range(args.joined):
            a, b = rng.sample(long, 2)
            joined_words.append(words[a] + words[b])
            joined_refs.append([references[a][0] + references[b][0]])
            joined_sources.append(torch.cat((evaluated.sources[a], evaluated.sources[b])))

    base = dict(module.hparams["decode"])
    settings = [("the checkpoint's decode", base)]
    if args.set:
        overrides = OmegaConf.to_container(OmegaConf.from_dotlist(args.set))
        settings.append((f"with {' '.join(args.set)}", {**base, **overrides}))  # type: ignore[dict-item]
    for name, decode in settings:
        module.hparams["decode"] = decode
        module.search_options()  # a bad override: one line
        shown = {k: v for k, v in decode.items() if k != "beam_size"}
        print(f"== {name}: {shown}")

        def run(beam: int, pool: list[torch.Tensor]) -> list[list[str]]:
            found = transcribe(module, pool, beam, args.batch_size)
            return [datamodule.target_tokens_of(ids) for ids in found]

        table(f"CMUdict {args.split} words", words, references, lambda b: run(b, sources), BINS)
        if joined_words:
            table(
                f"{len(joined_words)} made-up long words (two {args.split} words of 10+ letters as one)",
                joined_words,
                joined_refs,
                lambda b: run(b, joined_sources),
                ((20, 24), (25, 29), (30, 34), (35, None)),
            )


if __name__ == "__main__":
    main()
