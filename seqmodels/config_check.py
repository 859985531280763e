"""Check a composed config against the objects it will build, before anything is built.

Every node with a `_target_` is compared with its target's signature: a key the
target does not take, or a value of the wrong type for its annotation
(`trainer.max_epochs=x`, `data.batch_size=abc`), is one UserError that names
the key, instead of a TypeError from deep inside Lightning or torch after the
model was built. Annotations this checker does not understand are skipped:
it only ever refuses what the target would refuse anyway.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from seqmodels.errors import UserError

# Keys of a config node that are not arguments of its target.
NOT_ARGUMENTS = {"_target_", "_recursive_", "_convert_", "_partial_", "_args_"}
# Lightning's scheduler settings, read by seqmodels.tasks.optim, not by the scheduler.
SCHEDULER_SETTINGS = {"interval", "frequency", "monitor"}


def check_config(
    cfg: DictConfig, groups: Sequence[str] = ("data", "task", "model", "trainer")
) -> None:
    """Raise a one-line UserError for the first key or value its target cannot take."""
    for group in groups:
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            check_node(OmegaConf.to_container(node, resolve=True), group)


def check_node(node: Any, key: str) -> None:
    if not isinstance(node, Mapping):
        return
    target = node.get("_target_")
    if isinstance(target, str):
        _check_arguments(node, key, target)
    for name, value in node.items():
        if isinstance(value, Mapping):
            check_node(value, f"{key}.{name}")


def _check_arguments(node: Mapping[str, Any], key: str, target: str) -> None:
    try:
        obj = get_object(target)
    except Exception as err:  # a misspelt name, or a package that is not installed
        cause: BaseException = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise UserError(
            f"{key}._target_={target}: cannot import it ({first}); check the name, and that "
            "its module is in the folder the command runs from or installed in this Python"
        ) from None
    try:
        signature = inspect.signature(obj)
        hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
    except Exception:  # annotations that cannot be resolved: not ours to judge
        return
    params = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name, value in node.items():
        if name in NOT_ARGUMENTS or (name in SCHEDULER_SETTINGS and "lr_scheduler" in target):
            continue
        if name not in params:
            if takes_any:
                continue
            close = difflib.get_close_matches(name, list(params), n=1)
            hint = f" (did you mean {key}.{close[0]}?)" if close else ""
            raise UserError(f"{key}.{name} is not an argument of {target}{hint}")
        if name in hints and not matches(value, hints[name]):
            raise UserError(
                f"{key}.{name}={value!r} must be {describe(hints[name])} (an argument of {target})"
            )


def matches(value: Any, hint: Any) -> bool:
    """Whether a config value (plain data) fits a type annotation; True when unsure."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    container = origin or hint
    if container in (list, tuple, Sequence, typing.Sequence):
        return isinstance(value, (list, tuple))
    if container in (dict, Mapping, typing.Mapping):
        return isinstance(value, Mapping)
    if isinstance(hint, type):
        return isinstance(value, hint) or isinstance(value, (list, dict))  # built by Hydra
    return True  # TypeVar, Callable, ... : not judged


def describe(hint: Any) -> str:
    """An annotation in words: `int | float | None` -> "a number or null"."""
    members = _flatten(hint)
    literals = [
        repr(a)
        for h in members
        if typing.get_origin(h) is typing.Literal
        for a in typing.get_args(h)
    ]
    parts = [_describe_one(h) for h in members if typing.get_origin(h) is not typing.Literal]
    if "a number" in parts and "an integer" in parts:
        parts.remove("an integer")
    if literals:
        parts.insert(0, "one of " + ", ".join(dict.fromkeys(literals)))
    return " or ".join(dict.fromkeys(parts))


def _flatten(hint: Any) -> list[Any]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [m for h in typing.get_args(hint) for m in _flatten(h)]
    return [hint]


def _describe_one(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is bool:
        return "true or false"
    if hint is str:
        return "a string"
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


# Words torch's optimizers use in their ValueErrors, for the argument each names.
_OPTIMIZER_WORDS = {
    "lr": "learning rate",
    "eps": "epsilon",
    "betas": "beta",
    "weight_decay": "weight_decay",
    "momentum": "momentum",
}


def check_optimizer(cfg: DictConfig, key: str = "task.optimizer") -> None:
    """Build the optimizer once on a stand-in parameter: a value it refuses is one line."""
    node = OmegaConf.select(cfg, key)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    args: dict[str, Any] = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
    try:
        instantiate(args, params=[torch.nn.Parameter(torch.zeros(1))])
    except Exception as err:
        cause: BaseException = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        named = [k for k in args if k in message or _OPTIMIZER_WORDS.get(k, "\0") in message]
        where = f"{key}.{named[0]}={args[named[0]]}" if named else key
        raise UserError(f"{where}: {args['_target_']} refuses it ({message})") from None
