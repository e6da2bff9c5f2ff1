"""The README's results table, built from logged runs so no number is typed by hand.

    python -m tools.report results/ [--readme README.md] [--curves results/curves]

(from the repository root).

A run is any folder under the results root (at any depth) holding ``metrics.jsonl``,
``config.json`` and ``command.txt``. Its experiment is the first
``--config=configs/<file>.py[:<arg>]`` of ``command.txt`` (``#`` comments aside), its
seed ``config.json``'s ``seed``, its hardware the line of an optional
``hardware.txt`` (default: 2-core CPU), its precision ``config.json``'s
``model.precision`` (what ``auto`` picked; float32 before the field existed): a row
pools the runs of one precision, and runs of another make a line of their own
(float32 first; the hardware column names the precision). Each row of ``ROWS`` picks, per run, one eval
record by a validation metric (never the test one) or takes the final eval, then
aggregates over seeds: mean +- sample std (ddof=1) with two or more runs. A row pools
only runs that trained its config's length (``num_train_steps``; for a workdir continued
to more epochs, the last segment's in an optional ``config_history.jsonl``), so a short
probe of the same config stays out of it.

Provenance: each run's ``config.json`` is checked against the config its
``command.txt`` builds from the committed ``configs/`` (its ``--config.*`` overrides
applied as absl applies them), with the rule a rerun on a workdir is checked by
(``aae_jax.workdir.trained_differences``: fields that only change logging,
evaluation or run length are free; older records are migrated). A run that fails
is marked in the table and listed in the log; ``--check`` exits 1 if any does.

With ``--readme`` the table replaces the text between the lines
``<!-- report:begin -->`` and ``<!-- report:end -->`` of that file, atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import pathlib
import posixpath
import re
import shlex
import statistics
import sys
import textwrap

from absl import flags
from absl import logging
from ml_collections import config_flags

from aae_jax import errors
from aae_jax import files
from aae_jax import workdir

BEGIN, END = '<!-- report:begin -->', '<!-- report:end -->'
RUN_FILES = ('metrics.jsonl', 'config.json', 'command.txt')
DEFAULT_HARDWARE = '2-core CPU'
UNITS = {'percent': (100.0, 2, 'pp'), 'nats': (1.0, 1, 'nats')}  # scale, decimals, gap unit
NOT_RUN, EMPTY = 'not run', '–'
NO_PAPER = EMPTY  # a row the paper has no number for (a baseline, another rule)
CONFIGS_DIR = pathlib.Path(__file__).resolve().parents[1] / 'configs'


@dataclasses.dataclass(frozen=True)
class Select:
  """Model selection: the eval record with the best ``key`` (a validation metric)."""
  key: str
  lower_is_better: bool


@dataclasses.dataclass(frozen=True)
class Row:
  """One line of the table: an experiment, its metric and the paper's number.

  ``select`` None means the final eval record that has ``metric``.
  """
  id: str
  name: str
  config: str  # e.g. 'mnist_semisup.py:100', as parse_experiment gives it
  metric: str
  paper: str  # as the paper states it, e.g. '1.90 ± 0.10'; NO_PAPER where it has none
  unit: str  # a key of UNITS; 'percent' metrics are fractions
  higher_is_better: bool
  select: Select | None
  # Where the paper reports its own run early on: (epoch, number as it states it).
  paper_epochs: tuple[tuple[int, str], ...] = ()


_BY_VALID_ERROR = Select('eval/valid_error', lower_is_better=True)


def _clustering_rows(clusters: int, paper: str) -> tuple[Row, ...]:
  """Table 3's rows for ``clusters``: the AAE (at 16 clusters also with the paper's
  recipe, for 20 epochs and 100) and the k-means baseline on pixels, each by the paper's
  rule and by majority vote; only the AAE's paper rule has a number."""
  rows = []
  paper_recipe = ((f'MNIST, {clusters} clusters, paper recipe',
                   f'mnist_cluster.py:{clusters},paper'),
                  (f'MNIST, {clusters} clusters, paper recipe, 100 epochs',
                   f'mnist_cluster.py:{clusters},paper,epochs=100')) if clusters == 16 else ()
  for name, config in ((f'MNIST, {clusters} clusters', f'mnist_cluster.py:{clusters}'),
                       *paper_recipe,
                       (f'baseline: k-means on pixels, K = {clusters}',
                        f'mnist_kmeans.py:{clusters}')):
    for metric, suffix in (('eval/test_error', ''), ('eval/test_error_majority',
                                                     ', majority vote')):
      number = paper if config.startswith('mnist_cluster') and not suffix else NO_PAPER
      rows.append(Row('E6', name + suffix, config, metric, number, 'percent', False, None))
  return tuple(rows)

