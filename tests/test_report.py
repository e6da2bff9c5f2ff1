"""The results table: run discovery, model selection by validation, aggregation over
seeds, formatting and the README block update, on synthetic run folders and on the
repository's own results/."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from aae_jax import errors
from tools import report

RESULTS = pathlib.Path(__file__).parents[1] / 'results'
STEPS_PER_EPOCH = 500


def _row(config):
  return next(r for r in report.ROWS if r.config == config)


def _eval(step, valid, test, **extra):
  return {'step': step, 'eval/valid_error': valid, 'eval/test_error': test,
          'train/epoch': step / STEPS_PER_EPOCH, **extra}


def write_run(folder: pathlib.Path, config='configs/mnist_semisup.py:1000', seed=0,
              records=(), tail='', command=None, hardware=None,
              recorded=None) -> pathlib.Path:
  """A run folder as aae_jax.main leaves it; ``tail`` is appended to metrics.jsonl.
  config.json is ``recorded``, by default the committed config of the command."""
  folder.mkdir(parents=True)
  lines = ''.join(json.dumps(r) + '\n' for r in records)
  (folder / 'metrics.jsonl').write_text(lines + tail)
  if command is None:
    command = (f'# from a clean clone\npython -m aae_jax.main --config={config} '
               f'--config.log_every=50 --config.seed={seed} --workdir=runs/x'
               '   # note: --config=configs/other.py')
  if recorded is None:
    try:
      recorded = report.committed_config(command)
      if recorded.get('model', {}).get('precision') == 'auto':
        recorded['model']['precision'] = 'float32'  # a run records what auto picked
    except ValueError:  # a command of no committed config
      recorded = {'seed': seed, 'batch_size': 100}
  (folder / 'config.json').write_text(json.dumps(recorded))
  (folder / 'command.txt').write_text(command + '\n')
  if hardware is not None:
    (folder / 'hardware.txt').write_text(hardware + '\n')
  return folder


def semisup_records(valid_test_pairs, seconds=60.0):
  """Train records every half epoch-step and one eval record per pair; the last
  record carries the run's totals."""
  records = []
  for i, (valid, test) in enumerate(valid_test_pairs, 1):
    step = 1000 * i
    records.append({'step': step - 500, 'train/epoch': (step - 500) / STEPS_PER_EPOCH})
    records.append(_eval(step, valid, test))
  records[-1].update({'run/train_seconds': seconds, 'run/steps_per_sec': 10.0})
  return records


def test_selection_uses_the_validation_metric_only(tmp_path):
  # Best valid at step 2000; test is best at 3000 (what selecting by test would pick),
  # and 4000 is the final record: each wrong rule gives a different number.
  pairs = [(0.050, 0.060), (0.030, 0.045), (0.040, 0.020), (0.045, 0.035)]
  write_run(tmp_path / 'run', records=semisup_records(pairs))
  (result,) = [r for r in report.summarize(report.collect(tmp_path))
               if r.row.config == 'mnist_semisup.py:1000']
  (chosen,) = result.runs
  assert chosen.step == 2000
  assert chosen.value == pytest.approx(0.045)
  assert chosen.epoch == pytest.approx(4.0)
  assert chosen.total_epochs == pytest.approx(8.0)
  assert chosen.train_seconds == pytest.approx(60.0)


def test_a_resumed_runs_time_adds_its_earlier_segments(tmp_path):
  # Steps 0-1,000 at 10 steps/s (interrupted), then 1,000-2,000 in 50 s: 150 s in all,
  # where 'run/train_seconds' alone says 50.
  first = [{'step': s, 'train/steps_per_sec': 10.0} for s in (500, 1000)]
  second = [{'step': s, 'train/steps_per_sec': 20.0} for s in (1500, 2000)]
  second[-1].update({'run/train_seconds': 50.0, 'run/steps_per_sec': 20.0})
  assert report.train_seconds(first + second) == pytest.approx(150.0)
  whole = [dict(r) for r in first]  # one segment: its own total, nothing added
  whole[-1].update({'run/train_seconds': 100.0, 'run/steps_per_sec': 10.0})
  assert report.train_seconds(whole) == pytest.approx(100.0)
  assert report.train_seconds(first) is None


