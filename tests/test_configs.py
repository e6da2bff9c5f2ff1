"""Every experiment config on disk: its argument words, a build of each variant and
an end-to-end smoke run (in-process, on tiny data), checked against what the
config asks for. A new file in configs/ is covered without editing this one."""

import importlib
import json
import pathlib

import numpy as np
import pytest

from aae_jax import kmeans
from aae_jax import priors
from aae_jax import train
from aae_jax import workdir as workdir_lib
from configs import common
from tests import helpers

CONFIGS = sorted(p.stem for p in (pathlib.Path(__file__).parents[1] / 'configs').glob('*.py')
                 if p.stem not in ('__init__', 'common'))


def _module(name):
  return importlib.import_module(f'configs.{name}')


def variants(name) -> list[str]:
  """Each choice of the config's first key with choices, and each flag on its own
  (with the flag it requires, if any)."""
  spec = _module(name).ARGS
  choices = [v for v in spec.values() if isinstance(v, tuple)]
  words = list(choices[0]) if choices else ['']
  flags = [','.join(filter(None, (common.FLAG_REQUIRES.get(k), k)))
           for k, v in spec.items() if isinstance(v, bool)]
  return words + [f'{words[0]},{f}'.lstrip(',') for f in flags]


def _dataset(config, tiny, svhn):
  return svhn if config.data.name == 'svhn_cropped' else tiny


def test_every_config_file_is_an_experiment():
  assert len(CONFIGS) >= 14, CONFIGS
  for name in CONFIGS:
    module = _module(name)
    assert isinstance(module.ARGS, dict) and callable(module.get_config), name
    assert module.__doc__ and f'configs/{name}.py' in module.__doc__, name  # its command


def test_parse_arg_takes_keys_flags_and_a_bare_first_value():
  spec = dict(labels=('1000', '100', 'all'), paper=False)
  a = common.parse_arg('', **spec)
  assert (a.labels, a.paper, a.smoke) == ('1000', False, False)
  a = common.parse_arg('100,paper,smoke', **spec)
  assert (a.labels, a.paper, a.smoke) == ('100', True, True)
  assert common.parse_arg('labels=all,paper=false', **spec).labels == 'all'
  assert common.parse_arg('smoke').smoke


@pytest.mark.parametrize('arg,message', [
    ('smok', "unknown word 'smok'"),  # no choices: a typo is not a value
    ('paper', "unknown word 'paper'"),
])
def test_parse_arg_rejects_unknown_words_without_choices(arg, message):
  with pytest.raises(ValueError, match=message):
    common.parse_arg(arg)


@pytest.mark.parametrize('name', ['mnist_semisup', 'mnist_cluster', 'mnist_parzen'])
def test_torch7_needs_paper(name):
  module = _module(name)
  with pytest.raises(ValueError, match="'torch7' modifies 'paper'; add it"):
    module.get_config('torch7')
  module.get_config('paper,torch7')  # builds


@pytest.mark.parametrize('arg,message', [
    ('1001', "labels='1001' is not one of its choices"),
    ('1000,papr', "labels='papr' is not one of its choices"),
    ('label=100', "unknown key 'label'"),
    ('paper=yes', 'paper is a flag'),
])
def test_parse_arg_rejects_unknown_words(arg, message):
  with pytest.raises(ValueError, match=message) as e:
    common.parse_arg(arg, labels=('1000', '100', 'all'), paper=False)
  assert 'labels=1000|100|all, paper, smoke' in str(e.value)  # what it accepts


@pytest.mark.parametrize('name', CONFIGS)
def test_a_typo_in_the_argument_is_refused(name):
  with pytest.raises(ValueError, match='config argument'):
    _module(name).get_config('smok,e')


def test_each_prior_config_has_exactly_its_fields():
  assert set(common.prior('gaussian')) == {'name', 'dim', 'std'}
  assert common.prior('mog', radius=9.0).radius == 9.0
  with pytest.raises(ValueError, match="prior 'gaussian' has no field radius"):
    common.prior('gaussian', radius=9.0)
  for name in priors.NAMES:
    prior = priors.from_config(common.prior(name))
    assert prior.name == name


@pytest.mark.parametrize('name,arg', [(n, v) for n in CONFIGS for v in variants(n)],
                         ids=[f'{n}:{v}' for n in CONFIGS for v in variants(n)])
def test_every_variant_builds(name, arg, tiny_dataset, svhn_dataset):
  """Each variant's modules, phases and initial state build (test_smoke_run trains
  each file's default variant end to end)."""
  config = helpers.config(name, f'{arg},smoke'.lstrip(','))
  full = helpers.config(name, arg)
  assert full.to_dict() != config.to_dict()  # smoke shrinks it
  if 'kmeans' in config:
    assert config.kmeans.num_clusters == int(arg)
    return
  exp = train.build(config, _dataset(config, tiny_dataset, svhn_dataset))
  assert exp.phases and int(exp.state.step) == 0
  owned = set().union(*(p.owns for p in exp.phases))
  assert owned <= set(exp.state.params), (owned, set(exp.state.params))