# The paper's 100-label run after 1, 50, 500 and 5000 of its 5000 epochs.
_SEMISUP_100_EPOCHS = ((1, '16.5'), (50, '3.4'), (500, '2.21'), (5000, '1.80'))

# Table 2's numbers: the AAE's and the NN baseline's (the same trunk on the labels alone).
_SEMISUP = (('100', '1.90 ± 0.10', '25.80'), ('1000', '1.60 ± 0.08', '8.73'),
            ('all', '0.85 ± 0.02', '1.25'))


# The paper's recipe as optax reads its momenta, and as Torch7 did: (row name, config flag).
_PAPER_READINGS = (('', ''), (', Torch7 momentum', ',torch7'))


def _semisup_rows(labels: str, paper: str, baseline: str) -> tuple[Row, ...]:
  """E5 for ``labels``: the 10-epoch default, 50 epochs of this project's recipe and of
  the paper's (``,paper``, and read with Torch7's momentum, ``,paper,torch7``; 500
  epochs of the paper's too at 100 labels), and the NN baseline at 50 epochs."""
  what = f'{labels} labels'
  early = _SEMISUP_100_EPOCHS if labels == '100' else ()
  return (
      Row('E5', f'MNIST, {what}', f'mnist_semisup.py:{labels}', 'eval/test_error', paper,
          'percent', False, _BY_VALID_ERROR, early),
      Row('E5', f'MNIST, {what}, 50 epochs', f'mnist_semisup.py:{labels},epochs=50',
          'eval/test_error', paper, 'percent', False, _BY_VALID_ERROR, early),
      *(Row('E5', f'MNIST, {what}, paper recipe{name}, 50 epochs',
            f'mnist_semisup.py:{labels},paper{flag},epochs=50', 'eval/test_error', paper,
            'percent', False, _BY_VALID_ERROR, early) for name, flag in _PAPER_READINGS),
      *((Row('E5', f'MNIST, {what}, paper recipe, 500 epochs',
             f'mnist_semisup.py:{labels},paper,epochs=500', 'eval/test_error', paper,
             'percent', False, _BY_VALID_ERROR, early),) if labels == '100' else ()),
      Row('E5', f'baseline: NN on {"all the" if labels == "all" else "the " + labels} '
          'labels alone, 50 epochs',
          f'mnist_nn_baseline.py:{labels},epochs=50', 'eval/test_error', baseline,
          'percent', False, _BY_VALID_ERROR),
  )


ROWS = (
    *(row for args in _SEMISUP for row in _semisup_rows(*args)),
    *_clustering_rows(16, '9.55 ± 2.05'),
    *_clustering_rows(30, '4.10 ± 1.13'),
    Row('E7', '2-D, 1000 labels', 'mnist_dimred.py:1000', 'eval/test_error',
        '3.90', 'percent', False, _BY_VALID_ERROR),
    Row('E7', '2-D, 1000 labels, 50 epochs', 'mnist_dimred.py:1000,epochs=50',
        'eval/test_error', '3.90', 'percent', False, _BY_VALID_ERROR),
    Row('E7', '2-D, unsupervised (20 heads)', 'mnist_dimred.py:unsup', 'eval/test_error',
        '≈13.5', 'percent', False, None),
    *(Row('E3', f'MNIST Parzen log-likelihood{name}', config, 'eval/parzen_ll', '340 ± 2',
          'nats', True, Select('eval/parzen_valid_ll', lower_is_better=False))
      for name, config in (('', 'mnist_parzen.py'),
                           (', 100 epochs', 'mnist_parzen.py:epochs=100'),
                           *((f', paper recipe{name}, 100 epochs',
                              f'mnist_parzen.py:paper{flag},epochs=100')
                             for name, flag in _PAPER_READINGS))),
)


