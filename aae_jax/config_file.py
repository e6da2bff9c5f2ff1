"""``--config=<file>.py[:<arg>]`` loaded once before absl does, so that a missing
file, a broken one, one that is not an experiment or a bad argument is one line
(``errors.UserError``) rather than a traceback."""

from __future__ import annotations

import importlib.util
import pathlib

from aae_jax import errors


def flag_value(argv) -> str | None:
  """The value of ``--config`` in a command line, or None."""
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith('--config='):
      return arg.split('=', 1)[1]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def check(value: str) -> None:
  """``--config=<file>.py[:<arg>]`` loaded once here, so that a missing file, a
  broken one, one that is not an experiment or a bad argument is one line."""
  path, _, arg = value.partition(':')
  file = pathlib.Path(path)
  if not file.is_file():
    known = ', '.join(sorted(p.name for p in pathlib.Path('configs').glob('*.py')
                             if p.stem not in ('__init__', 'common')))
    raise errors.UserError(f'--config={value}: no such file {path}' +
                           (f'; the experiments in configs/: {known}' if known else ''))
  try:
    spec = importlib.util.spec_from_file_location(f'_aae_config_{file.stem}', file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    where = f' (line {e.lineno})' if isinstance(e, SyntaxError) else ''
    raise errors.UserError(f'--config={value}: {path} does not load{where}: '
                           f'{type(e).__name__}: {e}') from e
  if not callable(getattr(module, 'get_config', None)):
    raise errors.UserError(f'--config={value}: {path} is not an experiment config (it has '
                           'no get_config); choose one of configs/<experiment>.py.')
  try:
    module.get_config(arg) if arg else module.get_config()
  except ValueError as e:  # parse_arg: an unknown word
    raise errors.UserError(f'--config={value}: {e}') from e
