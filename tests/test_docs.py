"""Every repository path or file the README, docs/reference.md and the help texts name
exists (no pointer to a file that is not in the repository), and every command has a
description and help that read as user documentation."""

import argparse
import itertools
import pathlib
import re

from o3jax.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOP = ("o3jax", "configs", "docs", "launch", "scripts", "tests", "research")
# A path in the repository: a top-level folder, then path characters ({a,b} and * allowed).
REPO_PATH = re.compile(r"(?<![\w/.-])((?:%s)/[\w./{},*-]*)" % "|".join(TOP))
# A bare file name of the repository (README.md, demo.py, reference.md).
FILE_NAME = re.compile(r"(?<![\w/.{},-])([\w-]+\.(?:md|py|toml|sh|sbatch))\b")


def help_texts() -> dict[str, str]:
  """`o3jax ... --help` of every command and subcommand, by command line."""
  out = {}

  def walk(parser: argparse.ArgumentParser, name: str):
    out[name] = parser.format_help()
    for action in parser._actions:
      if isinstance(action, argparse._SubParsersAction):
        for sub, child in action.choices.items():
          walk(child, f"{name} {sub}")

  walk(build_parser(), "o3jax")
  return out


def expand(path: str) -> list[str]:
  """a/{b,c}.py -> [a/b.py, a/c.py]."""
  parts = re.split(r"\{([^}]*)\}", path)
  choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
  return ["".join(c) for c in itertools.product(*choices)]


def missing_paths(text: str) -> list[str]:
  missing = []
  for raw in REPO_PATH.findall(text):
    for path in expand(raw.rstrip(".,:;")):
      if "*" in path:
        if not list(ROOT.glob(path)):
          missing.append(path)
      elif not (ROOT / path).exists():
        missing.append(path)
  names = {p.name for p in ROOT.rglob("*") if ".git" not in p.parts}
  placeholder = re.compile(r"[A-Z_]+\.py")  # CONFIG.py: the reader's own config file
  missing += [n for n in FILE_NAME.findall(text) if n not in names and not placeholder.fullmatch(n)]
  return missing


def test_the_checker_finds_missing_and_present_paths():
  text = "see docs/reference.md, o3jax/eval/{vstar,tvg}.py, configs/*.py and SPEC.md"
  assert missing_paths(text) == ["SPEC.md"]
  assert missing_paths("o3jax/eval/{vstar,nothing}.py") == ["o3jax/eval/nothing.py"]
  assert missing_paths("configs/*.txt") == ["configs/*.txt"]


def test_readme_and_reference_name_only_files_that_exist():
  for doc in ("README.md", "docs/reference.md"):
    assert not missing_paths((ROOT / doc).read_text()), doc


def test_help_texts_name_only_files_that_exist_and_point_to_the_reference():
  texts = help_texts()
  assert {"o3jax sft", "o3jax gspo", "o3jax eval vstar", "o3jax convert"} <= set(texts)
  for command, text in texts.items():
    assert not missing_paths(text), (command, missing_paths(text))
    assert "add_parser" not in text and "SPEC" not in text, command
  assert "docs/reference.md" in texts["o3jax"]
  for command in ("o3jax infer", "o3jax eval", "o3jax sft", "o3jax gspo", "o3jax convert"):
    assert "docs/reference.md" in texts[command], command


def test_every_command_has_a_description():
  for command, text in help_texts().items():
    usage, _, rest = text.partition("\n\n")
    assert not rest.startswith(("options:", "positional arguments:")), command