@dataclasses.dataclass(frozen=True)
class Run:
  """One logged run folder."""
  path: pathlib.Path
  experiment: str
  seed: int | None
  hardware: str
  records: tuple[dict, ...]
  # Fields that change what is trained, where config.json differs from the committed
  # config of its command (field -> (recorded, committed)); empty: it passes.
  differences: dict = dataclasses.field(default_factory=dict)
  # What its products computed in (config.json's model.precision; float32 before
  # the field existed): a row pools the runs of one precision only.
  precision: str = 'float32'
  # Its run length against its experiment's (the committed config with no overrides):
  # (recorded num_train_steps, the experiment's). A row pools only runs of its own
  # length: the check leaves run length free (a workdir may continue to more epochs),
  # so a short probe with --config.num_train_steps would otherwise join the row.
  length: tuple = (None, None)
  # What its command's --config.* overrides change in what is trained, besides the seed
  # and the precision (field -> (with them, the experiment's)): a probe of another
  # recipe (say, other decay epochs) passes the check, as its config.json is its
  # command's, but is not the row's recipe; a row pools only runs with none.
  overrides: dict = dataclasses.field(default_factory=dict)

  @property
  def full_length(self) -> bool:
    return self.length[0] == self.length[1]


@dataclasses.dataclass(frozen=True)
class RunResult:
  """A run's number for a row: the selected eval record's metric, and what it cost."""
  run: Run
  value: float
  step: int
  epoch: float | None  # when the selected record was taken
  total_epochs: float | None  # of training: the last 'train/epoch' logged
  train_seconds: float | None


@dataclasses.dataclass(frozen=True)
class RowResult:
  """A row with the results of its runs (one per seed); empty when not run."""
  row: Row
  runs: tuple[RunResult, ...]

  @property
  def values(self) -> list[float]:
    return [r.value for r in self.runs]

  @property
  def mean(self) -> float | None:
    return statistics.fmean(self.values) if self.runs else None

  @property
  def std(self) -> float | None:
    """Sample standard deviation (ddof=1); None with fewer than two runs."""
    return statistics.stdev(self.values) if len(self.runs) >= 2 else None

  @property
  def gap(self) -> float | None:
    """Our mean minus the paper's number, in displayed units (percentage points for
    'percent' rows)."""
    if not self.runs or self.row.paper == NO_PAPER:
      return None
    return self.mean * UNITS[self.row.unit][0] - paper_number(self.row.paper)


# ----------------------------------------------------------------------------- reading


def read_records(path: pathlib.Path, key: str = 'step') -> list[dict]:
  """The JSON objects of a metrics.jsonl (or another JSON-lines file whose records
  carry an integer ``key``), one per line; lines that do not parse (a torn last
  write) or lack ``key`` are skipped."""
  records = []
  with open(path, encoding='utf-8', errors='replace') as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except ValueError:
        logging.warning('%s:%d: skipping a line that is not JSON.', path, number)
        continue
      if isinstance(record, dict) and isinstance(record.get(key), int):
        records.append(record)
      else:
        logging.warning('%s:%d: skipping a line without an integer "%s".', path, number, key)
  return records


_CONFIG_RE = re.compile(r'--config[= ]\s*[\'"]?(?P<path>[^\s\'":]+\.py)(?::(?P<arg>[^\s\'"]*))?')


def _code_lines(command: str) -> list[str]:
  """The lines of a command.txt with their ``#`` comments cut off."""
  return [re.split(r'(?:^|\s)#', line, maxsplit=1)[0] for line in command.splitlines()]


def parse_experiment(command: str) -> str | None:
  """The experiment of a command.txt: the first ``--config=<path>.py[:<arg>]``
  outside ``#`` comments, as ``<file>.py[:<arg>]``; None when there is none."""
  for line in _code_lines(command):
    match = _CONFIG_RE.search(line)
    if match:
      name = posixpath.basename(match['path'].replace('\\', '/'))
      return f'{name}:{match["arg"]}' if match['arg'] else name
  return None


