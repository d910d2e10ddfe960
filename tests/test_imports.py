"""No import circles: the space interface (`spaces/base.py`) imports no space, a space's tables
and network import their space and never the other way round, and every module imports on its
own in a fresh interpreter."""

import ast
import os
import subprocess
import sys

import close_jax

PACKAGE_DIR = os.path.dirname(os.path.abspath(close_jax.__file__))
ROOT = os.path.dirname(PACKAGE_DIR)


def modules() -> dict[str, str]:
  """Every module of close_jax: dotted name -> file."""
  found = {}
  for directory, _, files in os.walk(PACKAGE_DIR):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(directory, name)
        dotted = os.path.relpath(path, ROOT)[: -len('.py')].replace(os.sep, '.')
        found[dotted.removesuffix('.__init__')] = path
  return found


def imported(name: str, path: str, known: dict[str, str]) -> set[str]:
  """The close_jax modules `name` imports anywhere in its file (function-level imports too: a
  lazy import is still a circle). `from pkg import x` imports `pkg.x` when that is a module, else
  `pkg`; the parent packages Python imports on the way are not counted."""
  package = name if path.endswith('__init__.py') else name.rpartition('.')[0]
  out = set()
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names if alias.name in known)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        parts = package.split('.')[: len(package.split('.')) - node.level + 1]
        base = '.'.join(parts + ([base] if base else []))
      for alias in node.names:
        full = f'{base}.{alias.name}'
        if full in known:
          out.add(full)
        elif base in known:
          out.add(base)
  return out


def import_graph() -> dict[str, set[str]]:
  known = modules()
  return {name: imported(name, path, known) for name, path in known.items()}


def circles(graph: dict[str, set[str]]) -> dict[str, list[str]]:
  """Per module that reaches itself: one import path back to it."""
  found = {}
  for start in sorted(graph):
    parent, stack = {}, [start]
    while stack and start not in found:
      module = stack.pop()
      for target in sorted(graph[module]):
        if target == start:
          path = [module]
          while path[-1] != start:
            path.append(parent[path[-1]])
          found[start] = [start, *reversed(path[:-1]), start]
          break
        if target not in parent:
          parent[target] = module
          stack.append(target)
  return found


def test_the_checker_finds_circles_and_lazy_imports(tmp_path):
  graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
  assert circles(graph)['a'] == ['a', 'b', 'c', 'a']
  assert set(circles(graph)) == {'a', 'b', 'c'}  # d imports a circle but is on none
  # A function-level import counts: that is how spaces/base.py once loaded the spaces that
  # import it.
  path = tmp_path / 'base.py'
  path.write_text('def load():\n  from close_jax.spaces import nb201_space, base\n')
  known = {'close_jax.spaces': '', 'close_jax.spaces.base': '', 'close_jax.spaces.nb201_space': ''}
  found = imported('close_jax.spaces.base', str(path), known)
  assert found == {'close_jax.spaces.nb201_space', 'close_jax.spaces.base'}


def test_no_module_imports_a_module_that_imports_it_back():
  graph = import_graph()
  assert 'close_jax.spaces.nb201' in graph['close_jax.spaces.nb201_space']  # the graph is read
  assert circles(graph) == {}


def test_the_interface_imports_no_close_jax_module():
  assert import_graph()['close_jax.spaces.base'] == set()


def test_every_module_imports_in_a_fresh_interpreter():
  """In sorted order, each first imported by nothing but the modules before it."""
  names = sorted(modules())
  code = 'import importlib, sys\nfor name in sys.argv[1:]:\n  importlib.import_module(name)\n'
  env = {**os.environ, 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu'}
  out = subprocess.run(
    [sys.executable, '-c', code, *names], capture_output=True, text=True, env=env, timeout=300
  )
  assert out.returncode == 0, out.stderr[-3000:]
