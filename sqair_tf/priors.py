"""Generative priors of MLP-SQAIR and the summary of propagated objects (BUILD.md O2.7, O2.9).

Propagated objects (BUILD.md O2.9):

* `PropagationPrior`: p(z_t | z_{t−1}) per object slot, a GRU over the object's previous (z_what, z_where)
  whose output gives a Bernoulli presence logit (+10, constant; −88 for objects absent at t−1) and absolute
  diagonal Normals over z_where and z_what. Slots are independent: they are folded into the batch axis.
* `LatentSummary`: c_t = Σ_i z_pres_i · MLP(z_what_i, z_where_i), the Deep-Sets code of the propagated
  objects that conditions discovery (both the DISC RNN and the DISC where prior).

Newly discovered objects (BUILD.md O2.7):

* z_what ~ N(0, I) (no network, see `discovery_prior_log_prob`).
* `DiscoveryWherePrior` ("RecurrentNormal"): an autoregressive Normal over the z_where of the N_disc slots,
  conditioned on [c_t, ĉ_t]. Only the previous *sample* is recurrent; the 4-unit RNN sees the same conditioned
  state s₀ at every slot and its new state is discarded (BUILD.md O7.4).
* `CountPrior`: Categorical logits over the number of discovered objects n ∈ {0..N},
  ELU(b + [t>0]·b_T + MLP(ĉ_t)); b_T starts at [10, 0, …, 0], so at t > 0 discovery is a priori unlikely.

Layers emit tensors (locations, scales, logits); the plain functions `propagation_prior_log_prob[_parts]` and
`discovery_prior_log_prob[_parts]` build the `tfd` distributions and apply the presence masks of BUILD.md O7.2;
the `_parts` variants keep the continuous (reparameterised) and discrete (VIMCO) terms apart.
Axis names: BK batch·particles (one leading axis inside a time step), N object slots (N_disc = Nd for
discovery slots), D z_what size, U the prior GRU width.
"""
from typing import Dict, NamedTuple, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from sqair_tf import networks
from sqair_tf import presence

tfd = tfp.distributions

# z_where is the (s_x, s_y, t_x, t_y) logit vector of the spatial transformer (BUILD.md O2.3).
Z_WHERE_DIM = 4


def _dim(x: tf.Tensor, axis: int):
    """Size of an axis: a Python int when static, else a scalar tensor.

    Under XLA, gradients through a `tf.while_loop` need the multiples of `tf.tile` (and similar shape
    arguments) to be compile-time constants; a `tf.shape` computed inside the loop body is not.
    """
    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


def _check_min_std(min_std: float) -> float:
    if min_std < 0:
        raise ValueError(f"min_std must be >= 0, got {min_std}.")
    return float(min_std)


