"""DISC: discovery of new objects in frame t (paper §3, "Discovery"; BUILD.md O2.6).

An AIR-style inference network that always runs exactly N steps (BUILD.md O7.1: the original computes a limit from the
number of propagated objects but never uses it; over-full frames are handled by truncation in the merge). Each step
reads the whole frame, the summary c_t of the objects PROP kept, and the previous step's latents, then proposes one
object: where (a diagonal Gaussian on the where logits), what (from a glimpse at that where), and presence (a
Bernoulli gated by the previous step's presence, so the chain stops at the first absent object).
"""

from typing import Dict

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from sqair_tf import conv as conv_lib
from sqair_tf import networks
from sqair_tf import presence as presence_lib
from sqair_tf.priors import diag_normal_log_prob
from sqair_tf import spatial_transformer

tfd = tfp.distributions


def gaussian_sample(loc, scale, seed):
    """Reparameterised sample loc + scale·ε with a stateless seed (int32 [2])."""
    return loc + scale * tf.random.stateless_normal(tf.shape(loc), seed=seed, dtype=loc.dtype)


class DiscoveryCore(keras.layers.Layer):
    """The DISC inference networks (BUILD.md O2.6) and the loop over its N steps.

    Args:
      config: a `ModelConfig`.
      glimpse_encoder: the `GlimpseEncoder` shared with PROP (BUILD.md O7.12).

    Sublayers: image encoder MLP(H·W·C → 256 → 256), VanillaRNN(256) with a trainable initial state, where MLP
    (256 → 256 → 256 → 8) with the learnable std offset β, presence MLP (256 + D → 128 → 1, bias init 1).
    """

    def __init__(self, config, glimpse_encoder, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        h = config.hidden_size
        self.glimpse_encoder = glimpse_encoder
        if config.architecture == "conv":  # CONV-SQAIR (BUILD.md "Models"): 50 → 25 → 13 → 7, then one ELU layer.
            self.image_encoder = conv_lib.ConvEncoder((32, 64, 64), (5, 3, 3), (2, 2, 2), (h,),
                                                      name="image_encoder")
        else:
            self.image_encoder = networks.MLP((h, h), name="image_encoder")
        self.rnn = networks.VanillaRNNCell(h, use_trainable_initial_state=True, name="rnn")
        self.where_mlp = networks.MLP((h, h), output_size=8, name="where_mlp")
        self.where_std_bias = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(config.where_std_bias_init), name="where_std_bias")
        self.presence_mlp = networks.MLP((config.small_hidden_size,), output_size=1,
                                         output_bias_init=config.disc_presence_bias, name="presence_mlp")

    def encode_images(self, images):
        """The image encoder's features [..., U] of frames [..., H, W, C].

        It depends on the frame alone, so the model runs it once over all frames of a batch, before the time
        loop and before the K particles of a sequence are tiled (they see the same frame): one large matrix
        product instead of T, on B·T rows instead of B·K·T.
        """
        if self.config.architecture == "conv":
            with keras.name_scope(self.name):
                return self.image_encoder(images)
        leading = tf.shape(images)[:-3]
        flat = tf.reshape(images, tf.concat([leading, [self.config.num_pixels]], axis=0))  # [..., H·W·C]
        with keras.name_scope(self.name):  # Called from outside this layer: keep the weights' paths under it.
            return self.image_encoder(flat)

    def call(self, image, image_features, summary, seed) -> Dict[str, tf.Tensor]:
        """Runs the N discovery steps on one frame.

        Args:
          image: [B, H, W, C] the frame x_t of each sequence, shared by its K particles (rows b·K … b·K + K − 1).
          image_features: [BK, U] `encode_images` of each particle's frame, computed by the caller.
          summary: [BK, U] c_t, the summary of the propagated objects (BUILD.md O2.9).
          seed: int32 [2] stateless seed.

        Returns:
          A dict of per-slot tensors, slot axis second (the merge's input format):
            z_what, what_loc, what_scale [BK, N, D]; z_where, where_loc, where_scale [BK, N, 4];
            z_pres, presence_logit (masked), presence_prob [BK, N];
          and per-example terms
            log_q_continuous [BK] = Σ_k z_pres_k·(log q(z_what_k) + log q(z_where_k)),
            log_q_discrete [BK] = log q(n) with n = Σ_k z_pres_k (BUILD.md O2.6, number-of-steps posterior).
        """
        cfg = self.config
        batch = summary.shape[0] if summary.shape[0] is not None else tf.shape(summary)[0]  # BK, static for XLA.
        z_what = tf.zeros([batch, cfg.z_what_dim], summary.dtype)
        z_where = tf.zeros([batch, 4], summary.dtype)
        z_pres = tf.ones([batch, 1], summary.dtype)  # The chain starts "present" (BUILD.md O2.6).
        state = self.rnn.initial_state(batch)  # [BK, U]
        steps = []
        for seed_k in tfp.random.split_seed(seed, cfg.num_slots):  # N is small and static.
            seed_where, seed_what, seed_pres = tfp.random.split_seed(seed_k, 3)
            rnn_input = tf.concat([image_features, summary, z_what, z_where, z_pres], axis=-1)  # [BK, 2·U + D + 4 + 1]
            hidden, state = self.rnn(rnn_input, state)  # [BK, U]
            where_stats = self.where_mlp(hidden)  # [BK, 8]
            where_loc = where_stats[:, :4]
            where_scale = tf.nn.softplus(where_stats[:, 4:] + self.where_std_bias) + cfg.min_std
            z_where = gaussian_sample(where_loc, where_scale, seed_where)  # [BK, 4]
            glimpse = spatial_transformer.extract_glimpses_shared(
                image, z_where, cfg.glimpse_size, cfg.where_shift_range)  # [BK, G, G, C]
            what_loc, what_scale = self.glimpse_encoder(glimpse)  # [BK, D] each
            z_what = gaussian_sample(what_loc, what_scale, seed_what)  # [BK, D]
            logit = self.presence_mlp(tf.concat([hidden, z_what], axis=-1))  # [BK, 1]
            decision = presence_lib.presence_step(logit, z_pres, seed_pres)
            z_pres = decision.z_pres  # [BK, 1]
            steps.append(dict(z_what=z_what, what_loc=what_loc, what_scale=what_scale, z_where=z_where,
                              where_loc=where_loc, where_scale=where_scale, z_pres=z_pres[:, 0],
                              presence_logit=decision.logit[:, 0], presence_prob=decision.prob[:, 0]))
        out = {key: tf.stack([s[key] for s in steps], axis=1) for key in steps[0]}  # [BK, N, ...]
        log_q_what = diag_normal_log_prob(out["z_what"], out["what_loc"], out["what_scale"])  # [BK, N]
        log_q_where = diag_normal_log_prob(out["z_where"], out["where_loc"], out["where_scale"])  # [BK, N]
        out["log_q_continuous"] = tf.reduce_sum(out["z_pres"] * (log_q_what + log_q_where), axis=1)  # [BK]
        num_steps = tf.reduce_sum(out["z_pres"], axis=1)  # [BK]
        out["log_q_discrete"] = presence_lib.num_steps_log_prob(out["presence_logit"], num_steps)  # [BK]
        return out
