"""Unsupervised clustering of MNIST (paper section 6, Table 3).

    python -m aae_jax.main --config=configs/mnist_cluster.py:16 --workdir=runs/cluster_16

The argument is the number of clusters (``16`` or ``30``; ``,smoke`` for tests);
``,paper`` the paper's recipe (below; ``,paper,torch7`` with Torch7's momentum
convention, ``common.paper_sgd``); 20 epochs either way, or ``epochs=100``
(a 20-epoch workdir continues there with the same command at ``epochs=100``). The
project's rate decays keep their place in the run (epochs 12 and 16 of 20, 60 and 80 of
100); the paper's stay at epochs 50 and 1000.
The semi-supervised architecture without its labelled phase: q(y|x) over n
categories matched to a uniform one-hot prior by a categorical discriminator,
style z to a Gaussian. Test error by the paper's rule (each cluster takes the
label of the validation example with the highest q(y_i|x)), ``eval/test_error``,
and by majority vote, ``eval/test_error_majority``; ``eval/test_mean_max_q``
says how close q(y|x) is to one-hot. Figure ``clusters.png``: each cluster's
head (style zero) with its most confident test members.

Two departures from the plain model, both measured (docs/clustering.md): the z
discriminator also sees stop_gradient(q(y|x)) (``model.disc_z_sees_y``), and
the categorical discriminator's input noise falls to zero once every category
is in use (``model.disc_y_noise_anneal_*``).

Measured on a 2-core CPU (20 epochs, seeds 0-2, two runs at a time, ~19 min of
training each at 8.4-8.9 steps/s; results/mnist_cluster_16*, _30*): 16
clusters 26.9 +- 10.1 % by the paper's rule, 22.4 +- 8.0 % by majority vote;
30 clusters 20.3 +- 5.3 % and 17.9 +- 3.7 %. The paper: 9.55 +- 2.05 / 4.10 %.

``,paper``: the paper's model and optimizers as this project reads them: 2x3000 ReLU
nets for the encoder, decoder and both discriminators, N(0, 0.01) weights, no noise on
the discriminators' inputs and a z discriminator that sees z alone, the semi-supervised
model's SGD (``common.paper_sgd``: momentum 0.9 and rate 0.01 for reconstruction, 0.1 and
0.1 for the adversarial players, gradients clipped at norm 5 (adversarial) and 100
(reconstruction), each rate / 10 after epochs 50 and 1000). Measured (float32,
results/mnist_cluster_16_paper*): 16 clusters 37.2 +- 7.6 % by the paper's rule at 20
epochs (five seeds); seed 0 at ``epochs=100`` 26.3 %, flat from epoch 40 on
(docs/paper_recipe.md).
"""

from configs import common


ARGS = dict(clusters=('16', '30'), epochs=('20', '100'), **common.PAPER_FLAGS)


def get_config(arg: str = '16'):
  a = common.parse_arg(arg, **ARGS)
  c = common.label_aware(common.base(), num_classes=int(a.clusters), style_dim=2,
                         num_labels=0)
  c.model.input_noise_std = 0.3
  epochs = int(a.epochs)
  c.num_train_steps = epochs * common.STEPS_PER_EPOCH
  c.eval_every = c.checkpoint_every = 4 * common.STEPS_PER_EPOCH
  if a.paper:
    c.model.hidden = c.model.disc_hidden = (3000, 3000)
    c.model.disc_y_input_noise_std = 0.0
    common.paper_sgd(c, ('recon', 'disc', 'disc_y', 'gen'), torch7=a.torch7)
    c.eval_every = c.checkpoint_every = common.STEPS_PER_EPOCH
    return common.smoke(c) if a.smoke else c
  # q(y, z) matched to q(y) p(z): the z discriminator also sees q(y|x), so a
  # category cannot keep a style of its own (docs/clustering.md).
  c.model.disc_z_sees_y = True
  # Once every category is in use, D_y's input noise falls to zero: at a fixed
  # 0.3 it caps how one-hot q(y|x) can get; once it is gone the number of
  # categories in use stays where it is. 16 are in use by step ~1,000; 30 took
  # 4,000-6,000 steps with the noise kept on (previous recipe, 3 seeds).
  if a.clusters == '16':
    c.model.disc_y_noise_anneal_start, c.model.disc_y_noise_anneal_steps = 1_000, 1_500
  else:
    c.model.disc_y_noise_anneal_start, c.model.disc_y_noise_anneal_steps = 4_000, 2_000
  # LeCun-normal init instead of N(0, 0.01): without labels, q(y|x) starts from
  # random but informative logits rather than uniform ones (docs/clustering.md).
  c.model.init_std = 0.0
  common.set_optimizers(c, ('recon', 'disc', 'disc_y', 'gen'), 'adam', 5e-4, b1=0.5,
                        decay_epochs=(12 * epochs // 20, 16 * epochs // 20),
                        decay_factor=0.3)
  return common.smoke(c) if a.smoke else c
