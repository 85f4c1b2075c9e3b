"""PROP: propagation of the objects of frame t−1 into frame t (paper §3, "Propagation"; BUILD.md O2.8).

Each object present at t−1 is updated by looking at the new frame where it is expected to be: a proposal glimpse at
its old location plus a learned offset Δ, masked by a learned soft attention over the glimpse, gives a first look
ĝ. A "relation" RNN then runs over the objects in slot order, so each object's update sees the already-updated
latents of the objects before it; a per-object temporal GRU carries appearance memory across time. Each object
then samples a new where (a full-covariance Gaussian, residual on the old where), a new what (a gated mix of its
old code, the glimpse's estimate and the temporal state's estimate) and whether it is still present (a Bernoulli
gated by its presence at t−1: once gone, never back).

Which temporal state is used where (BUILD.md O7.6): the t−1 state h^T_{t−1} feeds Δ, both glimpse masks, the where
MLP and the presence MLP; the GRU is updated inside the what step, and its new state drives the what gates and is
what the object carries to t+1.
"""

from typing import Dict

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from sqair_tf import networks
from sqair_tf import presence as presence_lib
from sqair_tf import spatial_transformer
from sqair_tf.discovery import gaussian_sample
from sqair_tf.priors import diag_normal_log_prob, tril_normal_log_prob


