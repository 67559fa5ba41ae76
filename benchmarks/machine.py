"""What a benchmark report says about the machine it ran on (shared by the benchmark scripts)."""
import os
import sys
import platform

import jax


def machine_info():
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  return [
      ('jax / jaxlib', f'{jax.__version__} / {__import__("jaxlib").__version__}'),
      ('backend', jax.default_backend()),
      ('devices', ', '.join(f'{d.device_kind} ({d.platform}:{d.id})' for d in jax.devices())),
      ('cpu count (os / usable)', f'{os.cpu_count()} / {usable}'),
      ('load average at start (1 / 5 / 15 min)', ' / '.join(f'{x:.2f}' for x in os.getloadavg())),
      ('processor', platform.processor() or platform.machine()),
      ('python', platform.python_version()),
      ('XLA_FLAGS', os.environ.get('XLA_FLAGS', '(unset)')),
  ]


def write_report(path, text):
  """Writes the Markdown report (creating its folder) and prints it."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)
  print(text)
  print(f'wrote {path}', file=sys.stderr)


def machine_table(info):
  """The machine section of a report, as Markdown lines."""
  return ['## Machine', '', '| | |', '|---|---|'] + [f'| {k} | {v} |' for k, v in info]
