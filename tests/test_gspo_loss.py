"""GSPO objective against a plain numpy implementation of docs/reference.md section 5."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o3jax.train.gspo_loss import gspo_objective


def numpy_gspo(lp, old, ref, mask, adv, eps_low, eps_high, beta):
  """Value and d(value)/d(lp) of mean_i [ -min(s A, clip(s) A) + beta mean_t k3 ]."""
  n = lp.shape[0]
  losses, grad = [], np.zeros_like(lp)
  for i in range(n):
    m = mask[i].astype(bool)
    L = max(m.sum(), 1)
    s = np.exp((lp[i][m] - old[i][m]).sum() / L)
    a = adv[i]
    c = min(max(s, 1 - eps_low), 1 + eps_high)
    unclipped, clipped = s * a, c * a
    pg = -min(unclipped, clipped)
    x = np.clip(ref[i] - lp[i], -10, 10)
    k3 = np.exp(x) - x - 1
    losses.append(pg + beta * k3[m].sum() / L)
    # Gradient: through s only when the min takes the unclipped term (or both are equal).
    if unclipped <= clipped:
      grad[i][m] += -a * s / L
    inside = (ref[i] - lp[i] > -10) & (ref[i] - lp[i] < 10)
    grad[i][m] += beta * ((1 - np.exp(x)) * inside)[m] / L
  return np.mean(losses), grad / n


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("eps", [(0.2, 0.2), (3e-4, 4e-4)])
def test_values_and_gradients_equal_numpy(seed, eps):
  rng = np.random.default_rng(seed)
  n, t = 8, 12
  lp = -rng.gamma(2.0, 0.7, (n, t))
  old = lp + rng.normal(0, 0.3, (n, t))
  ref = lp + rng.normal(0, 2.0 if seed % 2 else 8.0, (n, t))  # large gaps exercise the clamp
  mask = (rng.random((n, t)) < 0.8).astype(np.float64)
  mask[0] = 0  # an empty completion stays finite
  adv = rng.normal(0, 1, n)
  beta = 0.04
  want, want_grad = numpy_gspo(lp, old, ref, mask, adv, *eps, beta)

  def f(x):
    (total, count), _ = gspo_objective(
      x,
      jnp.asarray(old),
      jnp.asarray(ref),
      jnp.asarray(mask),
      jnp.asarray(adv),
      eps_low=eps[0],
      eps_high=eps[1],
      beta=beta,
    )
    return total / count

  with jax.enable_x64(True):
    value, grad = jax.value_and_grad(f)(jnp.asarray(lp))
  np.testing.assert_allclose(float(value), want, rtol=1e-6, atol=1e-8)
  np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-6, atol=1e-8)


def test_one_update_is_length_normalised_policy_gradient_plus_kl():
  """With pi_old = pi_theta the ratio is 1, the clip never acts, and the gradient is
  -A_i / |o_i| per completion token plus the KL term."""
  rng = np.random.default_rng(7)
  n, t, g = 8, 10, 4
  lp = -rng.gamma(2.0, 0.5, (n, t))
  ref = lp + rng.normal(0, 0.5, (n, t))
  mask = (rng.random((n, t)) < 0.7).astype(np.float64)
  rewards = rng.random(n)
  groups = rewards.reshape(-1, g)
  adv = (
    (groups - groups.mean(1, keepdims=True)) / (groups.std(1, ddof=1, keepdims=True) + 1e-4)
  ).reshape(-1)
  beta = 0.04

  def f(x):
    (total, count), m = gspo_objective(
      x,
      jax.lax.stop_gradient(x),
      jnp.asarray(ref),
      jnp.asarray(mask),
      jnp.asarray(adv),
      eps_low=0.2,
      eps_high=0.2,
      beta=beta,
    )
    return total / count, m

  with jax.enable_x64(True):
    (value, metrics), grad = jax.value_and_grad(f, has_aux=True)(jnp.asarray(lp))
  length = np.maximum(mask.sum(1, keepdims=True), 1)
  pg = -adv[:, None] * mask / length
  kl = beta * (1 - np.exp(ref - lp)) * mask / length
  np.testing.assert_allclose(np.asarray(grad), (pg + kl) / n, rtol=1e-6, atol=1e-10)
  assert float(metrics["clipped"]) == 0
  np.testing.assert_allclose(float(metrics["ratio"]), n, rtol=1e-12)