def committed_config(command: str, configs_dir=CONFIGS_DIR) -> dict:
  """The config (as JSON) that ``command`` trains with the configs in ``configs_dir``:
  its ``--config=<file>.py[:<arg>]`` and ``--config.*`` overrides, parsed by absl as
  ``aae_jax.main`` parses them. Raises ValueError when they do not apply."""
  experiment = parse_experiment(command)
  if experiment is None:
    raise ValueError('no --config=<file>.py in the command')
  name, _, arg = experiment.partition(':')
  file = pathlib.Path(configs_dir) / name
  if not file.is_file():
    raise ValueError(f'{file} is not a committed config')
  line = next(line for line in _code_lines(command) if _CONFIG_RE.search(line))
  argv = ['report', f'--config={file}' + (f':{arg}' if arg else ''),
          *(w for w in shlex.split(line) if w.startswith('--config.'))]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'experiment config', flag_values=values,
                                  lock_config=True, sys_argv=argv)
  try:
    values(argv)
  except (flags.Error, ValueError, KeyError, AttributeError, TypeError) as e:
    raise ValueError(f'the command does not apply to {file.name}: {e}') from e
  return json.loads(values.config.to_json_best_effort(sort_keys=True))


# The overrides a row's runs may carry: which seed, and the precision (a row makes one
# line per precision).
ROW_OVERRIDES = ('seed', 'model.precision')


def recipe_overrides(committed: dict, experiment: str, configs_dir=CONFIGS_DIR) -> dict:
  """The fields where ``committed`` (a command's config, overrides applied) differs
  from its experiment's committed config in what is trained, besides
  ``ROW_OVERRIDES``: field -> (with the overrides, the experiment's); empty when none
  or when the experiment does not build."""
  base = _experiment_config(experiment, configs_dir)
  if base is None:
    return {}
  return {k: d for k, d in workdir.trained_differences(committed, json.loads(base)).items()
          if k not in ROW_OVERRIDES}


def read_run(folder: pathlib.Path) -> Run | None:
  """The run logged in ``folder``; None (with a warning) when its command names no
  --config or its config.json does not parse."""
  command = (folder / 'command.txt').read_text(encoding='utf-8')
  experiment = parse_experiment(command)
  if experiment is None:
    logging.warning('%s: command.txt has no --config=<file>.py; skipping the run.', folder)
    return None
  try:
    config = json.loads((folder / 'config.json').read_text(encoding='utf-8'))
  except ValueError as e:
    logging.warning('%s: config.json does not parse (%s); skipping the run.', folder, e)
    return None
  seed = config.get('seed') if isinstance(config, dict) else None
  hardware_file = folder / 'hardware.txt'
  hardware = DEFAULT_HARDWARE
  if hardware_file.is_file():
    lines = hardware_file.read_text(encoding='utf-8').strip().splitlines()
    hardware = lines[0].strip() if lines else DEFAULT_HARDWARE
  try:
    committed, error = committed_config(command), None
  except ValueError as e:
    committed, error = None, str(e)
  # Where config.json differs from its command's config in what is trained.
  if not isinstance(config, dict):
    differences = {'config.json': ('not a JSON object', '')}
  elif committed is None:
    differences = {'<command>': (error, '')}
  else:
    differences = workdir.trained_differences(config, committed)
  precision = workdir.migrate(config).get('model', {}).get('precision', 'float32') \
      if isinstance(config, dict) else 'float32'
  return Run(folder, experiment, seed if isinstance(seed, int) else None, hardware,
             tuple(read_records(folder / 'metrics.jsonl')), differences, str(precision),
             (trained_length(folder, config), experiment_length(experiment)),
             recipe_overrides(committed, experiment) if committed is not None else {})


def trained_length(folder: pathlib.Path, config) -> int | None:
  """The run length it trained to: the last segment's ``num_train_steps`` in
  ``config_history.jsonl`` where the folder has one (a workdir continued to more epochs
  keeps its first segment's ``config.json``), else ``config.json``'s."""
  history = folder / workdir.HISTORY_NAME
  if history.is_file():
    segments = read_records(history, key='start_step')
    if segments and isinstance(segments[-1].get('config'), dict):
      return segments[-1]['config'].get('num_train_steps')
  return config.get('num_train_steps') if isinstance(config, dict) else None


@functools.lru_cache(maxsize=None)
def _experiment_config(experiment: str, configs_dir=CONFIGS_DIR) -> str | None:
  """``<file>.py[:<arg>]`` as committed, with no overrides, as JSON text (built once
  per experiment; text, so no caller can change the cached value); None where it does
  not build."""
  try:
    return json.dumps(committed_config(f'--config=configs/{experiment}', configs_dir))
  except ValueError:
    return None


