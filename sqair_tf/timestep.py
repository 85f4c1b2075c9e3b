"""One SQAIR time step: propagate, discover, merge, render, weigh (paper §3, Algorithm 1; BUILD.md O2.11).

`SQAIRCell` owns every network of the model and offers two step functions over the same object state:

* `inference_step(image, state, t, seed[, image_features])`: the posterior step used for training and
  evaluation. Order (BUILD.md O2.11): propagation prior from z_{t−1}; PROP inference; summary c_t of the propagated
  objects and the expected count ĉ_t; DISC inference and the DISC priors; merge (present first, truncate to N,
  ids); the prior and posterior terms of the log weight.
* `prior_step(state, t, seed, discover)`: one step of the generative model alone (paper Figs. 5, 6): propagation
  from the propagation prior and, if `discover`, new objects from the DISC priors.
* `render(outputs)` decodes the objects into glimpses and the canvas, and `weigh(outputs, frames)` adds
  log p(x_t | z_t) and the log weight log w_t = log p(x_t | z_t) + log p(z_t | z_{t−1}) − log q(z_t | x_t,
  z_{t−1}). No step reads them, so the sequence model runs them once after the time loop over all T·BK rows: one
  large decoder matmul instead of T small ones on the loop's sequential chain, and no per-step stacking of the
  canvas and of the decoder's activations for the backward pass (benchmarks/RESULTS.md, issue 11).

The state carried between steps is an `ObjectState` of N slots per particle; every tensor has leading axis BK.
"""

from typing import NamedTuple

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from sqair_tf import discovery as discovery_lib
from sqair_tf import glimpse as glimpse_lib
from sqair_tf import merge as merge_lib
from sqair_tf import networks
from sqair_tf import presence as presence_lib
from sqair_tf import priors as priors_lib
from sqair_tf import propagation as propagation_lib
from sqair_tf import spatial_transformer

tfd = tfp.distributions


class ObjectState(NamedTuple):
    """The N object slots carried from t−1 to t (present objects first, BUILD.md O2.10).

    Attributes:
      z_what: [BK, N, D]; z_where: [BK, N, 4] (logits s_x, s_y, t_x, t_y); z_pres: [BK, N] in {0, 1}.
      object_ids: int32 [BK, N], −1 for empty slots; last_used_id: int32 [BK].
      prior_state: [BK, N, U] propagation-prior GRU states; temporal_state: [BK, N, U] PROP temporal GRU states.
    """

    z_what: tf.Tensor
    z_where: tf.Tensor
    z_pres: tf.Tensor
    object_ids: tf.Tensor
    last_used_id: tf.Tensor
    prior_state: tf.Tensor
    temporal_state: tf.Tensor


# Per-step outputs and their dtypes; the sequence unroller stacks them over time into [T, BK, ...].
INFERENCE_OUTPUTS = {
    "canvas": tf.float32, "log_likelihood": tf.float32,
    "log_p_continuous": tf.float32, "log_p_discrete": tf.float32,
    "log_q_continuous": tf.float32, "log_q_discrete": tf.float32, "log_weight": tf.float32,
    "z_what": tf.float32, "z_where": tf.float32, "z_pres": tf.float32, "presence_prob": tf.float32,
    "object_ids": tf.int32, "num_objects": tf.int32, "glimpse_boxes": tf.float32, "glimpses": tf.float32,
}
PRIOR_OUTPUTS = {key: INFERENCE_OUTPUTS[key] for key in (
    "canvas", "z_what", "z_where", "z_pres", "presence_prob", "object_ids", "num_objects", "glimpse_boxes",
    "glimpses")}
# What `render` and `weigh` add after the time loop: nothing of the next step depends on them (the decoder and the
# renderer only read the step's latents), so they run once over all T·BK rows instead of T times inside the loop.
RENDERED = ("canvas", "glimpses", "log_likelihood", "log_weight")
STEP_INFERENCE_OUTPUTS = {key: dtype for key, dtype in INFERENCE_OUTPUTS.items() if key not in RENDERED}
STEP_PRIOR_OUTPUTS = {key: dtype for key, dtype in PRIOR_OUTPUTS.items() if key not in RENDERED}