def test_selection_ties_take_the_first_and_higher_is_better_rows(tmp_path):
  records = [{'step': 1, 'eval/parzen_valid_ll': 10.0, 'eval/parzen_ll': 1.0},
             {'step': 2, 'eval/parzen_valid_ll': 30.0, 'eval/parzen_ll': 2.0},
             {'step': 3, 'eval/parzen_valid_ll': 30.0, 'eval/parzen_ll': 3.0},
             {'step': 4, 'eval/parzen_valid_ll': 20.0, 'eval/parzen_ll': 4.0}]
  assert report.select_record(records, _row('mnist_parzen.py'))['step'] == 2
  assert report.select_record(records[:1], _row('mnist_cluster.py:16')) is None
  final = report.select_record([_eval(1, 0.1, 0.5), _eval(2, 0.9, 0.7)],
                               _row('mnist_cluster.py:16'))
  assert final['step'] == 2


def test_epoch_is_scaled_when_the_selected_step_logged_none():
  records = [{'step': 500, 'train/epoch': 1.0}, {'step': 1000, 'eval/valid_error': 0.1},
             {'step': 1500, 'train/epoch': 3.0}]
  assert report.epoch_at(records, 1000) == pytest.approx(2.0)
  assert report.total_epochs(records) == pytest.approx(3.0)


def test_mean_and_sample_std_over_three_seeds(tmp_path):
  tests = [0.031, 0.036, 0.047]
  for seed, test in enumerate(tests):
    write_run(tmp_path / 'semisup' / f'seed{seed}', seed=seed,
              records=semisup_records([(0.05, 0.09), (0.03, test)], seconds=60.0 * (seed + 1)))
  result = next(r for r in report.summarize(report.collect(tmp_path))
                if r.row.config == 'mnist_semisup.py:1000')
  assert [r.run.seed for r in result.runs] == [0, 1, 2]
  assert result.mean == pytest.approx(np.mean(tests))
  assert result.std == pytest.approx(np.std(tests, ddof=1))
  assert result.gap == pytest.approx(100 * np.mean(tests) - 1.60)
  line = next(l for l in report.render([result], relative_to=tmp_path).splitlines()
              if 'mnist_semisup.py:1000' in l)
  mean, std = 100 * np.mean(tests), 100 * np.std(tests, ddof=1)
  assert f'| {mean:.2f} ± {std:.2f} |' in line
  assert '| 3 (0, 1, 2) |' in line
  assert '| 2.0 min |' in line  # mean of 1, 2 and 3 minutes
  assert ('[seed0](semisup/seed0) [seed1](semisup/seed1) [seed2](semisup/seed2)') in line


def test_a_single_run_shows_its_value_without_std(tmp_path):
  write_run(tmp_path / 'r', records=semisup_records([(0.03, 0.0343)]), hardware='1x NVIDIA H100')
  (result,) = [r for r in report.summarize(report.collect(tmp_path)) if r.runs]
  assert result.std is None
  assert report.format_ours(result) == '3.43'
  assert '| 1x NVIDIA H100, float32 |' in report.render([result], relative_to=tmp_path)


def test_a_torn_last_line_is_skipped(tmp_path):
  records = semisup_records([(0.03, 0.04)])
  write_run(tmp_path / 'r', records=records, tail='{"step": 3000, "eval/valid_err')
  (run,) = report.collect(tmp_path)
  assert list(run.records) == records


def test_runs_without_config_or_of_other_experiments_are_skipped(tmp_path):
  write_run(tmp_path / 'a', records=semisup_records([(0.03, 0.04)]),
            command='# --config=configs/mnist_semisup.py:1000 in a comment only\n'
                    'python -m aae_jax.main --workdir=runs/x')
  write_run(tmp_path / 'b', config='configs/mnist_gaussian.py',
            records=semisup_records([(0.03, 0.04)]))
  (tmp_path / 'c').mkdir()  # not a run: files missing
  (tmp_path / 'c' / 'metrics.jsonl').write_text('')
  runs = report.collect(tmp_path)
  assert [r.experiment for r in runs] == ['mnist_gaussian.py']
  assert all(not r.runs for r in report.summarize(runs))