SCHEDULE_FIELDS = {'num_train_steps', 'eval_every', 'checkpoint_every', 'decay_epochs'}


@pytest.mark.parametrize('name', [n for n in CONFIGS if 'epochs' in _module(n).ARGS])
def test_an_epochs_choice_scales_the_schedule_only(name):
  """``epochs=N``: N epochs of 500 steps, every rate decay inside the run and in order,
  and nothing but the schedule differs from the default length."""
  choices = _module(name).ARGS['epochs']
  first = helpers.config(name, f'epochs={choices[0]}')
  for epochs in choices:
    config = helpers.config(name, f'epochs={epochs}')
    assert config.num_train_steps == int(epochs) * 500
    for phase, opt in config.optim.items():
      if phase == 'supervised' and not config.data.num_labels:
        continue  # no labelled phase: the optimizer is never built
      decays = list(opt.decay_epochs)
      assert decays == sorted(set(decays)) and 0 < decays[0] and decays[-1] < int(epochs), (
          phase, decays)
      # at the same fractions of the run as the default length's (to an epoch)
      np.testing.assert_allclose(np.array(decays) / int(epochs),
                                 np.array(first.optim[phase].decay_epochs) / int(choices[0]),
                                 atol=1 / int(choices[0]), err_msg=phase)
    changed = workdir_lib.differences(first.to_dict(), config.to_dict())
    assert {k.split('.')[-1] for k in changed} <= SCHEDULE_FIELDS, changed


# ----------------------------------------------------------------------------
# End to end: what each config must produce, derived from the config itself.

PARZEN = ('eval/parzen_ll', 'eval/parzen_ll_se', 'eval/parzen_sigma')
FID = ('eval/fid', 'eval/fid_train_images')
DENOISE = ('eval/denoise_psnr_gaussian', 'eval/noisy_psnr_gaussian',
           'eval/denoise_psnr_salt_pepper', 'eval/noisy_psnr_salt_pepper')
ANOMALY = ('eval/anomaly_auroc_recon', 'eval/anomaly_auroc_prior')
SHARES = ('eval/test_error', 'eval/valid_error', 'eval/test_error_majority',
          'eval/test_mean_max_q', 'eval/test_component_accuracy')
FIGURES = ('latent_test', 'reconstructions', 'style', 'clusters', 'prior_grid', 'samples')


def expected(config) -> tuple[dict[str, bool], set[str]]:
  """Metric keys that must be present (True) or absent (False), and the figures."""
  m, labels = config.model, config.data.num_labels != 0
  head = m.num_classes > 0
  e = config.evaluation
  keys = {'eval/valid_recon_loss': True, 'eval/test_recon_loss': True,
          'eval/test_mean_max_q': head, 'eval/test_clusters_used': head,
          'eval/test_error': head, 'eval/valid_error': head and labels,
          'eval/test_error_majority': head and not labels,
          'eval/test_component_accuracy': m.label_condition and 'num_components' in config.prior}
  keys.update({k: bool(e.parzen) for k in PARZEN})
  keys.update({k: bool(e.fid) for k in FID})
  keys.update({k: config.data.exclude_class >= 0 for k in ANOMALY})
  keys.update({k: bool(e.denoise) and not config.data.standardize for k in DENOISE})
  figures = {'latent_test', 'reconstructions'}
  figures |= {'prior_grid', 'samples'} if m.decoder_input == 'z' else {'style'}
  if head and not labels:
    figures.add('clusters')
  return keys, figures


@pytest.mark.parametrize('name', CONFIGS)
def test_smoke_run(name, tiny_dataset, svhn_dataset, tmp_path):
  config = helpers.config(name, 'smoke', num_train_steps=2)
  dataset = _dataset(config, tiny_dataset, svhn_dataset)
  if 'kmeans' in config:  # the baseline: a fit, not a training run
    metrics = kmeans.run(config, dataset)
    assert 0.0 <= metrics['eval/test_error'] <= 1.0
    return
  metrics = train.train_and_evaluate(config, str(tmp_path), dataset)
  keys, figures = expected(config)
  for key, present in keys.items():
    assert (key in metrics) == present, key
  for key, value in metrics.items():
    assert np.all(np.isfinite(np.asarray(value, np.float64))), (key, value)
  for key in SHARES:  # errors, accuracies and confidences are shares
    if key in metrics:
      assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
  if 'eval/parzen_sigma' in metrics:
    assert metrics['eval/parzen_sigma'] in np.logspace(-1, 0, 10)
  if 'eval/fid' in metrics:
    assert metrics['eval/fid'] > metrics['eval/fid_train_images'] >= 0  # untrained samples
  for figure in FIGURES:
    path = tmp_path / 'figures' / f'{figure}.png'
    assert path.exists() == (figure in figures), figure
    if figure in figures:
      assert path.stat().st_size > 1000, figure
  rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in rows] == [2]
  last = rows[-1]
  assert ('train/recon_loss' in last) == (config.model.regularizer != 'none')
  assert 'train/steps_per_sec' in last
  assert ('train/kl' in last) == (config.model.regularizer == 'vae')
  assert ('train/gen_loss' in last) == (config.model.regularizer == 'adversarial')
  assert ('train/ce_loss' in last) == bool(config.data.num_labels and config.model.num_classes)
  assert 'run/steps_per_sec' in last
  assert (tmp_path / 'checkpoints' / '2').is_dir()