class PropagationPrior(keras.layers.Layer):
    """Per-object propagation prior p(z_pres, z_where, z_what | z_{t−1}) ("rnn" type, BUILD.md O2.9).

    For every slot i, independently (slots are folded into the batch, [BK·N, ...]):

        h^P_i = GRU(concat[z_what_tm1_i, z_where_tm1_i], h^P_{i,t−1})                  (U units)
        [λ, where_loc, what_loc, where_pre, what_pre] = Linear_{1+4+D+4+D}(h^P_i)
        λ ← mask(λ + 10, z_pres_tm1_i)       (10 is a constant, not trainable; −88 if absent at t−1)
        where_scale, what_scale = softplus(pre) + 0.01

    The locations are absolute (not residuals on z_where_tm1, BUILD.md O7.7). The prior is evaluated before PROP
    inference, and its new state h^P is carried with the object (for all slots; absent ones are masked in the
    log-probs, not here).

    Newly discovered objects start from a trainable zero-initialised vector, `initial_state`. Its U
    parameters belong to this layer (so `count_params()` includes them), but BUILD.md O2.12 counts them under
    the "sequence" block ("initial temporal and prior GRU states (256 each)"); of this layer, the PROP block
    (1,283,583) counts only the GRU (input D+4, U units) and the Linear U → 2·D + 9.

    Args:
      z_what_dim: D (50 in the paper).
      hidden_size: U, the GRU width (256).
      presence_logit_bias: constant added to the presence logit (`prop_prior_step_bias` = 10).
      min_std: constant added to the softplus scales (0.01).

    Call (see `call`): previous latents and prior state of the N slots -> dict of prior statistics.
    """

    def __init__(
        self,
        z_what_dim: int = 50,
        hidden_size: int = 256,
        presence_logit_bias: float = 10.0,
        min_std: float = 0.01,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.z_what_dim = networks.check_positive_int(z_what_dim, "z_what_dim")
        self.hidden_size = networks.check_positive_int(hidden_size, "hidden_size")
        self.presence_logit_bias = float(presence_logit_bias)
        self.min_std = _check_min_std(min_std)
        self.cell = networks.GRUCell(hidden_size, name="gru", dtype=self.dtype_policy)
        # [λ (1), where-loc (4), what-loc (D), where-std-pre (4), what-std-pre (D)].
        self.readout = networks.linear(
            1 + 2 * (Z_WHERE_DIM + z_what_dim), name="readout", dtype=self.dtype_policy
        )
        # Its weight is created here, outside this layer's name scope: prefix the name to keep paths unique.
        self.initial_state_layer = networks.TrainableInitialState(
            hidden_size, name=f"{self.name}_initial_state", dtype=self.dtype_policy
        )

    def initial_state(self, batch_size, num_slots: Optional[int] = None) -> tf.Tensor:
        """Trainable initial prior state h^P of new objects: [batch_size, U] or [batch_size, num_slots, U].

        Inside a jitted `tf.while_loop` pass Python ints (e.g. `x.shape[0]`), not `tf.shape(x)[0]`: the
        gradient of the tiling needs compile-time multiples (see `_dim`).
        """
        state = self.initial_state_layer.initial_state(batch_size)  # [batch_size, U]
        if num_slots is None:
            return state
        return tf.tile(state[:, tf.newaxis, :], tf.stack([1, num_slots, 1]))  # [batch_size, num_slots, U]

    def call(
        self,
        z_what_tm1: tf.Tensor,
        z_where_tm1: tf.Tensor,
        z_pres_tm1: tf.Tensor,
        prior_state_tm1: tf.Tensor,
    ) -> Dict[str, tf.Tensor]:
        """Prior statistics of the N propagated slots at time t.

        Args:
          z_what_tm1: [BK, N, D].
          z_where_tm1: [BK, N, 4].
          z_pres_tm1: [BK, N] in {0, 1}; masks the presence logit.
          prior_state_tm1: [BK, N, U] prior GRU state h^P of each slot from t−1.

        Returns:
          dict with presence_logit [BK, N] (masked, +10 included), where_loc, where_scale [BK, N, 4],
          what_loc, what_scale [BK, N, D], prior_state [BK, N, U] (the new h^P).
        """
        d, u = self.z_what_dim, self.hidden_size
        leading = [_dim(z_what_tm1, 0), _dim(z_what_tm1, 1)]  # [BK, N]
        inputs = tf.concat([z_what_tm1, tf.cast(z_where_tm1, z_what_tm1.dtype)], axis=-1)  # [BK, N, D+4]
        inputs = tf.reshape(inputs, [-1, d + Z_WHERE_DIM])  # [BK·N, D+4]
        state_tm1 = tf.reshape(prior_state_tm1, [-1, u])  # [BK·N, U]
        output, state = self.cell(inputs, state_tm1)  # [BK·N, U] each
        stats = self.readout(output)  # [BK·N, 1 + 2·(4+D)]
        stats = tf.reshape(stats, tf.stack(leading + [1 + 2 * (Z_WHERE_DIM + d)]))  # [BK, N, ·]
        logit, where_loc, what_loc, where_pre, what_pre = tf.split(
            stats, [1, Z_WHERE_DIM, d, Z_WHERE_DIM, d], axis=-1
        )
        logit = presence.mask_presence_logit(
            logit[..., 0] + self.presence_logit_bias, z_pres_tm1
        )  # [BK, N]
        return dict(
            presence_logit=logit,
            where_loc=where_loc,  # [BK, N, 4]
            where_scale=tf.nn.softplus(where_pre) + self.min_std,  # [BK, N, 4]
            what_loc=what_loc,  # [BK, N, D]
            what_scale=tf.nn.softplus(what_pre) + self.min_std,  # [BK, N, D]
            prior_state=tf.reshape(state, tf.stack(leading + [u])),  # [BK, N, U]
        )


class DiscoveryWherePrior(keras.layers.Layer):
    """Autoregressive where prior of discovered objects ("RecurrentNormal", BUILD.md O2.7, O7.4).

        s₀   = ELU(Linear_H(concat[r₀, c_t, ĉ_t]))          r₀: trainable initial RNN state (4, zero-init)
        o_k  = tanh(W_in·w_{k−1} + b_in + W_hh·s₀ + b_hh)    VanillaRNN(4); its new state is discarded
        stats_k = Linear_8(o_k), bias init [sp, sp, 0, 0, 1, 1, 1, 1]  (sp = `scale_prior` = −2)
        p(z_where_k | w_{<k}) = N(stats_k[:4], softplus(stats_k[4:]) + 0.01)

    w₀ is a trainable (1, 4) vector (Glorot-uniform, like the original's initializer-less `tf.get_variable`);
    w_{k−1} is the z_where of slot k−1: the posterior sample in training (`log_prob_of`, teacher-forced, all
    slots at once) or the prior's own sample in generation (`sample`, slot by slot).

    Parameters (BUILD.md O2.12, inside the DISC block): Linear (4 + C + 1)·H + H, RNN in 4·4 + 4,
    RNN hh H·4 + 4, readout 4·8 + 8, initial state 4, initial sample 4; 34,120 for C = 256, H = 128.

    Args:
      num_steps: N_disc, the number of discovery slots sampled by `sample` (3).
      hidden_size: H, width of s₀ (128).
      scale_prior: initial mean of both scale logits (−2: sigmoid(−2) ≈ 0.12 of the image).
      std_bias: initial bias of the four std pre-activations (1: initial std ≈ 1.32).
      min_std: constant added to the softplus scales (0.01).

    Use `log_prob_of(z_where, c, c_hat)` (training) and `sample(c, c_hat, seed)` (generation); both go through
    `call(c [BK, C], c_hat [BK, 1], z_where=None, seed=None) -> (z_where, loc, scale)`, each [BK, Nd, 4].
    """

    def __init__(
        self,
        num_steps: int = 3,
        hidden_size: int = 128,
        scale_prior: float = -2.0,
        std_bias: float = 1.0,
        min_std: float = 0.01,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_steps = networks.check_positive_int(num_steps, "num_steps")
        self.hidden_size = networks.check_positive_int(hidden_size, "hidden_size")
        self.min_std = _check_min_std(min_std)
        self.conditioning_layer = networks.linear(hidden_size, name="conditioning", dtype=self.dtype_policy)
        self.cell = networks.VanillaRNNCell(Z_WHERE_DIM, name="rnn", dtype=self.dtype_policy)
        # r₀, the 4-unit RNN's trainable zero-initialised initial state; in the original it enters s₀ instead
        # of being the RNN's state (BUILD.md O2.7). Created here, outside the name scope: prefix the name.
        self.initial_state_layer = networks.TrainableInitialState(
            Z_WHERE_DIM, name=f"{self.name}_initial_state", dtype=self.dtype_policy
        )
        readout_bias = [scale_prior, scale_prior, 0.0, 0.0] + [std_bias] * Z_WHERE_DIM
        self.readout = networks.linear(
            2 * Z_WHERE_DIM, bias_initializer=readout_bias, name="readout", dtype=self.dtype_policy
        )
        self.initial_sample = self.add_weight(
            shape=(1, Z_WHERE_DIM), initializer="glorot_uniform", name="initial_sample"
        )

    def conditioned_state(self, c: tf.Tensor, c_hat: tf.Tensor) -> tf.Tensor:
        """s₀ = ELU(Linear(concat[r₀, c, ĉ])): [BK, C], [BK, 1] -> [BK, H]."""
        batch_size = _dim(c, 0)
        r0 = tf.cast(self.initial_state_layer.initial_state(batch_size), c.dtype)  # [BK, 4]
        return tf.nn.elu(self.conditioning_layer(tf.concat([r0, c, tf.cast(c_hat, c.dtype)], axis=-1)))

    def slot_stats(self, z_where_prev: tf.Tensor, s0: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """Statistics of one slot given the previous slot's z_where: [M, 4], [M, H] -> (loc, scale) [M, 4]."""
        output, _ = self.cell(z_where_prev, s0)  # [M, 4]; the new state is discarded (BUILD.md O7.4)
        loc, scale_pre = tf.split(self.readout(output), 2, axis=-1)  # [M, 4] each
        return loc, tf.nn.softplus(scale_pre) + self.min_std

    def call(
        self,
        c: tf.Tensor,
        c_hat: tf.Tensor,
        z_where: Optional[tf.Tensor] = None,
        seed: Optional[tf.Tensor] = None,
    ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Teacher-forced statistics (`z_where` given) or an autoregressive sample (`seed` given).

        Both modes go through `__call__`, so the sublayers are built inside this layer's name scope whichever
        is used first; `log_prob_of` and `sample` are the public entry points.

        Returns:
          (z_where, loc, scale), each [BK, Nd, 4]; in teacher-forced mode z_where is the input.
        """
        if (z_where is None) == (seed is None):
            raise ValueError("Pass exactly one of z_where (teacher forcing) and seed (sampling).")
        s0 = self.conditioned_state(c, c_hat)  # [BK, H]
        batch_size = _dim(s0, 0)
        w0 = tf.tile(tf.cast(self.initial_sample, s0.dtype), [batch_size, 1])  # [BK, 4]
        if z_where is not None:
            # All slots at once: slot k is conditioned on the given z_where of slot k−1.
            z_where = tf.cast(z_where, s0.dtype)
            num_slots = _dim(z_where, 1)
            z_where_prev = tf.concat([w0[:, tf.newaxis], z_where[:, :-1]], axis=1)  # [BK, Nd, 4]
            s0 = tf.broadcast_to(s0[:, tf.newaxis], tf.stack([batch_size, num_slots, self.hidden_size]))
            s0 = tf.reshape(s0, [-1, self.hidden_size])  # [BK·Nd, H], row b·Nd + k holds s₀ of row b
            loc, scale = self.slot_stats(tf.reshape(z_where_prev, [-1, Z_WHERE_DIM]), s0)  # [BK·Nd, 4]
            shape = tf.stack([batch_size, num_slots, Z_WHERE_DIM])
            return z_where, tf.reshape(loc, shape), tf.reshape(scale, shape)  # [BK, Nd, 4] each
        seeds = tfp.random.split_seed(seed, n=self.num_steps)
        z_where_prev = w0  # [BK, 4]
        samples, locs, scales = [], [], []
        for k in range(self.num_steps):
            loc, scale = self.slot_stats(z_where_prev, s0)  # [BK, 4] each
            z_where_prev = tfd.Normal(loc, scale).sample(seed=seeds[k])  # [BK, 4], reparameterised
            samples.append(z_where_prev)
            locs.append(loc)
            scales.append(scale)
        return tf.stack(samples, axis=1), tf.stack(locs, axis=1), tf.stack(scales, axis=1)  # [BK, Nd, 4]

    def log_prob_of(self, z_where: tf.Tensor, c: tf.Tensor, c_hat: tf.Tensor) -> tf.Tensor:
        """Teacher-forced per-slot log p(z_where_k | z_where_{<k}, c, ĉ): [BK, Nd, 4] -> [BK, Nd].

        Vectorised over the slots (one pass, no loop). Unmasked: the caller multiplies by the DISC presence
        of each slot (`discovery_prior_log_prob`). Any Nd works (usually `num_steps`).
        """
        z_where, loc, scale = self(c, c_hat, z_where=z_where)  # [BK, Nd, 4] each
        return diag_normal_log_prob(z_where, loc, scale)

    def sample(
        self, c: tf.Tensor, c_hat: tf.Tensor, seed: tf.Tensor
    ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Samples the z_where of the `num_steps` slots autoregressively from the prior (generation).

        Reparameterised (z = loc + scale·ε). Slot k uses the stateless seed `split_seed(seed, Nd)[k]`.

        Args:
          c: [BK, C] summary of the propagated objects.
          c_hat: [BK, 1] expected propagation-prior count ĉ_t.
          seed: stateless int32 seed of shape [2].

        Returns:
          (z_where, loc, scale), each [BK, Nd, 4] with Nd = `num_steps`.
        """
        return self(c, c_hat, seed=seed)


class CountPrior(keras.layers.Layer):
    """Logits of the Categorical prior on the number of discovered objects n ∈ {0..N} (BUILD.md O2.7).

        logits = ELU(b + [t > 0]·b_T + MLP_{1→10(ELU)→N+1}(ĉ_t))

    The count penalty λ (BUILD.md "Options beyond the paper") is not part of this prior: it is a cost in the
    training objective (`discovery_prior_log_prob_parts`), so the prior stays free to follow the count the
    posterior discovers and samples from it discover objects.

    b (init 0) and b_T (init [10, 0, …, 0]) are learnable. The ELU bounds every learnt logit below by −1, so at
    t > 0, where b_T pushes n = 0, P(n = 0) ≈ e^10 / (e^10 + N) ≈ 0.9999 at initialisation; at t = 0 the
    logits are ELU(MLP(ĉ_0)), close to uniform. The support is always {0..N} whatever was propagated.
    BUILD.md O2.12 counts the MLP (64 parameters for N = 3) inside DISC and b, b_T (2·(N+1)) separately.

    Args:
      num_slots: N, the maximum number of discovered objects (3).
      hidden_size: width of the MLP's single ELU hidden layer (10).
      later_step_zero_bias: initial b_T[0], the push towards n = 0 after the first frame (10).

    Call: `c_hat` [BK, 1], `t` scalar int32 tensor, the time index (b_T is added where t > 0; a bool tensor is
    read as 0/1, so `t > 0` may be passed too) -> logits [BK, N+1]. Keras only takes tensors positionally:
    pass a Python int as `t=0`.
    """

    def __init__(
        self,
        num_slots: int = 3,
        hidden_size: int = 10,
        later_step_zero_bias: float = 10.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_slots = networks.check_positive_int(num_slots, "num_slots")
        num_counts = num_slots + 1
        self.hidden_size = networks.check_positive_int(hidden_size, "hidden_size")
        self.mlp = networks.MLP((hidden_size,), output_size=num_counts, name="mlp", dtype=self.dtype_policy)
        self.bias = self.add_weight(shape=(num_counts,), initializer="zeros", name="bias")
        later_init = np.zeros(num_counts, np.float32)
        later_init[0] = later_step_zero_bias
        self.later_step_bias = self.add_weight(
            shape=(num_counts,),
            initializer=keras.initializers.Constant(later_init),
            name="later_step_bias",
        )

    def call(self, c_hat: tf.Tensor, t) -> tf.Tensor:
        is_later_step = tf.cast(tf.cast(t, tf.int32) > 0, c_hat.dtype)  # scalar [t > 0]
        bias = tf.cast(self.bias, c_hat.dtype) + is_later_step * tf.cast(self.later_step_bias, c_hat.dtype)
        return tf.nn.elu(bias + self.mlp(c_hat))  # [BK, N+1]


def discovery_priors(config) -> Tuple[DiscoveryWherePrior, CountPrior]:
    """DISC's where prior and count prior (BUILD.md O2.7) as a `ModelConfig` sizes them: the same two layers in
    MLP-SQAIR and in MLP-AIR, which sees every frame as SQAIR sees its first."""
    where_prior = DiscoveryWherePrior(num_steps=config.num_slots, hidden_size=config.prior_hidden_size,
                                      scale_prior=config.scale_prior, min_std=config.min_std,
                                      name="discovery_where_prior")
    count_prior = CountPrior(num_slots=config.num_slots, hidden_size=config.count_prior_hidden_size,
                             name="count_prior")
    return where_prior, count_prior


class LatentSummary(keras.layers.Layer):
    """c_t = Σ_i z_pres_i · MLP_{D+4→U(ELU)→U(ELU)}(concat[z_what_i, z_where_i]) (BUILD.md O2.9).

    A Deep-Sets sum over the N PROP outputs at time t; absent objects contribute exactly nothing. It feeds
    the DISC RNN (inference) and the DISC where prior (generative). BUILD.md O2.12 counts its MLP in the
    "sequence" block, together with the two trainable 256-d initial states owned elsewhere.

    Args:
      hidden_size: width of its two ELU layers (256); the MLP ends with an ELU, no linear output.

    Call: `z_what` [BK, N, D], `z_where` [BK, N, 4], `z_pres` [BK, N] -> c_t [BK, hidden_size].
    """

    def __init__(self, hidden_size: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = networks.check_positive_int(hidden_size, "hidden_size")
        self.mlp = networks.MLP((hidden_size, hidden_size), name="mlp", dtype=self.dtype_policy)

    def call(self, z_what: tf.Tensor, z_where: tf.Tensor, z_pres: tf.Tensor) -> tf.Tensor:
        codes = self.mlp(tf.concat([z_what, tf.cast(z_where, z_what.dtype)], axis=-1))  # [BK, N, U]
        return tf.reduce_sum(tf.cast(z_pres, codes.dtype)[..., tf.newaxis] * codes, axis=1)  # [BK, U]


def diag_normal_log_prob(x: tf.Tensor, loc: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """log N(x; loc, diag(scale²)), summed over the last axis: [..., E] -> [...]."""
    return tf.reduce_sum(tfd.Normal(loc, scale).log_prob(tf.cast(x, loc.dtype)), axis=-1)


def tril_normal_log_prob(x: tf.Tensor, loc: tf.Tensor, scale_tril: tf.Tensor) -> tf.Tensor:
    """log N(x; loc, L·Lᵀ) for an invertible lower-triangular L: [..., E], [..., E], [..., E, E] -> [...].

    The value `tfd.MultivariateNormalTriL(loc, L).log_prob(x)` computes, by the same triangular solve and
    log-diagonal, but without a TFP bijector: TFP's global bijector cache holds the input of every bijector call
    strongly, and inside a `tf.function` that input's graph holds the cached output, so every traced function
    that called it stayed in memory for the life of the process (about 0.3 GB per trace of the `paper` model's
    forward and backward; BUILD.md "Memory").
    """
    e = x.shape[-1]
    white = tf.linalg.triangular_solve(scale_tril, (x - loc)[..., None], lower=True)[..., 0]  # L⁻¹(x − loc)
    log_det = tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(scale_tril))), axis=-1)  # log |det L|
    return -0.5 * tf.reduce_sum(tf.square(white), axis=-1) - log_det - 0.5 * e * np.log(2 * np.pi)


class LogProbParts(NamedTuple):
    """A log-probability split by the gradient estimator that handles each part (BUILD.md O4), both [BK].

    Attributes:
      continuous: terms of the reparameterised latents z_what, z_where (presence-masked).
      discrete: terms of the discrete latents: PROP presence Bernoullis, or the DISC count n.
    """
    continuous: tf.Tensor
    discrete: tf.Tensor


def propagation_prior_log_prob_parts(
    prior_outputs: Dict[str, tf.Tensor],
    z_what: tf.Tensor,
    z_where: tf.Tensor,
    z_pres: tf.Tensor,
    z_pres_tm1: tf.Tensor,
) -> LogProbParts:
    """log p of the propagated latents under the propagation prior, masked as in BUILD.md O2.9, O7.2.

        continuous = Σ_i z_pres_tm1_i·z_pres_i·(log N(z_what_i) + log N(z_where_i))
        discrete   = Σ_i z_pres_tm1_i·log Bern(z_pres_i; λ_i)

    An object absent at t−1 contributes exactly 0 (the masks multiply finite log-probs), whatever its
    latents; an object that disappears at t contributes only its presence term. The Normals are diagonal and
    absolute (not centred on z_{t−1}).

    Args:
      prior_outputs: the dict returned by `PropagationPrior` (presence_logit, where_loc, where_scale,
        what_loc, what_scale; prior_state is ignored).
      z_what: [BK, N, D] PROP samples at t.
      z_where: [BK, N, 4] PROP samples at t.
      z_pres: [BK, N] PROP presence at t.
      z_pres_tm1: [BK, N] presence at t−1.

    Returns:
      `LogProbParts`, each [BK], summed over the slots.
    """
    what_lp = diag_normal_log_prob(z_what, prior_outputs["what_loc"], prior_outputs["what_scale"])
    where_lp = diag_normal_log_prob(z_where, prior_outputs["where_loc"], prior_outputs["where_scale"])
    pres_lp = presence.presence_log_prob(z_pres, prior_outputs["presence_logit"])  # [BK, N]
    z_pres = tf.cast(z_pres, what_lp.dtype)
    z_pres_tm1 = tf.cast(z_pres_tm1, what_lp.dtype)
    return LogProbParts(
        continuous=tf.reduce_sum(z_pres_tm1 * z_pres * (what_lp + where_lp), axis=-1),  # [BK]
        discrete=tf.reduce_sum(z_pres_tm1 * pres_lp, axis=-1),  # [BK]
    )


def propagation_prior_log_prob(
    prior_outputs: Dict[str, tf.Tensor],
    z_what: tf.Tensor,
    z_where: tf.Tensor,
    z_pres: tf.Tensor,
    z_pres_tm1: tf.Tensor,
) -> tf.Tensor:
    """The total of `propagation_prior_log_prob_parts` (same arguments), [BK]:

        Σ_i [ z_pres_tm1_i·z_pres_i·(log N(z_what_i) + log N(z_where_i))
              + z_pres_tm1_i·log Bern(z_pres_i; λ_i) ]
    """
    parts = propagation_prior_log_prob_parts(prior_outputs, z_what, z_where, z_pres, z_pres_tm1)
    return parts.continuous + parts.discrete


def discovery_prior_log_prob_parts(
    z_what: tf.Tensor,
    z_where_log_prob: tf.Tensor,
    z_pres: tf.Tensor,
    count_logits: tf.Tensor,
    num_steps: Optional[tf.Tensor] = None,
    count_penalty: float = 0.0,
) -> LogProbParts:
    """log p of the discovered latents under the DISC prior (BUILD.md O2.7, O7.2), less the count penalty.

        continuous = Σ_k z_pres_k·(log N(z_what_k; 0, I) + log p(z_where_k | z_where_{<k}))
        discrete   = log Cat(n; count_logits) − λ·n

    Evaluated on all N_disc slots (before merging/truncation, BUILD.md O2.10 item 4) and masked by DISC presence.

    λ (`count_penalty`, 0 in the paper) is a cost of λ nats per discovered object in the log weight the
    objective sees, against one digit explained by two objects (BUILD.md "Options beyond the paper"). It is not
    in the prior: the count prior's own gradient is that of log Cat(n), so it follows the discovered counts and
    generation is unchanged. Since λ·n ≥ 0, a bound computed with it stays a lower bound on log p(x).

    Args:
      z_what: [BK, Nd, D] DISC samples.
      z_where_log_prob: [BK, Nd] from `DiscoveryWherePrior.log_prob_of` (unmasked).
      z_pres: [BK, Nd] DISC presence (a stop chain: present slots first).
      count_logits: [BK, Nd+1] from `CountPrior`.
      num_steps: [BK] number of discovered objects n (int or integer-valued float); Σ_k z_pres_k if None.
      count_penalty: λ ≥ 0, nats per discovered object.

    Returns:
      `LogProbParts`, each [BK].
    """
    if not count_penalty >= 0:
        raise ValueError(f"count_penalty must be >= 0, got {count_penalty!r}")
    what_lp = diag_normal_log_prob(
        z_what, tf.zeros([], z_where_log_prob.dtype), tf.ones([], z_where_log_prob.dtype)
    )  # [BK, Nd]
    z_pres = tf.cast(z_pres, what_lp.dtype)
    if num_steps is None:
        num_steps = tf.reduce_sum(z_pres, axis=-1)  # [BK]
    return LogProbParts(
        continuous=tf.reduce_sum(z_pres * (what_lp + z_where_log_prob), axis=-1),  # [BK]
        discrete=presence.count_prior_log_prob(count_logits, num_steps)
        - count_penalty * tf.cast(num_steps, what_lp.dtype),  # [BK]
    )


def discovery_prior_log_prob(
    z_what: tf.Tensor,
    z_where_log_prob: tf.Tensor,
    z_pres: tf.Tensor,
    count_logits: tf.Tensor,
    num_steps: Optional[tf.Tensor] = None,
) -> tf.Tensor:
    """The total of `discovery_prior_log_prob_parts` (same arguments), [BK]:

        Σ_k z_pres_k·(log N(z_what_k; 0, I) + where log-prob_k) + log Cat(n; count_logits)
    """
    parts = discovery_prior_log_prob_parts(z_what, z_where_log_prob, z_pres, count_logits, num_steps)
    return parts.continuous + parts.discrete