def _per_particle(values, batch):
    """[B, ...] per-sequence values → [BK, ...], each repeated for the sequence's K = BK / B particles."""
    return tf.repeat(values, batch // tf.shape(values)[0], axis=0)


class SQAIRCell(keras.layers.Layer):
    """All networks of MLP-SQAIR and its two step functions.

    Args:
      config: a `ModelConfig`.
      mean_image: optional [H, W, C] initial value of the learnable mean image (the per-pixel mean of the training
        frames in the original, BUILD.md O2.4); zeros if None.
    """

    def __init__(self, config, mean_image=None, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        h, d = config.hidden_size, config.z_what_dim
        # The attributes' order is the order of the variable lists (and of the optimizer's slots in checkpoints).
        encoder, decoder = glimpse_lib.glimpse_networks(config)
        self.glimpse_encoder = encoder  # Shared by DISC and PROP (BUILD.md O7.12).
        self.glimpse_mask = glimpse_lib.GlimpseMask(config.glimpse_size, (config.small_hidden_size,),
                                                    config.mask_bias_init, name="glimpse_mask")
        self.discovery = discovery_lib.DiscoveryCore(config, self.glimpse_encoder, name="discovery")
        self.propagation = propagation_lib.PropagationCore(config, self.glimpse_encoder, self.glimpse_mask,
                                                           name="propagation")
        self.propagation_prior = priors_lib.PropagationPrior(
            z_what_dim=d, hidden_size=h, presence_logit_bias=config.prop_prior_presence_bias,
            min_std=config.min_std, name="propagation_prior")
        self.discovery_where_prior, self.count_prior = priors_lib.discovery_priors(config)
        self.latent_summary = priors_lib.LatentSummary(hidden_size=h, name="latent_summary")
        self.initial_temporal_state = networks.TrainableInitialState(h, name="initial_temporal_state")
        self.decoder = decoder
        self.renderer = glimpse_lib.Renderer(config.image_shape, mean_image, config.where_shift_range,
                                             name="renderer")

    # ----------------------------------------------------------------------------------------------------------
    def initial_state(self, batch_size) -> ObjectState:
        """No objects before the first frame (BUILD.md O2.10: t = 0 sees all-zero latents with z_pres = 0)."""
        cfg = self.config
        n = cfg.num_slots
        return ObjectState(
            z_what=tf.zeros([batch_size, n, cfg.z_what_dim]),
            z_where=tf.zeros([batch_size, n, 4]),
            z_pres=tf.zeros([batch_size, n]),
            object_ids=merge_lib.initial_object_ids(batch_size, n),
            last_used_id=merge_lib.initial_last_used_id(batch_size),
            prior_state=self._new_object_states(self.propagation_prior.initial_state, batch_size),
            temporal_state=self._new_object_states(self.initial_temporal_state.initial_state, batch_size))

    def _new_object_states(self, initial_state_fn, batch_size):
        """The trainable initial GRU state of a new object, for N slots: [BK, N, U]."""
        state = initial_state_fn(batch_size)  # [BK, U]
        return tf.tile(state[:, None], [1, self.config.num_slots, 1])

    def render(self, outputs):
        """Adds `glimpses` [..., N, G, G, C] and `canvas` [..., H, W, C]: the objects' decoded glimpses and the frame
        they compose (BUILD.md O2.4), from `z_what`, `z_where`, `z_pres` [..., N, ...] with any leading axes (one
        step [BK], or a whole sequence [T, BK] at once after the time loop)."""
        outputs["glimpses"] = self.decoder(outputs["z_what"])  # [..., N, G, G, C]
        outputs["canvas"] = self.renderer(outputs["glimpses"], outputs["z_where"], outputs["z_pres"])  # [..., H, W, C]
        return outputs

    def weigh(self, outputs, frames):
        """Adds `log_likelihood` log p(x_t | z_t) and `log_weight` log w_t = log p(x_t | z_t) + log p(z_t | z_{t−1})
        − log q(z_t | x_t, z_{t−1}) (BUILD.md O2.11; truncated DISC objects keep their terms, O7.1).

        Args:
          outputs: rendered outputs, canvas [T, BK, H, W, C] and the log p / log q terms [T, BK].
          frames: [T, B, H, W, C] the frames, each shared by its sequence's K = BK / B particles.
        """
        canvas = outputs["canvas"]
        grouped = tf.reshape(canvas, tf.concat([tf.shape(frames)[:2], [-1], frames.shape[2:]], 0))  # [T, B, K, ...]
        log_likelihood = tf.reduce_sum(tfd.Normal(grouped, self.config.output_std).log_prob(frames[:, :, None]),
                                       axis=[3, 4, 5])  # [T, B, K]
        outputs["log_likelihood"] = tf.reshape(log_likelihood, tf.shape(canvas)[:2])  # [T, BK]
        outputs["log_weight"] = (outputs["log_likelihood"] + outputs["log_p_continuous"]
                                 + outputs["log_p_discrete"] - outputs["log_q_continuous"] - outputs["log_q_discrete"])
        return outputs

    def _merge_and_describe(self, state, propagated, discovered):
        """Merges PROP and DISC candidates; returns the next state and the per-step description outputs (latents,
        ids, glimpse boxes; `render` decodes them)."""
        merged = merge_lib.merge_objects(propagated, discovered, state.object_ids, state.last_used_id)
        objects = merged.objects
        new_state = ObjectState(objects["z_what"], objects["z_where"], objects["z_pres"], merged.object_ids,
                                merged.last_used_id, objects["prior_state"], objects["temporal_state"])
        described = {
            "z_what": objects["z_what"],
            "z_where": objects["z_where"],
            "z_pres": objects["z_pres"],
            "presence_prob": objects["presence_prob"],
            "object_ids": merged.object_ids,
            "num_objects": tf.cast(tf.reduce_sum(objects["z_pres"], axis=1), tf.int32),
            "glimpse_boxes": spatial_transformer.boxes_from_where(objects["z_where"], self.config.image_shape[:2],
                                                                  self.config.where_shift_range),
        }
        return new_state, described

    # ----------------------------------------------------------------------------------------------------------
    def inference_step(self, image, state: ObjectState, t, seed, image_features=None, count_penalty=None):
        """One posterior step (BUILD.md O2.11).

        Args:
          image: [B, H, W, C] the frame x_t of each sequence, shared by its K particles: the state's rows
            b·K … b·K + K − 1 (BUILD.md, axis vocabulary); K = BK / B (1 when the frames are already tiled).
          image_features: optional [BK, U] DISC image features of each particle's frame; the sequence unroll
            computes them for all frames at once (computed here when None).
          state: the `ObjectState` at t−1.
          t: scalar int32 time index (the count prior's t > 0 bias, BUILD.md O2.7).
          seed: int32 [2].
          count_penalty: λ instead of the config's (`interface.SequenceModel.call`); None keeps the config's.

        Returns:
          (outputs, new_state): outputs is a dict with the keys of `STEP_INFERENCE_OUTPUTS` (per-example terms
          [BK], per-slot latents [BK, N, ...]); `render` and `weigh` complete them to `INFERENCE_OUTPUTS`.
        """
        batch = state.z_pres.shape[0] if state.z_pres.shape[0] is not None else tf.shape(state.z_pres)[0]  # BK
        seed_prop, seed_disc = tfp.random.split_seed(seed, 2)

        # 1. Propagation prior from z_{t−1}; 2. PROP inference.
        prior = self.propagation_prior(state.z_what, state.z_where, state.z_pres, state.prior_state)
        prop = self.propagation(image, state.z_what, state.z_where, state.z_pres, state.temporal_state, seed_prop)
        prop_log_p = priors_lib.propagation_prior_log_prob_parts(
            prior, prop["z_what"], prop["z_where"], prop["z_pres"], state.z_pres)

        # 3. What DISC is conditioned on: c_t (inference and where prior) and ĉ_t (priors).
        summary = self.latent_summary(prop["z_what"], prop["z_where"], prop["z_pres"])  # [BK, U]
        expected_count = presence_lib.expected_prop_count(prior["presence_logit"])  # [BK, 1]

        # 4. DISC inference and the DISC priors.
        if image_features is None:
            image_features = _per_particle(self.discovery.encode_images(image), batch)  # [BK, U]
        disc = self.discovery(image, image_features, summary, seed_disc)
        where_log_p = self.discovery_where_prior.log_prob_of(disc["z_where"], summary, expected_count)  # [BK, N]
        count_logits = self.count_prior(expected_count, t > 0)  # [BK, N + 1]
        count_penalty = self.config.count_penalty if count_penalty is None else count_penalty
        disc_log_p = priors_lib.discovery_prior_log_prob_parts(
            disc["z_what"], where_log_p, disc["z_pres"], count_logits, count_penalty=count_penalty)

        # 5. Merge, truncate, ids.
        keys = ("z_what", "z_where", "z_pres", "presence_prob")
        propagated = {k: prop[k] for k in keys}
        propagated.update(prior_state=prior["prior_state"], temporal_state=prop["temporal_state"])
        discovered = {k: disc[k] for k in keys}
        discovered.update(
            prior_state=self._new_object_states(self.propagation_prior.initial_state, batch),
            temporal_state=self._new_object_states(self.initial_temporal_state.initial_state, batch))
        new_state, outputs = self._merge_and_describe(state, propagated, discovered)

        # 6. The prior and posterior terms of the log weight; `render` and `weigh` add the likelihood. Truncated DISC
        # objects keep their terms (BUILD.md O2.10 step 4, O7.1).
        outputs.update(
            log_p_continuous=prop_log_p.continuous + disc_log_p.continuous,
            log_p_discrete=prop_log_p.discrete + disc_log_p.discrete,
            log_q_continuous=prop["log_q_continuous"] + disc["log_q_continuous"],
            log_q_discrete=prop["log_q_discrete"] + disc["log_q_discrete"])
        return outputs, new_state

    def prior_step(self, state: ObjectState, t, seed, discover=True):
        """One step of the generative model (propagation prior, then the DISC priors if `discover`).

        Returns (outputs, new_state), outputs with the keys of `STEP_PRIOR_OUTPUTS` (`render` adds the rest of
        `PRIOR_OUTPUTS`).
        """
        cfg = self.config
        n = cfg.num_slots
        batch = state.z_pres.shape[0] if state.z_pres.shape[0] is not None else tf.shape(state.z_pres)[0]
        seeds = tfp.random.split_seed(seed, 6)
        prior = self.propagation_prior(state.z_what, state.z_where, state.z_pres, state.prior_state)
        prop_pres = presence_lib.sample_presence(prior["presence_logit"], state.z_pres, seeds[0])  # [BK, N]
        propagated = dict(
            z_what=discovery_lib.gaussian_sample(prior["what_loc"], prior["what_scale"], seeds[1]),
            z_where=discovery_lib.gaussian_sample(prior["where_loc"], prior["where_scale"], seeds[2]),
            z_pres=prop_pres, presence_prob=tf.sigmoid(prior["presence_logit"]),
            prior_state=prior["prior_state"], temporal_state=state.temporal_state)

        summary = self.latent_summary(propagated["z_what"], propagated["z_where"], prop_pres)  # [BK, U]
        expected_count = presence_lib.expected_prop_count(prior["presence_logit"])  # [BK, 1]
        count_logits = self.count_prior(expected_count, t > 0)  # [BK, N + 1]
        num_new = tfd.Categorical(logits=count_logits).sample(seed=seeds[3])  # [BK]
        if not discover:
            num_new = tf.zeros_like(num_new)
        disc_pres = tf.cast(tf.range(n)[None, :] < num_new[:, None], tf.float32)  # [BK, N]: the first n slots.
        disc_where, _, _ = self.discovery_where_prior.sample(summary, expected_count, seeds[4])  # [BK, N, 4]
        discovered = dict(
            z_what=tf.random.stateless_normal([batch, n, cfg.z_what_dim], seed=seeds[5]),
            z_where=disc_where, z_pres=disc_pres,
            # P(n > k) under the count prior: the prior probability that slot k holds a new object.
            presence_prob=1.0 - tf.cumsum(tf.nn.softmax(count_logits), axis=1)[:, :n],
            prior_state=self._new_object_states(self.propagation_prior.initial_state, batch),
            temporal_state=self._new_object_states(self.initial_temporal_state.initial_state, batch))
        new_state, outputs = self._merge_and_describe(state, propagated, discovered)
        return outputs, new_state