@pytest.mark.parametrize('command, expected', [
    ('main --config=configs/mnist_semisup.py:100 --config.seed=1', 'mnist_semisup.py:100'),
    ('# comment --config=configs/a.py:1\nmain --config=configs/mnist_parzen.py', 'mnist_parzen.py'),
    ('main --config.model.code_dim=2 --config=configs/mnist_dimred.py:unsup',
     'mnist_dimred.py:unsup'),
    ('main --workdir=x  # --config=configs/mnist_parzen.py', None),
])
def test_parse_experiment(command, expected):
  assert report.parse_experiment(command) == expected


def test_experiments_with_no_runs_show_not_run(tmp_path):
  results = report.summarize(report.collect(tmp_path))
  assert len(results) == len(report.ROWS)
  for line in report.render(results).splitlines()[2:]:
    assert '| not run |' in line


def test_percent_formatting_and_signed_gap():
  assert report.format_value(0.0343, 'percent') == '3.43'
  assert report.format_value(341.27, 'nats') == '341.3'
  assert report.format_gap(3.43 - 1.60, 'percent') == '+1.83 pp'
  assert report.format_gap(3.43 - 3.90, 'percent') == '-0.47 pp'
  assert report.format_gap(-0.001, 'percent') == '+0.00 pp'
  assert report.format_gap(331.0 - 340.0, 'nats') == '-9.0 nats'
  assert report.paper_number('1.90 ± 0.10') == pytest.approx(1.90)
  assert report.paper_number('≈13.5') == pytest.approx(13.5)


README = ('# Project\r\n\nIntro with trailing spaces   \n<!-- report:begin -->\nold table\n'
          '| a | b |\n<!-- report:end -->\n\n## After\n\ttabbed, no final newline')


def test_readme_block_is_replaced_and_the_rest_kept(tmp_path):
  readme = tmp_path / 'README.md'
  readme.write_bytes(README.encode())
  assert report.update_readme(readme, '| new |\n| --- |\n')
  data = readme.read_bytes()
  head, tail = README.split('old table')[0], README.split('| a | b |\n')[1]
  assert data.startswith(head.encode())
  assert data.endswith(tail.encode())
  assert data == (head + '\n| new |\n| --- |\n\n' + tail).encode()
  assert not report.update_readme(readme, '| new |\n| --- |\n')  # idempotent
  assert readme.read_bytes() == data
  assert [p.name for p in tmp_path.iterdir()] == ['README.md']  # no temporary left


@pytest.mark.parametrize('text', [
    '# no markers\n',
    '<!-- report:begin -->\nonly the first\n',
    '<!-- report:end -->\nswapped\n<!-- report:begin -->\n',
    '<!-- report:begin -->\n<!-- report:begin -->\n<!-- report:end -->\n',
])
def test_missing_markers_raise_and_leave_the_file(tmp_path, text):
  readme = tmp_path / 'README.md'
  readme.write_text(text)
  with pytest.raises(errors.UserError, match='add both marker lines'):
    report.update_readme(readme, '| new |\n')
  assert readme.read_text() == text


def test_cli_prints_and_updates_the_readme(tmp_path, capsys):
  write_run(tmp_path / 'results' / 'semisup', records=semisup_records([(0.03, 0.0343)]))
  (tmp_path / 'docs').mkdir()
  readme = tmp_path / 'docs' / 'README.md'
  readme.write_text(f'top\n{report.BEGIN}\n{report.END}\nbottom\n')
  report.main(['report', str(tmp_path / 'results'), '--readme', str(readme)])
  printed = capsys.readouterr().out
  assert '| 3.43 |' in printed
  text = readme.read_text()
  assert text.startswith(f'top\n{report.BEGIN}\n') and text.endswith(f'{report.END}\nbottom\n')
  assert '[seed0](../results/semisup)' in text  # relative to the README's folder
  bad = tmp_path / 'BAD.md'
  bad.write_text('no markers\n')
  with pytest.raises(SystemExit, match='add both marker lines'):
    report.main(['report', str(tmp_path / 'results'), '--readme', str(bad)])
  assert bad.read_text() == 'no markers\n'
  with pytest.raises(SystemExit, match='no such results folder'):
    report.main(['report', str(tmp_path / 'missing')])


