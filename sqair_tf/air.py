"""MLP-AIR (Eslami et al. 2016) on every frame independently: the baseline of the paper's Table 1 that has objects
but no time.

Paper §4.1: AIR is applied to each frame on its own, so its prior cannot use the previous frame's objects (the
paper's reason for its much larger KL) and it cannot follow an object. This model is MLP-SQAIR's discovery (DISC,
BUILD.md O2.6–O2.7) with nothing propagated: the same networks and sizes, at most N = 3 objects per frame, the same
likelihood and the same IWAE + VIMCO objective (paper §3). What changes, each because there is no previous frame:

- DISC, its where prior and the count prior see every frame as MLP-SQAIR sees its first frame: nothing was
  propagated, so the summary c_t of propagated objects and the expected count ĉ_t are zero, and the count prior's
  t > 0 bias b_T is never added. The weights that read c_t and ĉ_t exist, as in MLP-SQAIR, and stay at their
  initial values (their gradient is zero); zero-width inputs instead would drop them, but XLA's oneDNN matrix
  product rejects a zero inner dimension;
- ids are new on every frame (each present object gets the next unused id): AIR does not track, and tracking metrics
  computed on it show that;
- generation: frames are independent under the prior, so conditional generation imagines the frames after the
  observed ones as fresh prior samples.
Per-sequence quantities (log weights, KL) are sums over the frames.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from sqair_tf import discovery as discovery_lib
from sqair_tf import glimpse as glimpse_lib
from sqair_tf import model as model_lib
from sqair_tf import priors as priors_lib
from sqair_tf import spatial_transformer
from sqair_tf import timestep

tfd = tfp.distributions

INFERENCE_OUTPUTS = timestep.INFERENCE_OUTPUTS
PRIOR_OUTPUTS = timestep.PRIOR_OUTPUTS


class AIRCell(keras.layers.Layer):
    """The networks of MLP-AIR: MLP-SQAIR's glimpse encoder, DISC, DISC priors, decoder and renderer."""

    def __init__(self, config, mean_image=None, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        # Assigned in MLP-SQAIR's order (`timestep.SQAIRCell`), the order of the variable lists.
        encoder, decoder = glimpse_lib.glimpse_networks(config)
        self.glimpse_encoder = encoder
        self.discovery = discovery_lib.DiscoveryCore(config, self.glimpse_encoder, name="discovery")
        self.discovery_where_prior, self.count_prior = priors_lib.discovery_priors(config)
        self.decoder = decoder
        self.renderer = glimpse_lib.Renderer(config.image_shape, mean_image, config.where_shift_range,
                                             name="renderer")

    def _nothing(self, batch):
        """(c_t [BK, U], ĉ_t [BK, 1]) of a frame with no previous frame: zeros, as at MLP-SQAIR's first frame."""
        return tf.zeros([batch, self.config.hidden_size]), tf.zeros([batch, 1])

    def _describe(self, z_what, z_where, z_pres, presence_prob, last_used_id):
        """Decodes one frame's objects and gives them new ids; returns (outputs, new last_used_id)."""
        cfg = self.config
        glimpses = self.decoder(z_what)  # [BK, N, G, G, C]
        canvas = self.renderer(glimpses, z_where, z_pres)  # [BK, H, W, C]
        present = z_pres > 0.5  # Present slots come first (DISC's stop chain).
        rank = tf.cumsum(tf.cast(present, tf.int32), axis=1)  # [BK, N]: 1, 2, … over present slots
        object_ids = tf.where(present, last_used_id[:, None] + rank, -1)  # [BK, N]
        num_objects = tf.reduce_sum(tf.cast(present, tf.int32), axis=1)  # [BK]
        outputs = dict(
            canvas=canvas, glimpses=glimpses, z_what=z_what, z_where=z_where, z_pres=z_pres,
            presence_prob=presence_prob, object_ids=object_ids, num_objects=num_objects,
            glimpse_boxes=spatial_transformer.boxes_from_where(z_where, cfg.image_shape[:2], cfg.where_shift_range))
        return outputs, last_used_id + num_objects

    def inference_step(self, image, image_features, last_used_id, seed, count_penalty=None):
        """One frame: DISC, its priors, decode, the log weight. image [B, H, W, C] shared by its K particles;
        image_features [BK, U]; last_used_id int32 [BK]; count_penalty λ instead of the config's, if not None.
        Returns (outputs with INFERENCE_OUTPUTS, last_used_id)."""
        cfg = self.config
        count_penalty = cfg.count_penalty if count_penalty is None else count_penalty
        batch = image_features.shape[0] if image_features.shape[0] is not None else tf.shape(image_features)[0]
        summary, expected_count = self._nothing(batch)
        disc = self.discovery(image, image_features, summary, seed)
        where_log_p = self.discovery_where_prior.log_prob_of(disc["z_where"], summary, expected_count)  # [BK, N]
        count_logits = self.count_prior(expected_count, t=0)  # Every frame is a first frame.
        log_p = priors_lib.discovery_prior_log_prob_parts(disc["z_what"], where_log_p, disc["z_pres"], count_logits,
                                                          count_penalty=count_penalty)
        outputs, last_used_id = self._describe(disc["z_what"], disc["z_where"], disc["z_pres"],
                                               disc["presence_prob"], last_used_id)
        canvas = tf.reshape(outputs["canvas"], tf.concat([tf.shape(image)[:1], [-1], image.shape[1:]], 0))
        log_likelihood = tf.reshape(tf.reduce_sum(  # [B, K, H, W, C] against the shared frame [B, 1, H, W, C]
            tfd.Normal(canvas, cfg.output_std).log_prob(image[:, None]), axis=[2, 3, 4]), [batch])  # [BK]
        outputs.update(log_likelihood=log_likelihood, log_p_continuous=log_p.continuous,
                       log_p_discrete=log_p.discrete, log_q_continuous=disc["log_q_continuous"],
                       log_q_discrete=disc["log_q_discrete"])
        outputs["log_weight"] = (log_likelihood + log_p.continuous + log_p.discrete
                                 - disc["log_q_continuous"] - disc["log_q_discrete"])
        return outputs, last_used_id

    def prior_step(self, last_used_id, seed):
        """One frame from the prior: n from the count prior, where from the where prior, what from N(0, I)."""
        cfg = self.config
        n = cfg.num_slots
        batch = tf.shape(last_used_id)[0]
        seeds = tfp.random.split_seed(seed, 3)
        summary, expected_count = self._nothing(batch)
        count_logits = self.count_prior(expected_count, t=0)  # [BK, N + 1]
        num_new = tfd.Categorical(logits=count_logits).sample(seed=seeds[0])  # [BK]
        z_pres = tf.cast(tf.range(n)[None, :] < num_new[:, None], tf.float32)  # [BK, N]
        z_where, _, _ = self.discovery_where_prior.sample(summary, expected_count, seeds[1])  # [BK, N, 4]
        z_what = tf.random.stateless_normal([batch, n, cfg.z_what_dim], seed=seeds[2])
        presence_prob = 1.0 - tf.cumsum(tf.nn.softmax(count_logits), axis=1)[:, :n]  # P(n > k)
        return self._describe(z_what, z_where, z_pres, presence_prob, last_used_id)


class AIR(model_lib.GlimpseObjectModel):
    """MLP-AIR as a `SequenceModel` with objects and discrete latents (module docstring).

    Call: `model(frames, seed=seed, num_particles=K)` → the outputs of `timestep.INFERENCE_OUTPUTS` plus `boxes`
    (as MLP-SQAIR's, with new ids on every frame).
    """

    def __init__(self, config, mean_image=None, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.cell = AIRCell(config, mean_image, name="air_cell")

    def call(self, frames, seed, num_particles=1, count_penalty=None):
        frames = self._check_frames(frames)
        frames_tm, features_tm, num_steps, batch = model_lib.time_major_inputs(self.cell.discovery, frames,
                                                                               num_particles)

        def step(t, last_used_id):
            seed_t = tf.random.experimental.stateless_fold_in(seed, t)
            return self.cell.inference_step(frames_tm[t], features_tm[t], last_used_id, seed_t, count_penalty)

        outputs, _ = model_lib.unroll(step, tf.fill([batch], -1), num_steps, INFERENCE_OUTPUTS, self.unroll_time)
        return self._with_drawn_boxes(outputs, frames_tm, num_particles)

    def _imagine(self, last_used_id, first_step, num_steps, seed):
        def step(t, last_used_id):
            return self.cell.prior_step(last_used_id, tf.random.experimental.stateless_fold_in(seed, first_step + t))

        outputs, _ = model_lib.unroll(step, last_used_id, num_steps, PRIOR_OUTPUTS, self.unroll_time)
        return self._with_drawn_boxes(outputs)

    def generate(self, frames, num_steps, seed):
        """Infers the observed frames (K = 1); the imagined frames are independent prior samples (module docstring)."""
        seed_infer, seed_imagine = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        observed = self(frames, seed=seed_infer, num_particles=1)
        last_used_id = tf.reduce_max(observed["object_ids"], axis=[0, 2])  # [B]: ids continue after the observed
        first = frames.shape[1] if frames.shape[1] is not None else tf.shape(frames)[1]
        return observed, self._imagine(last_used_id, first, num_steps, seed_imagine)

    def sample(self, num_sequences, num_steps, seed):
        """Sequences of independent frames from the prior (the keys of PRIOR_OUTPUTS and `boxes`)."""
        return self._imagine(tf.fill([num_sequences], -1), 0, num_steps, seed)
