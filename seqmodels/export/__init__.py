"""Write a checkpoint's inference path to a file other runtimes load: `seqmodels-export`.

    seqmodels-export ckpt_path=<run>/checkpoints/last.ckpt format=onnx   # -> last.onnx beside it
    seqmodels-export ckpt_path=... format=pt2 out=model.pt2              # torch.export's archive

What is written (programs.py): a classifier's probabilities from token ids and
lengths (IMDB, parity) or from raw pixels (MNIST, with the datamodule's own
encoding inside), a forecaster's forecast from its window, a language model's
one step (token, state -> logits, state). The batch size is free everywhere,
and the length where the task has one (token classifiers). A seq2seq model
(G2P) is two programs, its encoder and one decoder step, in two files
(`<out>.encoder.onnx`, `<out>.step.onnx`), with the search over them in
seq2seq.py (`transduce_onnx`: seqmodels-predict's outputs from onnxruntime).

- `format=onnx`: torch's exporter (torch.export, then onnxscript), with the
  recurrent layers written as ONNX's own LSTM/GRU/RNN operators
  (recurrent_onnx.py), which take any length. Layers without a torch
  formulation (a cell of one's own) become an ONNX Scan over their steps,
  which takes any length too; `length=N` fixes the length instead (the steps
  unrolled), as does data.max_len if the Scan cannot be exported.
- `format=pt2`: `torch.export.save` of the program, for torch.export.load,
  AOTInductor or ExecuTorch. The length stays free (the layers trace a
  symbolic length as torch's scan), unless fixed as above.

The file's metadata carries the class names, the vocabulary (id -> word) or
the characters, and the task; ONNX keeps it as `metadata_props["seqmodels"]`,
pt2 as the extra file `seqmodels.json`. Before the file is written, it is run
on inputs of another batch size (and length) than the traced ones (with
onnxruntime for ONNX) and compared with PyTorch: a mismatch above 1e-4 writes
nothing. The file is written whole or not at all; the folders of `out=` are
made when missing, and an `out=` that cannot be written is one line, said
before the export starts.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seqmodels.checkpoint import load_run
from seqmodels.data.files import atomic_write, writable_folder
from seqmodels.errors import UserError
from seqmodels.export.programs import Program, program_for, programs_for
from seqmodels.export.recurrent_onnx import (
    translation_table,
    with_onnx_layers,
)

FORMATS = ("onnx", "pt2")
ONNX_OPSET = 18  # onnxscript's torchlib in torch 2.13 writes opset 18
TOLERANCE = 1e-4
RECURRENT_OPS = ("LSTM", "GRU", "RNN", "Scan", "Loop")
CHECK_BATCH, CHECK_TIME = 3, 7  # not the traced 2 and 5


class ExportMismatch(RuntimeError):
    """The exported file does not give the model's outputs (a bug, not a user's mistake)."""


def export(cfg: Mapping[str, Any], stream: Any = None) -> Path:
    """Write the file, print what it holds and how it was checked (to `stream`, default
    stdout); return its path."""
    fmt = cfg.get("format")
    if fmt not in FORMATS:
        raise UserError(
            f"format={fmt}: give format=onnx (onnxruntime and other ONNX runtimes) "
            "or format=pt2 (torch.export's archive)"
        )
    ckpt_path = cfg.get("ckpt_path")
    _, task, datamodule = load_run(ckpt_path)
    path = Path(cfg.get("out") or Path(str(ckpt_path)).with_suffix(f".{fmt}")).expanduser()
    if path.is_dir():
        raise UserError(
            f"out={path} is a folder: give a file name, e.g. out={path / f'model.{fmt}'}"
        )
    writable_folder(path.parent, path)  # now, not after minutes of exporting
    length = cfg.get("length")
    names = list(programs_for(task, datamodule))
    if names != [""]:  # several programs (a seq2seq model's encoder and step), a file each
        lines = write_programs(task, datamodule, path, fmt)
        path = program_paths(path, fmt, names)[names[0]]
    elif fmt == "onnx":
        lines = write_onnx(task, datamodule, path, length)
    else:
        lines = write_pt2(task, datamodule, path, length)
    for line in lines:
        print(line, file=stream)
    return path


# -- ONNX ----------------------------------------------------------------------------------


def onnx_program(task: Any, datamodule: Any, length: int | None = None) -> tuple[Program, Any]:
    """(the program, torch's ONNXProgram) with the recurrent layers as ONNX operators, and
    the others as an ONNX Scan over any length (their scan under torch.export); a fixed
    length (length=, data.max_len) only where that fails."""
    program = program_for(with_onnx_layers(task), datamodule)
    if length is None:
        try:
            return program, _to_onnx(program)
        except Exception:
            if not has_time(program):
                raise
    program = fixed_length(program, datamodule, length)
    return program, _to_onnx(program)


def _to_onnx(program: Program) -> Any:
    with quiet_exporter():
        return torch.onnx.export(
            program.module,
            tuple(program.inputs.values()),
            dynamo=True,
            verbose=False,
            input_names=list(program.inputs),
            output_names=program.outputs,
            dynamic_shapes=dynamic_shapes(program),
            opset_version=ONNX_OPSET,
            custom_translation_table=translation_table(),
        )


def write_onnx(task: Any, datamodule: Any, path: Path, length: int | None = None) -> list[str]:
    need("onnx", "onnxscript", "onnxruntime", what="format=onnx")
    import onnxruntime as ort

    program, exported = onnx_program(task, datamodule, length)
    model = exported.model_proto
    entry = model.metadata_props.add()
    entry.key, entry.value = "seqmodels", json.dumps(program.metadata)
    data = model.SerializeToString()

    check = program.example(CHECK_BATCH, CHECK_TIME if has_time(program) else None)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in check.items()})
    diff = compare(eager(task, datamodule, check), [torch.from_numpy(g) for g in got])
    with atomic_write(path) as f:
        f.write(data)
    ops = [n.op_type for n in model.graph.node if n.op_type in RECURRENT_OPS]
    counted = ", ".join(f"{ops.count(o)} {o}" for o in RECURRENT_OPS if o in ops)
    return [
        f"wrote {path} ({len(data) / 1e6:.1f} MB): ONNX opset {ONNX_OPSET}, recurrent layers as "
        f"{counted or 'unrolled steps'}",
        *signature(program),
        f"checked: onnxruntime gives PyTorch's outputs to {diff:.1e} on {describe(program)}",
    ]


# -- pt2 -----------------------------------------------------------------------------------


def export_pt2(task: Any, datamodule: Any, length: int | None = None) -> tuple[Program, Any]:
    """(the program, its ExportedProgram): the length free (the layers trace a symbolic
    length as torch's scan), unless length= fixes it or that fails."""
    program = program_for(task, datamodule)
    if length is None:
        try:
            with quiet_exporter():
                return program, torch.export.export(
                    program.module,
                    tuple(program.inputs.values()),
                    dynamic_shapes=dynamic_shapes(program),
                )
        except Exception:
            if not has_time(program):
                raise
    program = fixed_length(program, datamodule, length)  # the layers specialise the length
    with quiet_exporter():
        return program, torch.export.export(
            program.module, tuple(program.inputs.values()), dynamic_shapes=dynamic_shapes(program)
        )


def write_pt2(task: Any, datamodule: Any, path: Path, length: int | None = None) -> list[str]:
    program, ep = export_pt2(task, datamodule, length)
    check = program.example(CHECK_BATCH, CHECK_TIME if has_time(program) else None)
    got = ep.module()(*check.values())
    diff = compare(eager(task, datamodule, check), list(got) if isinstance(got, tuple) else [got])
    buffer = io.BytesIO()
    torch.export.save(ep, buffer, extra_files={"seqmodels.json": json.dumps(program.metadata)})
    with atomic_write(path) as f:
        f.write(buffer.getvalue())
    return [
        f"wrote {path} ({buffer.tell() / 1e6:.1f} MB): torch.export program "
        "(torch.export.load(path).module() runs it)",
        *signature(program),
        f"checked: the exported program gives PyTorch's outputs to {diff:.1e} on "
        f"{describe(program)}",
    ]


# -- several programs ------------------------------------------------------------------


def program_paths(path: Path, fmt: str, names: list[str]) -> dict[str, Path]:
    """`g2p.onnx` and programs encoder, step -> g2p.encoder.onnx, g2p.step.onnx."""
    stem = path.with_suffix("") if path.suffix == f".{fmt}" else path
    return {n: stem.with_name(f"{stem.name}.{n}.{fmt}") if n else path for n in names}


def write_programs(task: Any, datamodule: Any, path: Path, fmt: str) -> list[str]:
    """A task's several programs (`TaskModule.inference_programs`), a file each beside
    `path`, each checked against the model on inputs of another batch size and length
    (an input that an earlier program outputs is that output: a decoder step reads the
    encoder's states); all written, or none."""
    if fmt == "onnx":
        need("onnx", "onnxscript", "onnxruntime", what="format=onnx")
    programs = programs_for(with_onnx_layers(task) if fmt == "onnx" else task, datamodule)
    reference = programs_for(task, datamodule)
    files = program_paths(path, fmt, list(programs))
    produced: dict[str, Tensor] = {}
    blobs, diffs, lines = {}, [], []
    for name, program in programs.items():
        check = program.example(CHECK_BATCH, CHECK_TIME if has_time(program) else None)
        check = {k: produced.get(k, v) for k, v in check.items()}
        with torch.no_grad():
            out = reference[name].module(*check.values())
        want = list(out) if isinstance(out, tuple) else [out]
        produced.update(zip(program.outputs, want, strict=True))
        if fmt == "onnx":
            import onnxruntime as ort

            model = _to_onnx(program).model_proto
            entry = model.metadata_props.add()
            entry.key, entry.value = "seqmodels", json.dumps(program.metadata)
            blobs[name] = model.SerializeToString()
            session = ort.InferenceSession(blobs[name], providers=["CPUExecutionProvider"])
            got = [
                torch.from_numpy(g)
                for g in session.run(None, {k: v.numpy() for k, v in check.items()})
            ]
            ops = [n.op_type for n in model.graph.node if n.op_type in RECURRENT_OPS]
            if ops:
                counted = ", ".join(f"{ops.count(o)} {o}" for o in RECURRENT_OPS if o in ops)
                lines.append(f"{name}: recurrent layers as {counted}")
        else:
            with quiet_exporter():
                ep = torch.export.export(
                    program.module,
                    tuple(program.inputs.values()),
                    dynamic_shapes=dynamic_shapes(program),
                )
            with torch.no_grad():
                out = ep.module()(*check.values())
            got = list(out) if isinstance(out, tuple) else [out]
            buffer = io.BytesIO()
            extra = {"seqmodels.json": json.dumps(program.metadata)}
            torch.export.save(ep, buffer, extra_files=extra)
            blobs[name] = buffer.getvalue()
        diffs.append(compare(floats(want), floats(got)))
        lines += [f"{name}: {line}" for line in signature(program)]
    for name, data in blobs.items():
        with atomic_write(files[name]) as f:
            f.write(data)
    written = " and ".join(f"{files[n]} ({len(blobs[n]) / 1e6:.1f} MB)" for n in files)
    kind = f"ONNX opset {ONNX_OPSET}" if fmt == "onnx" else "torch.export programs"
    runtime = "onnxruntime gives" if fmt == "onnx" else "the exported programs give"
    search = programs[next(iter(programs))].metadata.get("search")
    notes = [f"search: {search} runs over the files"] if search and fmt == "onnx" else []
    return [
        f"wrote {written}: {', '.join(programs)}, {kind}",
        *lines,
        *notes,
        f"checked: {runtime} PyTorch's outputs to {max(diffs):.1e} on a batch of "
        f"{CHECK_BATCH}, {CHECK_TIME} steps, each program on the one before's outputs",
    ]


def floats(tensors: list[Tensor]) -> list[Tensor]:
    """Bool outputs (a mask) as 0/1 floats, for compare."""
    return [t.float() if t.dtype == torch.bool else t for t in tensors]


# -- shared --------------------------------------------------------------------------------


def dynamic_shapes(program: Program) -> tuple[dict[int, Any], ...]:
    dims = {"batch": torch.export.Dim("batch", min=1), "time": torch.export.Dim("time", min=1)}
    return tuple(
        {axis: dims[name] for axis, name in program.dynamic.get(k, {}).items()}
        for k in program.inputs
    )


def has_time(program: Program) -> bool:
    return any("time" in dims.values() for dims in program.dynamic.values())


def fixed_length(program: Program, datamodule: Any, length: int | None) -> Program:
    """The program traced at one length (padded inputs with lengths give the same results)."""
    if not has_time(program):
        return program
    steps = length or getattr(datamodule, "max_len", None)
    if not steps:
        raise UserError(
            "this model's recurrent layers unroll at a fixed length when exported (a cell "
            "without a torch formulation), and the data sets no maximum length: pass length=N"
        )
    program.inputs = program.example(2, int(steps))
    program.dynamic = {
        k: {a: n for a, n in d.items() if n != "time"} for k, d in program.dynamic.items()
    }
    program.metadata["fixed_length"] = int(steps)
    return program


def eager(task: Any, datamodule: Any, inputs: dict[str, Tensor]) -> list[Tensor]:
    """The checkpoint's own module on `inputs`, as seqmodels-predict runs it."""
    with torch.inference_mode():
        out = program_for(task, datamodule).module(*inputs.values())
    return list(out) if isinstance(out, tuple) else [out]


def compare(want: list[Tensor], got: list[Tensor]) -> float:
    """The largest |difference| / (1 + |value|): absolute for probabilities and logits,
    relative for a forecast in the data's units (hundreds of MW carry float32's ~1e-7
    relative rounding as ~1e-4 absolute)."""
    pairs = [(w.detach(), g.detach()) for w, g in zip(want, got, strict=True)]
    diff = max(float(((w - g).abs() / (1 + w.abs())).max()) for w, g in pairs)
    if not diff <= TOLERANCE:
        raise ExportMismatch(
            f"the exported program differs from the model by {diff:.2e} "
            f"(more than {TOLERANCE}); nothing was written"
        )
    return diff


def signature(program: Program) -> list[str]:
    def dims(name: str, x: Tensor) -> str:
        named = program.dynamic.get(name, {})
        return "(" + ", ".join(named.get(i, str(n)) for i, n in enumerate(x.shape)) + ")"

    inputs = ", ".join(
        f"{k} {str(v.dtype).removeprefix('torch.')} {dims(k, v)}" for k, v in program.inputs.items()
    )
    lines = [f"inputs:  {inputs}", f"outputs: {', '.join(program.outputs)}"]
    if "fixed_length" in program.metadata:
        lines.append(
            f"length:  fixed at {program.metadata['fixed_length']} steps (pad shorter "
            "inputs; lengths= marks each one's own)"
        )
    return lines


def describe(program: Program) -> str:
    """The check's input sizes, which differ from the traced ones (batch 2, 5 steps)."""
    text = f"a batch of {CHECK_BATCH}"
    return text + (f", {CHECK_TIME} steps" if has_time(program) else "")


def need(*modules: str, what: str) -> None:
    """A one-line UserError naming the extra to install when a module is missing."""
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            raise UserError(
                f"{what} needs {name}: pip install 'seqmodels[export]' "
                "(onnx, onnxscript, onnxruntime)"
            ) from None


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporters' progress lines and warnings about torch internals are not the user's."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
