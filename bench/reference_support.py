"""Which configs the benchmark's references (plain JAX, PyTorch) cover.

Kept free of torch so that the plain-JAX reference runs where the bench extra
(torch) is not installed.
"""

from __future__ import annotations

from aae_jax import errors


def check_supported(config) -> None:
  """Raises errors.UserError naming every config field the reference does not cover."""
  m = config.model
  checks = (  # (field, value, covered)
      ('model.encoder', m.encoder, m.encoder == 'deterministic'),
      ('prior.name', config.prior.name, config.prior.name == 'gaussian'),
      ('model.regularizer', m.regularizer, m.regularizer == 'adversarial'),
      ('model.batch_norm', m.batch_norm, not m.batch_norm),
      ('model.input_dropout', m.input_dropout, m.input_dropout == 0),
      ('model.label_condition', m.label_condition, not m.label_condition),
      ('model.decoder_input', m.decoder_input,
       m.decoder_input == 'z' or (m.decoder_input == 'y_z' and m.num_classes > 0)),
  )
  bad = [f'{field}={value!r}' for field, value, covered in checks if not covered]
  if bad:
    raise errors.UserError(
        'The benchmark references (plain JAX, PyTorch) cover the deterministic encoder with a Gaussian prior, '
        'unsupervised or with a q(y|x) head (model.num_classes > 0, '
        'model.decoder_input="y_z"), without batch norm, input dropout or label '
        f'conditioning; this config has {", ".join(bad)}.')