class PropagationCore(keras.layers.Layer):
    """The PROP inference networks (BUILD.md O2.8) and the loop over the N slots.

    Args:
      config: a `ModelConfig`.
      glimpse_encoder: the `GlimpseEncoder` shared with DISC (BUILD.md O7.12).
      glimpse_mask: the `GlimpseMask` (part of the shared glimpse encoder in the original's inventory).

    Sublayers: Δ MLP (256 → 128 → 4), relation VanillaRNN(256) with trainable initial state, where MLP
    (516 → 256 → 256 → 8) with learnable std offset β', the shared lower-triangular factor L (10 entries),
    temporal GRU(256), temporal Gaussian head Linear(100), gates Linear(3·D, bias 1), presence MLP
    (562 → 128 → 1, bias 5).
    """

    def __init__(self, config, glimpse_encoder, glimpse_mask, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        h, d = config.hidden_size, config.z_what_dim
        self.glimpse_encoder = glimpse_encoder
        self.glimpse_mask = glimpse_mask
        self.proposal_mlp = networks.MLP((config.small_hidden_size,), output_size=4, name="proposal_mlp")
        self.relation_rnn = networks.VanillaRNNCell(h, use_trainable_initial_state=True, name="relation_rnn")
        self.where_mlp = networks.MLP((h, h), output_size=8, name="where_mlp")
        self.where_std_bias = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(config.where_std_bias_init), name="where_std_bias")
        # Free entries of the lower-triangular L in scale_tril = diag(std)·(I + L); Glorot-uniform on a 1-D shape
        # (fan_in = fan_out = 10), as the original's `tf.get_variable` default (BUILD.md O2.2, O2.8).
        self.where_cholesky = self.add_weight(shape=(10,), initializer="glorot_uniform", name="where_cholesky")
        self.temporal_rnn = networks.GRUCell(h, name="temporal_rnn")
        self.temporal_gaussian = networks.linear(2 * d, name="temporal_gaussian")
        self.what_gates = networks.linear(3 * d, bias_initializer=config.gate_bias_init, name="what_gates")
        self.presence_mlp = networks.MLP((config.small_hidden_size,), output_size=1,
                                         output_bias_init=config.prop_presence_bias, name="presence_mlp")

    def where_scale_tril(self, where_scale):
        """scale_tril = diag(std)·(I + L) [..., 4, 4] from the per-object std [..., 4] (BUILD.md O2.8 step 3)."""
        lower = tfp.math.fill_triangular(self.where_cholesky)  # [4, 4]
        return where_scale[..., :, None] * (tf.eye(4, dtype=where_scale.dtype) + lower)

    def call(self, image, z_what_tm1, z_where_tm1, z_pres_tm1, temporal_state_tm1, seed) -> Dict[str, tf.Tensor]:
        """Propagates the N objects of t−1.

        Args:
          image: [B, H, W, C] the frame x_t of each sequence, shared by its K particles (rows b·K … b·K + K − 1).
          z_what_tm1: [BK, N, D]; z_where_tm1: [BK, N, 4]; z_pres_tm1: [BK, N]; the objects at t−1.
          temporal_state_tm1: [BK, N, U] their temporal GRU states.
          seed: int32 [2] stateless seed.

        Returns:
          A dict of per-slot tensors, slot axis second:
            z_what, what_loc, what_scale [BK, N, D]; z_where, where_loc, where_scale [BK, N, 4] (where_scale is the
            diagonal std before the shared factor (I + L)); z_pres, presence_logit (masked), presence_prob [BK, N];
            temporal_state [BK, N, U];
          and per-example terms (BUILD.md O2.8)
            log_q_continuous [BK] = Σ_i z_pres_tm1·z_pres·(log q(z_what_i) + log q(z_where_i)),
            log_q_discrete [BK] = Σ_i z_pres_tm1·log q(z_pres_i).
        """
        cfg = self.config
        n, g = cfg.num_slots, cfg.glimpse_size
        batch = z_what_tm1.shape[0] if z_what_tm1.shape[0] is not None else tf.shape(z_what_tm1)[0]  # BK, static.

        # Everything that depends only on t−1 quantities, for all slots at once.
        mask = self.glimpse_mask(temporal_state_tm1)  # [BK, N, G, G, 1]
        delta = cfg.proposal_scale * self.proposal_mlp(temporal_state_tm1)  # [BK, N, 4]
        proposal = spatial_transformer.extract_glimpses_shared(
            image, z_where_tm1 + delta, g, cfg.where_shift_range)  # [BK, N, G, G, C]
        proposal_what, _ = self.glimpse_encoder(proposal, mask)  # [BK, N, D]: only the mean is used.

        z_what_prev = tf.zeros([batch, cfg.z_what_dim], z_where_tm1.dtype)  # Latents at t of the previous slot.
        z_where_prev = tf.zeros([batch, 4], z_where_tm1.dtype)
        z_pres_prev = tf.zeros([batch, 1], z_where_tm1.dtype)  # First slot: "previous present" = 0 (BUILD.md O7.10).
        relation_state = self.relation_rnn.initial_state(batch)  # [BK, U]
        # Per-slot views, split once: one unstack (whose gradient is one stack) instead of a strided slice, and
        # its gradient, per slot and tensor.
        per_slot = zip(tf.unstack(z_what_tm1, axis=1), tf.unstack(z_where_tm1, axis=1),
                       tf.unstack(z_pres_tm1[..., None], axis=1), tf.unstack(temporal_state_tm1, axis=1),
                       tf.unstack(proposal_what, axis=1), tf.unstack(mask, axis=1), tfp.random.split_seed(seed, n))
        slots = []
        for what_tm1, where_tm1, pres_tm1, temporal_tm1, proposal_what_i, mask_i, seed_i in per_slot:
            # [BK, D], [BK, 4], [BK, 1], [BK, U], [BK, D], [BK, G, G, 1]
            seed_where, seed_what, seed_pres = tfp.random.split_seed(seed_i, 3)
            rnn_input = tf.concat([proposal_what_i, z_what_prev, z_where_prev, z_pres_prev,
                                   what_tm1, where_tm1, pres_tm1, temporal_tm1], axis=-1)  # [BK, 3·D + 2·(4 + 1) + U]
            relation, relation_state = self.relation_rnn(rnn_input, relation_state)  # [BK, U]

            where_stats = self.where_mlp(tf.concat([relation, where_tm1, temporal_tm1], axis=-1))  # [BK, 8]
            where_loc = where_tm1 + where_stats[:, :4]  # Residual on the old where (BUILD.md O7.7).
            where_scale = tf.nn.softplus(where_stats[:, 4:] + self.where_std_bias + cfg.prop_where_std_offset)
            where_scale = where_scale + cfg.min_std  # [BK, 4]
            scale_tril = self.where_scale_tril(where_scale)  # [BK, 4, 4]
            noise = tf.random.stateless_normal([batch, 4, 1], seed=seed_where, dtype=z_where_tm1.dtype)
            z_where = where_loc + tf.matmul(scale_tril, noise)[..., 0]  # [BK, 4]

            glimpse = spatial_transformer.extract_glimpses_shared(
                image, z_where, g, cfg.where_shift_range)  # [BK, G, G, C]
            glimpse_loc, glimpse_scale = self.glimpse_encoder(glimpse, mask_i)  # [BK, D] each
            temporal, _ = self.temporal_rnn(
                tf.concat([relation, z_where, glimpse_loc, glimpse_scale], axis=-1), temporal_tm1)  # [BK, U]
            temporal_stats = self.temporal_gaussian(temporal)  # [BK, 2D]
            temporal_loc = temporal_stats[:, :cfg.z_what_dim]
            temporal_scale = tf.nn.softplus(temporal_stats[:, cfg.z_what_dim:]) + cfg.min_std
            gates = cfg.gate_scale * tf.sigmoid(self.what_gates(temporal))  # [BK, 3D]
            forget, gate_in, gate_temporal = tf.split(gates, 3, axis=-1)  # [BK, D] each
            what_loc = forget * what_tm1 + (1 - gate_in) * glimpse_loc + (1 - gate_temporal) * temporal_loc
            what_scale = (1 - gate_in) * glimpse_scale + (1 - gate_temporal) * temporal_scale
            z_what = gaussian_sample(what_loc, what_scale, seed_what)  # [BK, D]

            logit = self.presence_mlp(tf.concat([relation, temporal_tm1, z_what], axis=-1))  # [BK, 1]
            decision = presence_lib.presence_step(logit, pres_tm1, seed_pres)
            log_q_where = tril_normal_log_prob(z_where, where_loc, scale_tril)  # [BK]
            slots.append(dict(z_what=z_what, what_loc=what_loc, what_scale=what_scale, z_where=z_where,
                              where_loc=where_loc, where_scale=where_scale, z_pres=decision.z_pres[:, 0],
                              presence_logit=decision.logit[:, 0], presence_prob=decision.prob[:, 0],
                              temporal_state=temporal, log_q_where=log_q_where))
            z_what_prev, z_where_prev, z_pres_prev = z_what, z_where, decision.z_pres

        out = {key: tf.stack([s[key] for s in slots], axis=1) for key in slots[0]}  # [BK, N, ...]
        log_q_where = out.pop("log_q_where")  # [BK, N]
        log_q_what = diag_normal_log_prob(out["z_what"], out["what_loc"], out["what_scale"])  # [BK, N]
        alive = z_pres_tm1 * out["z_pres"]  # [BK, N]: present at t−1 and at t.
        out["log_q_continuous"] = tf.reduce_sum(alive * (log_q_what + log_q_where), axis=1)  # [BK]
        log_q_pres = presence_lib.presence_log_prob(out["z_pres"], out["presence_logit"])  # [BK, N]
        out["log_q_discrete"] = tf.reduce_sum(z_pres_tm1 * log_q_pres, axis=1)  # [BK]
        return out