def experiment_length(experiment: str, configs_dir=CONFIGS_DIR) -> int | None:
  """``num_train_steps`` of ``<file>.py[:<arg>]`` as committed; None where it does not
  build."""
  base = _experiment_config(experiment, configs_dir)
  return None if base is None else json.loads(base).get('num_train_steps')


def collect(root) -> list[Run]:
  """Every run under ``root`` (searched recursively), in path order."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise errors.UserError(f'{root}: no such results folder; give the folder that holds '
                           'the run folders (e.g. results/).')
  runs = []
  for folder, dirs, names in os.walk(root):
    dirs.sort()
    if all(name in names for name in RUN_FILES):
      run = read_run(pathlib.Path(folder))
      if run is not None:
        runs.append(run)
  return runs


# ----------------------------------------------------------------------------- selection


def _finite(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def select_record(records, row: Row) -> dict | None:
  """The eval record a row reports: among those with the metric, the one with the
  best validation value (the first on ties), or the last one if ``row.select`` is
  None. The test metric never takes part in the choice."""
  candidates = [r for r in records if row.metric in r]
  if row.select is None:
    return candidates[-1] if candidates else None
  key = row.select.key
  candidates = [r for r in candidates if _finite(r.get(key))]
  if not candidates:
    return None
  pick = min if row.select.lower_is_better else max  # both return the first of ties
  return pick(candidates, key=lambda r: r[key])


def total_epochs(records) -> float | None:
  """Epochs of training: the last 'train/epoch' logged."""
  epochs = [r['train/epoch'] for r in records if _finite(r.get('train/epoch'))]
  return float(epochs[-1]) if epochs else None


def epoch_at(records, step: int) -> float | None:
  """The epoch at ``step``: 'train/epoch' of a record at that step, else the last
  record's epoch scaled by the ratio of steps."""
  with_epoch = [r for r in records if _finite(r.get('train/epoch'))]
  at_step = [r for r in with_epoch if r['step'] == step]
  if at_step:
    return float(at_step[-1]['train/epoch'])
  if not with_epoch or with_epoch[-1]['step'] <= 0:
    return None
  last = with_epoch[-1]
  return float(last['train/epoch']) * step / last['step']


def train_seconds(records) -> float | None:
  """The run's training time: 'run/train_seconds' of its last segment (written when
  training ends; it counts that segment only) plus, for a resumed run, the earlier
  segments' time, summed from their logged 'train/steps_per_sec' windows."""
  ends = [r for r in records if _finite(r.get('run/train_seconds'))]
  if not ends:
    return None
  seconds = float(ends[-1]['run/train_seconds'])
  if not _finite(ends[-1].get('run/steps_per_sec')):  # older runs: the segment's time only
    return seconds
  start = ends[-1]['step'] - round(ends[-1]['run/steps_per_sec'] * seconds)
  previous = 0
  for r in records:
    if r['step'] > start:
      break
    rate = r.get('train/steps_per_sec')
    if _finite(rate) and rate > 0:
      seconds += (r['step'] - previous) / rate
      previous = r['step']
  return seconds


def run_result(run: Run, row: Row) -> RunResult | None:
  """The run's number for the row; None when no eval record qualifies."""
  record = select_record(run.records, row)
  if record is None or not _finite(record[row.metric]):
    return None
  return RunResult(run, float(record[row.metric]), record['step'],
                   epoch_at(run.records, record['step']), total_epochs(run.records),
                   train_seconds(run.records))


def summarize(runs, rows=ROWS) -> list[RowResult]:
  """One RowResult per row and precision its runs computed in (float32 first), over the
  runs of its experiment that trained its length, ordered by seed; runs of experiments
  not in ``rows`` are ignored, runs of another length or with overrides of the recipe
  (``Run.overrides``) left out with a warning."""
  reported = {row.config for row in rows}
  for r in runs:
    if r.experiment not in reported:
      continue
    if not r.full_length:
      logging.warning('%s: trained for %s steps where %s trains %s; leaving it out of its '
                      'row.', r.path, r.length[0], r.experiment, r.length[1])
    elif r.overrides:
      logging.warning('%s: its command overrides %s of %s; leaving it out of its row.',
                      r.path, ', '.join(sorted(r.overrides)), r.experiment)
  runs = [r for r in runs if r.full_length and not r.overrides]
  out = []
  for row in rows:
    mine = [r for r in runs if r.experiment == row.config]
    precisions = sorted({r.precision for r in mine}, key=lambda p: (p != 'float32', p))
    for precision in precisions or ['float32']:
      out.append(_row_result(row, [r for r in mine if r.precision == precision]))
  return out


