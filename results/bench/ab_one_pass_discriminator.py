# Run at commit e4a8356 (where AAE.discriminate_many existed; reverted in 674ed57 after this A/B).
"""A/B: the discriminator phases with one D pass (current) vs two separate calls."""
import statistics, sys
from aae_jax import bench, phases
from configs import mnist_parzen, mnist_semisup

def two_calls(self, params, codes, positions, keys, condition=None, name='discriminator'):
  module = self.discriminator if name == 'discriminator' else self.disc_y
  out = []
  for z, k in zip(codes, keys):
    noise = None
    if module.input_noise_std > 0:
      noise = phases.per_example_normal(k, positions, {'d': (z.shape[-1],)})['d']
    out.append(module.apply({'params': params[name]}, z, noise, condition))
  return out

for name, c in (('parzen', mnist_parzen.get_config()), ('semisup1000', mnist_semisup.get_config('1000'))):
  ds = bench.synthetic_dataset(c)
  one = bench.JaxStep(c, ds)
  orig = phases.AAE.discriminate_many
  phases.AAE.discriminate_many = two_calls
  two = bench.JaxStep(c, ds)
  phases.AAE.discriminate_many = orig
  a, b = [], []
  for _ in range(7):
    a.append(one.time_window()); b.append(two.time_window())
  print(name, 'one-pass steps/s', round(statistics.median(a)/100, 2), 'two calls', round(statistics.median(b)/100, 2),
        'ratio', round(statistics.median(a)/statistics.median(b), 3))