def _selected_test_error(folder):
  """The test error at the best validation error of a logged run (first of ties)."""
  evals = []
  for line in (folder / 'metrics.jsonl').read_text().splitlines():
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if 'eval/valid_error' in record and 'eval/test_error' in record:
      evals.append(record)
  best = evals[int(np.argmin([r['eval/valid_error'] for r in evals]))]
  return best['step'], best['eval/test_error']


def test_runs_of_another_precision_make_their_own_line(tmp_path):
  for seed, (precision, test) in enumerate([('float32', 0.03), ('bfloat16', 0.05),
                                            ('float32', 0.04)]):
    recorded = report.committed_config('python -m aae_jax.main --config=configs/mnist_'
                                       f'semisup.py:1000 --config.log_every=50 --config.seed={seed}')
    recorded['model']['precision'] = precision
    write_run(tmp_path / f'seed{seed}', seed=seed, recorded=recorded,
              records=semisup_records([(0.05, test)]))
  results = [r for r in report.summarize(report.collect(tmp_path))
             if r.row.config == 'mnist_semisup.py:1000']
  assert [[(x.run.seed, x.run.precision) for x in r.runs] for r in results] == [
      [(0, 'float32'), (2, 'float32')], [(1, 'bfloat16')]]
  assert results[0].mean == pytest.approx(0.035) and results[1].mean == pytest.approx(0.05)
  lines = [l for l in report.render(results, relative_to=tmp_path).splitlines()
           if 'mnist_semisup.py:1000' in l]
  assert '| 2-core CPU, float32 |' in lines[0] and '| 2-core CPU, bfloat16 |' in lines[1]
  assert all(not r.runs[0].run.differences for r in results)  # auto accepts either
  names = {p.name for p in report.draw_curves(results, tmp_path / 'curves')}
  assert names == {'mnist_semisup_1000__test_error.png',
                   'mnist_semisup_1000__test_error__bfloat16.png'}


def test_the_repository_results():
  """The 1000-label row, recomputed independently from the logged seeds' files."""
  folders = sorted(f for f in [RESULTS / 'mnist_semisup_1000',
                                *RESULTS.glob('mnist_semisup_1000_seed*')]
                   if (f / 'metrics.jsonl').is_file())
  if not folders:
    pytest.skip('results/mnist_semisup_1000* is not in this checkout')
  expected = {f.resolve(): _selected_test_error(f) for f in folders}
  result = next(r for r in report.summarize(report.collect(RESULTS))
                if r.row.config == 'mnist_semisup.py:1000')  # float32, the first line
  assert {run.run.path.resolve() for run in result.runs} == set(expected)
  for run in result.runs:
    assert (run.step, run.value) == expected[run.run.path.resolve()]
  values = [v for _, v in expected.values()]
  assert result.mean == pytest.approx(np.mean(values), rel=1e-12)
  if len(values) > 1:
    assert result.std == pytest.approx(np.std(values, ddof=1), rel=1e-12)


def test_a_row_without_a_paper_number_shows_no_gap(tmp_path):
  records = [{'step': 0, 'eval/test_error': 0.38, 'eval/test_error_majority': 0.35}]
  for seed in (0, 1):
    write_run(tmp_path / f'km{seed}', seed=seed, records=records,
              command=f'python -m aae_jax.kmeans --config=configs/mnist_kmeans.py:16 '
                      f'--config.seed={seed} --workdir=x')
  results = {(r.row.config, r.row.metric): r for r in report.summarize(report.collect(tmp_path))}
  paper_rule = results[('mnist_kmeans.py:16', 'eval/test_error')]
  majority = results[('mnist_kmeans.py:16', 'eval/test_error_majority')]
  assert paper_rule.mean == pytest.approx(0.38) and majority.mean == pytest.approx(0.35)
  assert paper_rule.gap is None
  cells = report.table_row(paper_rule, tmp_path)
  by_column = dict(zip(report.HEADER, cells))
  assert by_column['paper'] == report.NO_PAPER and by_column['ours'] == '38.00 ± 0.00'
  assert by_column['gap'] == '–' and by_column['paper at our epochs'] == '–'
  assert by_column['epochs (selected / trained)'] == '–'  # k-means logs no epochs


