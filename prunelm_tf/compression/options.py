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
  # The default; None when the methods sharing the flag default differently (each
  # method then keeps its own default while the flag is absent, see ``defaults``).
  default: Any
  help: str
  # The values the flag takes: every method's (a method takes its own, ``choices_of``).
  choices: Optional[Tuple[str, ...]]
  lower: Optional[float]
  upper: Optional[float]
  # (method name, path of the field inside its Options, e.g. ("schedule", "kind")).
  targets: Tuple[Tuple[str, Tuple[str, ...]], ...]
  # The flag's type (the default's, or the field's ``kind`` when it defaults to None).
  kind: Optional[type] = None
  # (method name, its default, its choices or None, its help) of every method taking the flag.
  per_method: Tuple[Tuple[str, Any, Optional[Tuple[str, ...]], str], ...] = ()

  def choices_of(self, method: str) -> Optional[Tuple[str, ...]]:
    """The values ``method`` takes (None: any of the flag's type)."""
    return next((c for m, _, c, _ in self.per_method if m == method), self.choices)

  @property
  def same_for_all(self) -> bool:
    """Whether every method sharing the flag has its default and its choices."""
    return len({(repr(d), c) for _, d, c, _ in self.per_method}) <= 1


def _walk(cls: type, path: Tuple[str, ...] = ()):
  for f in dataclasses.fields(cls):
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if dataclasses.is_dataclass(default):
      yield from _walk(type(default), path + (f.name,))
    elif f.metadata.get("flag"):
      yield f, default, path + (f.name,)


def option_flags(methods: Sequence[Any]) -> List[OptionFlag]:
  """The flags of every method's options; a flag shared by methods is defined once.

  One idea has one flag even where methods differ in its default or its values
  (``--allocation``: uniform for obs, energy for lowrank): such a flag defaults to None,
  so that each method keeps its own default, and takes every method's values; each
  method's Options refuse the values it does not take, naming its own.

  Raises:
    ValueError: two methods declare one flag name with different types.
  """
  flags: Dict[str, OptionFlag] = {}
  for method in methods:
    for f, default, path in _walk(method.Options):
      name = f.metadata["flag"]
      choices = f.metadata["choices"]
      spec = OptionFlag(name, default, f.metadata["help"], choices,
                        f.metadata["lower"], f.metadata["upper"], ((method.name, path),),
                        f.metadata.get("kind") or type(default),
                        ((method.name, default, choices, f.metadata["help"]),))
      if name in flags:
        old = flags[name]
        if old.kind is not spec.kind:
          raise ValueError(f"--{name} is declared by two methods with different types "
                           f"({old.kind.__name__} and {spec.kind.__name__}); give one of "
                           "them another name.")
        per_method = old.per_method + spec.per_method
        union = None
        if old.choices and choices:
          union = old.choices + tuple(c for c in choices if c not in old.choices)
        spec = dataclasses.replace(old, targets=old.targets + spec.targets,
                                   per_method=per_method, choices=union)
        if not spec.same_for_all:
          spec = dataclasses.replace(spec, default=None)
      flags[name] = spec
  return list(flags.values())


def check_choice(flag: str, value: Any, choices: Sequence[str], method: str,
                 why: str = "") -> None:
  """Refuses an option value that ``method`` does not take, naming the ones it does.

  Raises:
    ValueError: ``value`` is not in ``choices``.
  """
  if value not in choices:
    raise ValueError(f"--{flag}={value!r} is not a choice of --method={method}: it takes "
                     f"{', '.join(choices)}{why}.")


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
