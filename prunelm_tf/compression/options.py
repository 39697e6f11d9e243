"""Method options: fields that carry their own flag, help, choices and bounds.

A method's options are a frozen dataclass whose fields are made with
`option(...)`; nested option dataclasses are walked. The entry point turns
them into absl flags (`option_flags`) and back into options, so adding an
option is a change in its method's module only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple


def option(default: Any, help: str, *, flag: Optional[str] = None,  # pylint: disable=redefined-builtin
           choices: Optional[Sequence[str]] = None, lower: Optional[float] = None,
           upper: Optional[float] = None, recorded_when_set: bool = False,
           kind: Optional[type] = None) -> Any:
  """A method option field; ``flag`` (if given) exposes it as ``--flag``.

  Args:
    default: the default value (its type gives the flag's type).
    help: one sentence for the flag's help and the docs.
    flag: the command-line flag name, or None for a library-only option.
    choices: allowed string values (an enum flag).
    lower, upper: inclusive bounds of a numeric flag.
    recorded_when_set: left out of the record (`options_record`) at its
      default: for fields added after run folders existed, so that those
      folders, whose records lack the field, still resume.
    kind: the flag's type when the default is None (unset: the flag is
      absent and the option keeps None), e.g. ``float``.
  """
  if default is None and flag and kind is None:
    raise ValueError(f"option --{flag} defaults to None: give its kind (e.g. kind=float).")
  return dataclasses.field(default=default, metadata={
      "help": help, "flag": flag, "choices": tuple(choices) if choices else None,
      "lower": lower, "upper": upper, "recorded_when_set": recorded_when_set,
      "kind": kind or (type(default) if default is not None else None)})


def options_record(options) -> Dict[str, Any]:
  """The JSON form of method options (config.json, variant records).

  Fields made with ``recorded_when_set=True`` are left out at their default;
  nested option dataclasses are walked.
  """
  record = {}
  for f in dataclasses.fields(options):
    value = getattr(options, f.name)
    if f.metadata.get("recorded_when_set") and value == f.default:
      continue
    if dataclasses.is_dataclass(value):
      value = options_record(value)
    elif isinstance(value, tuple):
      value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
    record[f.name] = value
  return record


def options_from_dict(cls: type, d: Mapping[str, Any]):
  """Builds dataclass ``cls`` from a dict, recursing into nested option dataclasses.

  Raises:
    ValueError: an unknown key (a typo in a config file).
  """
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = set(d) - set(fields)
  if unknown:
    raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}; known: {sorted(fields)}.")
  kwargs = {}
  for name, value in d.items():
    default = fields[name].default
    factory = fields[name].default_factory
    nested = factory() if factory is not dataclasses.MISSING else default
    if dataclasses.is_dataclass(nested) and isinstance(value, Mapping):
      value = options_from_dict(type(nested), value)
    elif isinstance(value, list):
      value = tuple(value)
    kwargs[name] = value
  return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class OptionFlag:
  """One command-line flag generated from an option field."""
  name: str
  default: Any
  help: str
  choices: Optional[Tuple[str, ...]]
  lower: Optional[float]
  upper: Optional[float]
  # (method name, path of the field inside its Options, e.g. ("schedule", "kind")).
  targets: Tuple[Tuple[str, Tuple[str, ...]], ...]
  # The flag's type (the default's, or the field's ``kind`` when it defaults to None).
  kind: Optional[type] = None


def _walk(cls: type, path: Tuple[str, ...] = ()):
  for f in dataclasses.fields(cls):
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if dataclasses.is_dataclass(default):
      yield from _walk(type(default), path + (f.name,))
    elif f.metadata.get("flag"):
      yield f, default, path + (f.name,)


def option_flags(methods: Sequence[Any]) -> List[OptionFlag]:
  """The flags of every method's options; a flag shared by methods is defined once.

  Raises:
    ValueError: two methods declare one flag name with different defaults or types.
  """
  flags: Dict[str, OptionFlag] = {}
  for method in methods:
    for f, default, path in _walk(method.Options):
      name = f.metadata["flag"]
      spec = OptionFlag(name, default, f.metadata["help"], f.metadata["choices"],
                        f.metadata["lower"], f.metadata["upper"], ((method.name, path),),
                        f.metadata.get("kind") or type(default))
      if name in flags:
        old = flags[name]
        if old.kind is not spec.kind or old.default != default:
          raise ValueError(f"--{name} is declared by two methods with different defaults "
                           f"({old.default!r} and {default!r}); give one of them another name.")
        spec = dataclasses.replace(old, targets=old.targets + spec.targets)
      flags[name] = spec
  return list(flags.values())


def options_with(options, path: Tuple[str, ...], value):
  """A copy of frozen ``options`` with the field at ``path`` replaced."""
  if len(path) == 1:
    return dataclasses.replace(options, **{path[0]: value})
  inner = getattr(options, path[0])
  return dataclasses.replace(options, **{path[0]: options_with(inner, path[1:], value)})


def nested_dict(values: Mapping[Tuple[str, ...], Any]) -> Dict[str, Any]:
  """``{("schedule", "kind"): v}`` -> ``{"schedule": {"kind": v}}`` (for `options_from_dict`)."""
  out: Dict[str, Any] = {}
  for path, value in values.items():
    node = out
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return out