def test_the_paper_at_our_epochs_is_its_latest_point_all_runs_reached(tmp_path):
  row = _row('mnist_semisup.py:100,epochs=50')
  assert row.paper_epochs == ((1, '16.5'), (50, '3.4'), (500, '2.21'), (5000, '1.80'))
  for seed, epochs in ((0, 50), (1, 50)):
    records = [_eval(500 * e, 0.1, 0.1) for e in range(1, epochs + 1)]
    write_run(tmp_path / f's{seed}', config='configs/mnist_semisup.py:100,epochs=50',
              seed=seed, records=records)
  (result,) = [r for r in report.summarize(report.collect(tmp_path)) if r.row is row]
  assert report.format_paper_at(row, result.runs) == '3.4 (epoch 50)'
  short = [report.RunResult(r.run, r.value, r.step, r.epoch, 10.0, None) for r in result.runs]
  assert report.format_paper_at(row, short) == '16.5 (epoch 1)'  # 10 epochs: only epoch 1
  long = [report.RunResult(r.run, r.value, r.step, r.epoch, e, None)
          for r, e in zip(result.runs, (500.0, 620.0))]
  assert report.format_paper_at(row, long) == '2.21 (epoch 500)'
  assert _row('mnist_semisup.py:100,paper,epochs=50').paper_epochs == row.paper_epochs
  assert report.format_paper_at(_row('mnist_parzen.py'), result.runs) == report.EMPTY


def test_learning_curves_are_drawn_per_row_with_runs(tmp_path):
  write_run(tmp_path / 'r' / 'a', records=semisup_records([(0.05, 0.06), (0.03, 0.04)]))
  write_run(tmp_path / 'r' / 'b', seed=1,
            records=semisup_records([(0.06, 0.07), (0.02, 0.03)]))
  results = report.summarize(report.collect(tmp_path / 'r'))
  written = report.draw_curves(results, tmp_path / 'curves')
  assert [p.name for p in written] == ['mnist_semisup_1000__test_error.png']
  assert written[0].stat().st_size > 5000
  assert report.curve_name(_row('mnist_semisup.py:100,epochs=50')) == (
      'mnist_semisup_100_epochs=50__test_error.png')


def test_committed_config_applies_the_commands_overrides():
  config = report.committed_config(
      'python -m aae_jax.main --config=configs/mnist_semisup.py:100,paper,epochs=50 '
      '--config.seed=3 --config.optim.recon.lr=0.002 --workdir=runs/x  # --config.seed=9')
  assert config['seed'] == 3 and config['optim']['recon']['lr'] == 0.002
  assert config['data']['num_labels'] == 100 and config['optim']['disc']['clip'] == 5.0  # ,paper applied
  with pytest.raises(ValueError, match='does not apply'):
    report.committed_config('python -m aae_jax.main --config=configs/mnist_semisup.py '
                            '--config.no_such_field=1 --workdir=runs/x')


def test_a_run_whose_config_differs_is_marked_and_fails_the_check(tmp_path, capsys):
  records = semisup_records([(0.05, 0.06)])
  same = write_run(tmp_path / 'r' / 'same', records=records)
  changed = report.committed_config((same / 'command.txt').read_text())
  changed['model']['hidden'] = [500, 500]
  changed['log_every'] = 7  # a logging field: free, as on a rerun
  changed['seed'] = 1
  write_run(tmp_path / 'r' / 'other', seed=1, records=records, recorded=changed)
  runs = {r.path.name: r for r in report.collect(tmp_path / 'r')}
  assert runs['same'].differences == {}
  assert runs['other'].differences == {'model.hidden': ([500, 500], [1000, 1000])}
  table = report.render(report.summarize(runs.values()))
  assert '[seed0](' in table and '[seed1 (config differs)](' in table
  assert report.main(['report', str(tmp_path / 'r'), '--curves', '']) == 0
  assert report.main(['report', str(tmp_path / 'r'), '--curves', '', '--check']) == 1
  assert '1 run(s) differ' in capsys.readouterr().err