def _row_result(row, mine) -> RowResult:
  """``row`` over ``mine`` (runs of its experiment, in one precision), ordered by seed."""
  results = []
  for run in sorted(mine, key=lambda r: (r.seed is None, r.seed or 0, str(r.path))):
    result = run_result(run, row)
    if result is None:
      logging.warning('%s: no eval record with %s%s; leaving the run out of %s.', run.path,
                      row.metric, f' and {row.select.key}' if row.select else '', row.config)
    else:
      results.append(result)
  return RowResult(row, tuple(results))


# ----------------------------------------------------------------------------- formatting


def paper_number(paper: str) -> float:
  """The first number of the paper's statement ('1.90 ± 0.10' -> 1.9, '≈13.5' -> 13.5)."""
  match = re.search(r'[-+]?\d+(?:\.\d+)?', paper)
  if match is None:
    raise ValueError(f'paper value {paper!r} has no number')
  return float(match.group())


def format_value(x: float, unit: str) -> str:
  """A metric in its displayed unit: 'percent' fractions x100 with 2 decimals,
  'nats' with 1."""
  scale, decimals, _ = UNITS[unit]
  return f'{x * scale:.{decimals}f}'


def format_gap(gap: float, unit: str) -> str:
  """A signed difference already in displayed units, e.g. '+1.53 pp', '-4.2 nats'."""
  _, decimals, name = UNITS[unit]
  return f'{round(gap, decimals) + 0.0:+.{decimals}f} {name}'  # + 0.0: no '-0.00'


def format_ours(result: RowResult) -> str:
  if not result.runs:
    return NOT_RUN
  mean = format_value(result.mean, result.row.unit)
  if result.std is None:
    return mean
  return f'{mean} ± {format_value(result.std, result.row.unit)}'


def _number(x: float) -> str:
  return f'{round(x, 1):g}'


def _span(values) -> str:
  """'8' when all agree, else 'min–max'."""
  lo, hi = min(values), max(values)
  return _number(lo) if _number(lo) == _number(hi) else f'{_number(lo)}–{_number(hi)}'


def format_epochs(runs) -> str:
  """Epoch of the selected record / epochs trained, each as min–max when runs differ;
  '–' for runs that log no epochs (k-means)."""
  if all(r.epoch is None and r.total_epochs is None for r in runs):
    return EMPTY
  parts = []
  for values in ([r.epoch for r in runs], [r.total_epochs for r in runs]):
    known = [v for v in values if v is not None]
    parts.append(_span(known) if known else '?')
  return ' / '.join(parts)


def format_minutes(runs) -> str:
  """Mean 'run/train_seconds' in minutes, over the runs that logged it."""
  seconds = [r.train_seconds for r in runs if r.train_seconds is not None]
  if not seconds:
    return EMPTY
  text = f'{statistics.fmean(seconds) / 60:.1f} min'
  return text if len(seconds) == len(runs) else f'{text} ({len(seconds)} of {len(runs)} runs)'


def format_seeds(runs) -> str:
  seeds = [str(r.run.seed) if r.run.seed is not None else '?' for r in runs]
  return f'{len(runs)} ({", ".join(seeds)})'


def format_paper_at(row: Row, runs) -> str:
  """The paper's own number at the latest epoch it reports that our runs reached
  (all of them), e.g. '3.4 (epoch 50)'; '–' where it reports none."""
  trained = [r.total_epochs for r in runs if r.total_epochs is not None]
  if not (row.paper_epochs and trained):
    return EMPTY
  reached = [(e, n) for e, n in row.paper_epochs if e <= min(trained) + 1e-9]
  return f'{reached[-1][1]} (epoch {reached[-1][0]})' if reached else EMPTY


def format_selection(row: Row) -> str:
  if row.select is None:
    return 'final eval'
  return f'{"lowest" if row.select.lower_is_better else "highest"} `{row.select.key}`'


