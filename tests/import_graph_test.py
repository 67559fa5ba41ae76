"""The package's import graph has no cycle, counting imports inside functions too (a lazy import that closes a cycle
is still a cycle: the two modules cannot be understood or changed apart)."""
import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'superconsistency')


def _module_name(path):
  rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, '.')
  return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def import_graph():
  graph, from_imports = {}, []
  for root, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(root, name)
        module = _module_name(path)
        deps = set()
        for node in ast.walk(ast.parse(open(path).read())):
          if isinstance(node, ast.Import):
            deps |= {a.name for a in node.names}
          elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:   # relative import
              base = '.'.join(module.split('.')[:-node.level] + [node.module])
            from_imports.append((module, base, [f'{base}.{a.name}' for a in node.names]))
        graph[module] = deps
  # `from pkg import a, b` depends on the submodules pkg.a and pkg.b; on pkg itself (its __init__) only when some
  # imported name is not a submodule (a name that __init__ defines)
  for module, base, names in from_imports:
    graph[module] |= set(names) | ({base} if any(n not in graph for n in names) else set())
  return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def find_cycle(graph):
  """A list of modules forming a cycle, or None (depth-first search)."""
  state, stack = {}, []

  def visit(m):
    state[m] = 'open'
    stack.append(m)
    for d in sorted(graph[m]):
      if state.get(d) == 'open':
        return stack[stack.index(d):] + [d]
      if d not in state:
        found = visit(d)
        if found:
          return found
    state[m] = 'done'
    stack.pop()
    return None

  for m in sorted(graph):
    if m not in state:
      found = visit(m)
      if found:
        return found
  return None


def test_the_package_has_no_import_cycle():
  graph = import_graph()
  assert len(graph) > 20 and 'superconsistency.runner' in graph['superconsistency.experiments']
  cycle = find_cycle(graph)
  assert cycle is None, ' -> '.join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
  graph = import_graph()
  graph['superconsistency.results'] = graph['superconsistency.results'] | {'superconsistency.runner'}
  assert find_cycle(graph) is not None