def test_every_run_in_the_repositorys_table_passes_the_config_check():
  """Each run a README row reports was trained by the committed config of its
  command.txt (recorded configs migrated; run-length and logging fields free)."""
  results = report.summarize(report.collect(RESULTS))
  if not any(r.runs for r in results):
    pytest.skip('results/ has no runs in this checkout')
  assert report.provenance_failures(results) == []


def test_a_run_of_another_length_passes_the_check_but_stays_out_of_its_row(tmp_path):
  """Run length is free for the check (a workdir may continue to more epochs), but a
  600-step probe with --config.num_train_steps must not be pooled into the row."""
  records = semisup_records([(0.05, 0.06)])
  write_run(tmp_path / 'r' / 'full', records=records)
  probe = write_run(
      tmp_path / 'r' / 'probe', seed=1, records=semisup_records([(0.5, 0.6)]),
      command='python -m aae_jax.main --config=configs/mnist_semisup.py:1000 '
              '--config.num_train_steps=600 --config.seed=1 --workdir=runs/p')
  runs = {r.path.name: r for r in report.collect(tmp_path / 'r')}
  assert runs['probe'].differences == {} and not runs['probe'].full_length
  assert runs['full'].full_length
  [result] = [x for x in report.summarize(runs.values())
              if x.row.config == 'mnist_semisup.py:1000']
  assert [r.run.path.name for r in result.runs] == ['full']
  assert result.mean == pytest.approx(0.06)
  assert json.loads((probe / 'config.json').read_text())['num_train_steps'] == 600


def test_a_workdir_continued_to_more_epochs_takes_its_length_from_the_history(tmp_path):
  """config.json is the first segment's (50 epochs); config_history.jsonl's last
  segment says the run went on to the 500 of its command's config."""
  command = ('python -m aae_jax.main --config=configs/mnist_semisup.py:100,paper,epochs=500 '
             '--config.seed=0 --workdir=runs/x')
  first = report.committed_config(command.replace('epochs=500', 'epochs=50'))
  first['model']['precision'] = 'float32'
  folder = write_run(tmp_path / 'r' / 'long', command=command, recorded=first,
                     records=semisup_records([(0.07, 0.08)]))
  [run] = report.collect(tmp_path / 'r')
  assert run.length == (25_000, 250_000) and not run.full_length  # config.json alone
  last = report.committed_config(command)
  (folder / 'config_history.jsonl').write_text(''.join(
      json.dumps({'start_step': step, 'config': config}) + '\n'
      for step, config in ((0, first), (25_000, last))))
  [run] = report.collect(tmp_path / 'r')
  assert run.length == (250_000, 250_000) and run.differences == {}
  [result] = [x for x in report.summarize([run])
              if x.row.config == 'mnist_semisup.py:100,paper,epochs=500']
  assert result.mean == pytest.approx(0.08)


def test_a_run_with_overrides_of_the_recipe_passes_the_check_but_stays_out_of_its_row(tmp_path):
  """A probe of other decay epochs records its command's config (it passes the check)
  but is not the row's recipe; seed, precision and logging overrides are."""
  full = write_run(tmp_path / 'r' / 'full', records=semisup_records([(0.05, 0.06)]),
                   command='python -m aae_jax.main --config=configs/mnist_semisup.py:1000 '
                           '--config.seed=0 --config.model.precision=float32 '
                           '--config.log_every=50 --workdir=runs/f')
  probe = write_run(
      tmp_path / 'r' / 'probe', seed=1, records=semisup_records([(0.01, 0.02)]),
      command="python -m aae_jax.main --config=configs/mnist_semisup.py:1000 --config.seed=1 "
              "--config.optim.recon.decay_epochs='(10,1000)' --workdir=runs/p")
  runs = {r.path.name: r for r in report.collect(tmp_path / 'r')}
  assert runs['probe'].differences == {} and runs['probe'].full_length
  assert list(runs['probe'].overrides) == ['optim.recon.decay_epochs']
  assert runs['full'].overrides == {}
  [result] = [x for x in report.summarize(runs.values())
              if x.row.config == 'mnist_semisup.py:1000']
  assert [r.run.path for r in result.runs] == [full]
  assert json.loads((probe / 'config.json').read_text())['optim']['recon']['decay_epochs'] == [
      10, 1000]