def format_links(runs, relative_to) -> str:
  """Each run folder as ``[seed0](results/..)``, relative to ``relative_to``."""
  links = []
  for r in runs:
    target = pathlib.Path(os.path.relpath(r.run.path, relative_to)).as_posix()
    target = f'<{target}>' if any(c in target for c in ' ()') else target
    label = f'seed{r.run.seed}' if r.run.seed is not None else r.run.path.name
    if r.run.differences:
      label += ' (config differs)'
    links.append(f'[{label}]({target})')
  return ' '.join(links)


HEADER = ('id', 'experiment', 'config', 'metric', 'selected by', 'paper',
          'paper at our epochs', 'ours', 'gap',
          'seeds', 'epochs (selected / trained)', 'train time', 'hardware', 'runs')


def table_row(result: RowResult, relative_to) -> tuple[str, ...]:
  row, runs = result.row, result.runs
  metric = f'`{row.metric}`{" %" if row.unit == "percent" else f" ({row.unit})"} ' + (
      '↑' if row.higher_is_better else '↓')
  fixed = (row.id, row.name, f'`{row.config}`', metric, format_selection(row), row.paper,
           format_paper_at(row, runs), format_ours(result))
  if not runs:
    return fixed + (EMPTY,) * (len(HEADER) - len(fixed))
  hardware = ', '.join(sorted({f'{r.run.hardware}, {r.run.precision}' for r in runs}))
  gap = EMPTY if result.gap is None else format_gap(result.gap, row.unit)
  return fixed + (gap, format_seeds(runs), format_epochs(runs),
                  format_minutes(runs), hardware, format_links(runs, relative_to))


def render(rows_results, relative_to='.') -> str:
  """The Markdown table; run links are relative to the folder ``relative_to`` (the
  README's)."""
  lines = [HEADER, ('---',) * len(HEADER)]
  lines += [table_row(result, relative_to) for result in rows_results]
  return '\n'.join('| ' + ' | '.join(cells) + ' |' for cells in lines) + '\n'


# ----------------------------------------------------------------------------- README


def replace_block(text: str, block: str, name: str = 'README') -> str:
  """``text`` with the lines between the marker lines replaced by ``block`` (framed
  by blank lines); the markers and everything outside them stay byte-identical."""
  lines = text.splitlines(keepends=True)
  begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
  ends = [i for i, line in enumerate(lines) if line.strip() == END]
  if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
    raise errors.UserError(f'{name}: needs one line {BEGIN} and, below it, one line {END}; '
                           'add both marker lines where the table goes.')
  begin, end = begins[0], ends[0]
  newline = '\r\n' if lines[begin].endswith('\r\n') else '\n'
  body = newline + block.rstrip('\n').replace('\n', newline) + newline + newline
  return ''.join(lines[:begin + 1]) + body + ''.join(lines[end:])