def test_paper_semisup_recipe_is_the_appendix_with_stated_clips():
  from configs import mnist_semisup
  c = mnist_semisup.get_config('100,paper,epochs=5000')
  assert c.num_train_steps == 5000 * common.STEPS_PER_EPOCH and c.ema_decay == 0.0
  assert (c.loss.recon_reduction, c.model.init_std) == ('sum', 0.01)
  expected = dict(recon=(0.01, 0.9, 100.0), supervised=(0.1, 0.9, 0.0), disc=(0.1, 0.1, 5.0),
                  disc_y=(0.1, 0.1, 5.0), gen=(0.1, 0.1, 5.0))
  for phase, (lr, momentum, clip) in expected.items():
    o = c.optim[phase]
    assert (o.name, o.lr, o.momentum, o.clip) == ('sgd', lr, momentum, clip), phase
    assert (tuple(o.decay_epochs), o.decay_factor) == ((50, 1000), 0.1), phase
  assert mnist_semisup.get_config('100,paper,epochs=50').num_train_steps == 25_000


def test_paper_cluster_and_parzen_recipes_use_the_paper_sgd_and_nets():
  from configs import mnist_cluster, mnist_parzen
  c = mnist_cluster.get_config('16,paper')
  assert tuple(c.model.hidden) == tuple(c.model.disc_hidden) == (3000, 3000)
  assert (c.model.init_std, c.model.disc_y_input_noise_std) == (0.01, 0.0)
  assert not c.model.disc_z_sees_y and c.model.disc_y_noise_anneal_steps == 0
  for phase, (lr, momentum, clip) in dict(recon=(0.01, 0.9, 100.0), disc=(0.1, 0.1, 5.0),
                                          disc_y=(0.1, 0.1, 5.0),
                                          gen=(0.1, 0.1, 5.0)).items():
    o = c.optim[phase]
    assert (o.name, o.lr, o.momentum, o.clip) == ('sgd', lr, momentum, clip), phase
  assert c.num_train_steps == 20 * common.STEPS_PER_EPOCH
  p = mnist_parzen.get_config('paper,epochs=100')
  assert p.num_train_steps == 100 * common.STEPS_PER_EPOCH
  assert (p.optim.recon.name, p.optim.recon.lr, p.optim.gen.clip) == ('sgd', 0.01, 5.0)
  assert tuple(p.optim.recon.decay_epochs) == (50, 1000)
  assert (p.loss.reconstruction, p.loss.recon_reduction) == ('squared_error', 'sum')
  assert mnist_parzen.get_config('epochs=100').optim.recon.name == 'adam'  # unchanged


@pytest.mark.parametrize('name,arg', [('mnist_semisup', '100,paper,epochs=50'),
                                      ('mnist_cluster', '16,paper'),
                                      ('mnist_parzen', 'paper,epochs=100')])
def test_torch7_damps_each_paper_phase_by_its_momentum_and_changes_nothing_else(name, arg):
  module = _module(name)
  paper, torch7 = (json.loads(module.get_config(a).to_json_best_effort())
                   for a in (arg, arg + ',torch7'))
  differences = workdir_lib.trained_differences(torch7, paper)
  damped = {k.split('.')[1] for k in differences}
  assert set(differences) == {f'optim.{phase}.dampening' for phase in damped}
  # every SGD phase of the recipe, and only those (the cluster model's unused
  # supervised phase keeps Adam, where dampening would be refused)
  assert damped == {p for p, o in paper['optim'].items() if o['name'] == 'sgd'}
  for phase in damped:
    assert differences[f'optim.{phase}.dampening'] == (paper['optim'][phase]['momentum'], 0.0)


def test_recon_reduction_scales_the_objective_and_refuses_unknown_values():
  import ml_collections
  from aae_jax import errors, model
  loss = ml_collections.ConfigDict(dict(recon_reduction='mean'))
  assert model.recon_scale(loss, 784, 'adversarial') == pytest.approx(1 / 784)
  loss.recon_reduction = 'sum'
  assert model.recon_scale(loss, 784, 'vae') == 1.0
  loss.recon_reduction = 'avg'
  with pytest.raises(errors.UserError, match='loss.recon_reduction'):
    model.recon_scale(loss, 784, 'adversarial')
  loss.recon_reduction = 'mean'
  with pytest.raises(errors.UserError, match='vae'):
    model.recon_scale(loss, 784, 'vae')
