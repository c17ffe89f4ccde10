"""Layers only look down: a module imports nothing from a layer above its own.

Every import is read from the source (ast, function-level imports included), so a lazy
import cannot hide an upward dependency. Same-layer imports are allowed. Every module of
the package must have a layer here, so a new one is placed on purpose.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "o3jax"

# Lowest first. A module may import its own layer and the layers before it.
LAYERS = (
  # no o3jax imports at all: the grammar of grounded text, strict JSON, mesh rules, processes,
  # orbax
  (
    "base",
    ("o3jax.grammar", "o3jax.jsonio", "o3jax.sharding", "o3jax.distributed", "o3jax.checkpoint"),
  ),
  ("core", ("o3jax.processing", "o3jax.rewards", "o3jax.models")),
  # workdir reads Hugging Face directories through convert, so it sits beside it
  (
    "io",
    (
      "o3jax.data",
      "o3jax.convert",
      "o3jax.sample",
      "o3jax.sample_inputs",
      "o3jax.viz",
      "o3jax.workdir",
    ),
  ),
  ("eval", ("o3jax.eval",)),
  ("train", ("o3jax.train",)),
  ("apps", ("o3jax.infer", "o3jax.demo", "o3jax.cli")),
)
LEVEL = {prefix: i for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def level_of(module: str) -> int | None:
  """The layer of a module: that of its longest listed prefix (package or module)."""
  best = None
  for prefix, level in LEVEL.items():
    if module == prefix or module.startswith(prefix + "."):
      if best is None or len(prefix) > len(best[0]):
        best = (prefix, level)
  return None if best is None else best[1]


def imported_modules(path: pathlib.Path) -> set[str]:
  here = module_name(path)
  package = here if path.name == "__init__.py" else here.rpartition(".")[0]
  return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> set[str]:
  """Every o3jax (or research) module a source imports, anywhere in it; `from P import X`
  counts as P.X when P.X is a module of the package, else as P."""
  out = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative import
        anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
      for alias in node.names:
        sub = f"{base}.{alias.name}"
        as_path = ROOT / pathlib.Path(*sub.split("."))
        is_module = as_path.with_suffix(".py").exists() or (as_path / "__init__.py").exists()
        out.add(sub if is_module else base)
  return {m for m in out if m == "o3jax" or m.startswith("o3jax.") or m.startswith("research")}


def modules():
  return sorted(p for p in PACKAGE.rglob("*.py") if module_name(p) != "o3jax")


def test_every_module_has_a_layer():
  missing = [module_name(p) for p in modules() if level_of(module_name(p)) is None]
  assert not missing, f"modules with no layer in tests/test_layers.py: {missing}"


def test_no_module_imports_a_layer_above_its_own():
  upward = []
  for path in modules():
    own = level_of(module_name(path))
    for target in sorted(imported_modules(path)):
      level = level_of(target)
      if target.startswith("research"):
        upward.append(f"{module_name(path)} imports {target} (research is never imported)")
      elif level is not None and own is not None and level > own:
        upward.append(
          f"{module_name(path)} ({LAYERS[own][0]}) imports {target} ({LAYERS[level][0]})"
        )
  assert not upward, "imports that look up:\n" + "\n".join(upward)


def test_the_checker_sees_lazy_relative_and_from_imports():
  """The checker itself: function-level, `from P import module` and relative imports in a
  models module are all found, and train/eval rank above models."""
  source = (
    "import numpy\n"
    "def f():\n"
    "  from o3jax.train import run\n"
    "  import o3jax.eval.iou\n"
    "  from ..data.records import load_records\n"
    "  from o3jax.models.config import tiny\n"
  )
  found = imports_in(source, "o3jax.models")
  assert found == {"o3jax.train.run", "o3jax.eval.iou", "o3jax.data.records", "o3jax.models.config"}
  models = level_of("o3jax.models.text")
  assert level_of("o3jax.train.run") > models and level_of("o3jax.eval.iou") > models
  assert level_of("o3jax.data.records") > models and level_of("o3jax.models.config") == models


def test_readme_layout_names_every_part_of_the_tree():
  """The README's layout block names every top-level module and package of o3jax and every
  top-level folder, and everything it names exists."""
  readme = (ROOT / "README.md").read_text()
  block = readme.split("## Layout", 1)[1].split("```", 2)[1]
  named = set()
  for line in block.splitlines():
    for word in line.replace(",", " ").replace("(", " ").replace(")", " ").split():
      if word.startswith(
        ("o3jax/", "configs/", "docs/", "launch/", "scripts/", "tests/", "research/")
      ):
        named.add(word.strip("()").rstrip("/"))
      elif word.endswith(".py") and "/" not in word:  # "demo.py" after "o3jax/infer.py,"
        named.add("o3jax/" + word)
  for name in named:
    assert (ROOT / name).exists(), f"README layout names {name}, which does not exist"
  tree = {
    f"o3jax/{p.name}"
    for p in PACKAGE.iterdir()
    if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").exists()
  }
  tree |= {"configs", "docs", "launch", "scripts", "tests", "research"}
  missing = sorted(tree - named)
  assert not missing, f"README layout does not name {missing}"