def update_readme(path, block: str) -> bool:
  """Puts ``block`` between the markers of the file ``path``; True if it changed."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise errors.UserError(f'{path}: no such file; give --readme the README that holds '
                           f'the {BEGIN} / {END} lines.')
  with open(path, encoding='utf-8', newline='') as f:
    text = f.read()
  new = replace_block(text, block, name=str(path))
  if new != text:
    files.write_atomic(path, new)
  return new != text


# ----------------------------------------------------------------------------- CLI


# ----------------------------------------------------------------------------- curves


def curve_name(row: Row, precision: str = 'float32') -> str:
  """The file a row's learning curves go to, e.g. 'mnist_semisup_100_epochs=50__test_error.png'
  (runs in another precision than float32: '..._test_error__bfloat16.png')."""
  config = re.sub(r'[^A-Za-z0-9=]+', '_', row.config.replace('.py', '')).strip('_')
  suffix = '' if precision == 'float32' else f'__{precision}'
  return f'{config}__{row.metric.split("/")[-1]}{suffix}.png'


def _curve(records, key):
  points = [(epoch_at(records, r['step']), r[key]) for r in records
            if _finite(r.get(key))]
  return [(e, v) for e, v in points if e is not None]


def draw_curves(results, directory) -> list[pathlib.Path]:
  """Per row with runs: its metric (solid) and selection metric (dashed) against
  epochs, one colour per seed, with the paper's own run where it reports points on
  the way (black dots) and its final number (dotted line). Returns the files."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  written = []
  for result in results:
    row = result.row
    if not result.runs:
      continue
    scale = UNITS[row.unit][0]
    if not any(_curve(r.run.records, row.metric) for r in result.runs):
      continue  # no eval on the way (a k-means fit): nothing to draw
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    trained = 0  # the last epoch any run logged the metric at
    for i, r in enumerate(result.runs):
      colour = f'C{i}'
      label = f'seed {r.run.seed}' if r.run.seed is not None else r.run.path.name
      keys = [(row.metric, '-', 1.0, 'test')]
      if row.select is not None:
        keys.append((row.select.key, '--', 0.6, row.select.key.split('/')[-1]))
      for key, style, alpha, name in keys:
        points = _curve(r.run.records, key)
        if points and key == row.metric:
          trained = max(trained, max(e for e, _ in points))
        if points:
          ax.plot([e for e, _ in points], [v * scale for _, v in points], style, color=colour,
                  alpha=alpha, marker='.', label=f'{label}: {name}')
    if row.paper_epochs:
      ax.plot([e for e, _ in row.paper_epochs], [paper_number(n) for _, n in row.paper_epochs],
              'ko', label="the paper's run at these epochs")
    if row.paper != NO_PAPER:
      ax.axhline(paper_number(row.paper), color='k', ls=':', label='the paper, final')
    ax.set_xlabel('epoch')
    if row.paper_epochs and max(e for e, _ in row.paper_epochs) > 4 * trained:
      # The paper's points run far past ours (its 5000 epochs against 50): a log axis
      # keeps our curve readable beside them.
      ax.set_xscale('log')
      ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter('%g'))
    ax.set_ylabel(f'{row.metric}' + (' (%)' if row.unit == 'percent' else f' ({row.unit})'))
    if row.unit == 'percent':
      ax.set_yscale('log')
      for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        axis(matplotlib.ticker.FormatStrFormatter('%g'))
    precision = result.runs[0].run.precision
    title = (f'{row.id} {row.name} ({row.config}'
             + (f', {precision}' if precision != 'float32' else '') + ')')
    ax.set_title('\n'.join(textwrap.wrap(title, 80)), fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = directory / curve_name(row, result.runs[0].run.precision)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
  return written


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog='python -m tools.report',
      description="Builds the README's results table from the logged runs under RESULTS_DIR.")
  parser.add_argument('results_dir', help='folder searched recursively for run folders')
  parser.add_argument('--readme', help='file whose report:begin/end block gets the table')
  parser.add_argument('--curves', default=None,
                      help="folder for each row's learning curves (default: "
                      "RESULTS_DIR/curves; '' for none)")
  parser.add_argument('--check', action='store_true',
                      help="exit 1 if a table row's run has a config.json that differs "
                      'from the committed config of its command.txt')
  return parser.parse_args(argv[1:])


def provenance_failures(results) -> list[str]:
  """One line per run in the table whose config.json fails the provenance check."""
  lines = []
  for result in results:
    for r in result.runs:
      if r.run.differences:
        shown = '; '.join(f'{k}: {a!r} (recorded) vs {b!r} (committed)'
                          for k, (a, b) in r.run.differences.items())
        lines.append(f'{r.run.path} ({result.row.config}): {shown}')
  return list(dict.fromkeys(lines))


def main(argv) -> int:
  args = parse_args(argv)
  try:
    relative_to = pathlib.Path(args.readme).parent if args.readme else pathlib.Path('.')
    results = summarize(collect(args.results_dir))
    failures = provenance_failures(results)
    for line in failures:
      logging.warning('config differs from the committed one: %s', line)
    table = render(results, relative_to=relative_to)
    print(table, end='')
    curves = (pathlib.Path(args.results_dir) / 'curves' if args.curves is None
              else args.curves)
    if curves:
      logging.info('Learning curves: %s.', ', '.join(map(str, draw_curves(results, curves))))
    if args.readme:
      changed = update_readme(args.readme, table)
      logging.info('%s: %s.', args.readme, 'table updated' if changed else 'already up to date')
  except errors.UserError as e:
    sys.exit(f'tools.report: {e}')
  if args.check and failures:
    print(f'tools.report: {len(failures)} run(s) differ from the committed configs '
          '(listed above).', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
