"""Many CLI invocations that fail before any run, in one process (tests/cli_test.py): each of them would otherwise
pay a Python process and JAX's import (~4 s here) to print one line. Reads a JSON list of argument lists on stdin;
for each, resets absl's flags, calls the entry point's `main` and records its exit code and what it wrote to
stderr; prints the JSON list of {rc, stderr}. A case that gets past validation would run: give only refusals."""
import contextlib
import io
import json
import sys

from absl import flags

from superconsistency import __main__ as cli


def run_case(args):
  flags.FLAGS.unparse_flags()   # every flag back to its default: one case's flags never leak into the next
  for name in [n for n in flags.FLAGS if n.startswith('config.')]:
    delattr(flags.FLAGS, name)  # the last case's --config.x=y overrides, which ml_collections defined as flags
  argv = ['superconsistency', *args]
  sys.argv = argv               # ml_collections reads the --config.x=y overrides from sys.argv
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    rc = cli.main(argv)
  return dict(rc=rc, stderr=err.getvalue())


if __name__ == '__main__':
  print(json.dumps([run_case(args) for args in json.load(sys.stdin)]))
