"""The import graph of prunelm_tf has no circles, function-level imports included.

A module imports another at module level or inside a function (a lazy import, usually
added to break a circle); both are edges here. ``from package import module`` is an edge to
that module; ``from package import name`` to the package. A circle found is reported with
the modules on it.
"""

import ast
import os

from tests.conftest import REPO_ROOT

PACKAGE = "prunelm_tf"


def _modules():
  """{dotted module name: path} of every module of the package."""
  out = {}
  root = os.path.join(REPO_ROOT, PACKAGE)
  for folder, _, names in os.walk(root):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        dotted = os.path.relpath(path[:-3], REPO_ROOT).replace(os.sep, ".")
        out[dotted[:-len(".__init__")] if dotted.endswith(".__init__") else dotted] = path
  return out


def import_graph():
  """{module: set of prunelm_tf modules it imports}, module-level and lazy alike."""
  modules = _modules()

  def known(name):
    while name and name not in modules:
      name = name.rpartition(".")[0]
    return name

  graph = {m: set() for m in modules}
  for module, path in modules.items():
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      targets = []
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          parts = package.split(".")[:len(package.split(".")) - node.level + 1]
          base = ".".join(parts + ([base] if base else []))
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                   for a in node.names]
      for target in targets:
        if target.startswith(PACKAGE):
          resolved = known(target)
          if resolved and resolved != module:
            graph[module].add(resolved)
  return graph


def circles(graph):
  """The strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []
  counter = [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def test_the_package_has_no_import_circles():
  graph = import_graph()
  assert "prunelm_tf.compression.methods.retrain" in graph  # the walk found the package
  assert circles(graph) == []


def test_a_circle_is_found():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
  assert circles(graph) == [["a", "b", "c"]]
