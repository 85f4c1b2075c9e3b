"""MLP-VRNN and CONV-VRNN (Chung et al. 2015), the unstructured sequential VAEs Table 1 of the paper compares SQAIR
against.

The paper (§4.1, Appendix D.3) uses VRNN with a deterministic RNN core as the baseline without objects, and says
only that its latent size and number of parameters were matched to SQAIR's. The architecture below is therefore
this package's design (BUILD.md "Models"), the standard VRNN with this package's building blocks:

    φ_x(x_t) = MLP_[U, U](x_t)                        frame features (the flattened frame)
    p(z_t | h_{t−1})      = N(MLP_[U] → 2Z (h_{t−1}))   prior
    q(z_t | x_t, h_{t−1}) = N(MLP_[U] → 2Z ([φ_x, h_{t−1}]))   posterior (reparameterised)
    φ_z(z_t) = MLP_[U](z_t)
    p(x_t | z_t, h_{t−1}) = N(m + MLP_[U] → HWC ([φ_z, h_{t−1}]), σ²)   likelihood
    h_t = GRU([φ_x, φ_z], h_{t−1}),  h_0 trainable

with U the hidden width and every std = softplus(·) + min_std, as in SQAIR. Choices, each to keep the comparison
with MLP-SQAIR fair:
- Z = 165 = N·(D + 4 + 1) = 3·(50 + 4 + 1), SQAIR's largest per-frame latent (all three slots present);
- the same likelihood as SQAIR: a Gaussian with fixed σ = 0.3 around a canvas that starts from the learnable mean
  image m (initialised to the training frames' per-pixel mean), so log p(x | z) is in the same units;
- U = 289, the width whose parameter count (2,944,790) is nearest MLP-SQAIR's 2,951,522 (−0.23 %, tested).
VRNN has only continuous latents, so it is trained with the plain IWAE bound (no VIMCO term), and it has no
objects, so the object metrics are "n/a" (paper Table 1).

CONV-VRNN (`architecture='conv'`) replaces φ_x by `conv.ConvEncoder` (5×5/3×3/3×3 convolutions with 32, 64, 64
filters, stride 2, then the two ELU layers of width U) and the decoder by `conv.SubpixelDecoder` (one ELU layer of
width U, a 5×5×64 map, ×5 and ×2 sub-pixel stages): the same convolutions as CONV-SQAIR's image encoder, and U = 308
puts its parameter count (3,431,224) nearest CONV-SQAIR's 3,425,590 (+0.16 %, tested).

Generation feeds the canvas mean back as the next frame: h_t = GRU([φ_x(canvas_t), φ_z(z_t)], h_{t−1}).
"""

import tensorflow as tf

from sqair_tf import conv as conv_lib
from sqair_tf import interface
from sqair_tf import model as model_lib
from sqair_tf import networks
from sqair_tf.discovery import gaussian_sample
from sqair_tf.priors import diag_normal_log_prob


# Per-step outputs of inference and of the prior (the interface's core outputs plus the latent).
INFERENCE_OUTPUTS = {key: tf.float32 for key in interface.CORE_OUTPUTS + ("z",)}
PRIOR_OUTPUTS = {"canvas": tf.float32, "z": tf.float32}


def _gaussian(params, min_std):
    """Splits [..., 2Z] pre-activations into (loc, std = softplus + min_std)."""
    loc, pre_std = tf.split(params, 2, axis=-1)
    return loc, tf.nn.softplus(pre_std) + min_std


class VRNN(interface.SequenceModel):
    """MLP-VRNN as a `SequenceModel` without objects or discrete latents (module docstring).

    Call: `model(frames, seed=seed, num_particles=K)`, frames float32 [B, T, H, W, C] in [0, 1], seed int32 [2].
    Returns the interface's core outputs [T, BK, ...] and `z` [T, BK, Z], the sampled latent.
    """

    representation_keys = ("z",)

    def __init__(self, config, mean_image=None, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        h, z, pixels = config.hidden_size, config.z_dim, config.num_pixels
        if config.architecture == "conv":  # CONV-VRNN (module docstring).
            side = config.image_shape[0]
            base = 5 if side % 10 == 0 else 4
            self.frame_features = conv_lib.ConvEncoder((32, 64, 64), (5, 3, 3), (2, 2, 2), (h, h), name="phi_x")
            self.decoder = conv_lib.SubpixelDecoder(config.image_shape, (h,), (base, base, 64),
                                                    ((side // (2 * base), 16), (2, config.image_shape[2])),
                                                    name="decoder")
        else:
            self.frame_features = networks.MLP([h, h], name="phi_x")
            self.decoder = networks.MLP([h], pixels, name="decoder")
        self.latent_features = networks.MLP([h], name="phi_z")
        self.prior_net = networks.MLP([h], 2 * z, name="prior")
        self.posterior_net = networks.MLP([h], 2 * z, name="posterior")
        self.rnn = networks.GRUCell(h, use_trainable_initial_state=True, name="rnn")
        init = "zeros" if mean_image is None else (lambda shape, dtype=None: tf.constant(mean_image, dtype, shape))
        self.mean_image = self.add_weight(shape=config.image_shape, initializer=init, name="mean_image")

    def _render(self, z, h):
        """(φ_z(z), canvas [BK, H, W, C]) of latent z [BK, Z] given the state h [BK, U]."""
        phi_z = self.latent_features(z)  # [BK, U]
        canvas = self.mean_image + tf.reshape(self.decoder(tf.concat([phi_z, h], -1)),
                                              [-1] + list(self.config.image_shape))
        return phi_z, canvas

    def _frame_features(self, frames):
        """φ_x of frames [..., H, W, C] → [..., U]."""
        if self.config.architecture == "conv":
            return self.frame_features(frames)
        shape = tf.shape(frames)
        return self.frame_features(tf.reshape(frames, tf.concat([shape[:-3], [self.config.num_pixels]], 0)))

    def call(self, frames, seed, num_particles=1, count_penalty=None):
        del count_penalty  # No objects, no count.
        frames = self._check_frames(frames)
        outputs, _ = self._infer(frames, seed, num_particles)
        return outputs

    def _infer(self, frames, seed, num_particles):
        cfg = self.config
        b, t_len = frames.shape[0], frames.shape[1]
        b = b if b is not None else tf.shape(frames)[0]
        t_len = t_len if t_len is not None else tf.shape(frames)[1]
        flat = tf.reshape(frames, [b, t_len, cfg.num_pixels])  # [B, T, HWC]
        # φ_x is a function of the frame alone: computed once per frame, then shared by the frame's K particles.
        phi_x = tf.repeat(self._frame_features(frames), num_particles, axis=0)  # [BK, T, U]
        phi_x_tm = tf.transpose(phi_x, [1, 0, 2])  # [T, BK, U]
        # The K particles of a frame are scored against the shared frame, which is never tiled.
        frames_tm = tf.transpose(flat, [1, 0, 2])[:, :, None]  # [T, B, 1, HWC]

        def step(t, h):
            phi = phi_x_tm[t]  # [BK, U]
            prior_loc, prior_std = _gaussian(self.prior_net(h), cfg.min_std)  # [BK, Z] each
            loc, std = _gaussian(self.posterior_net(tf.concat([phi, h], -1)), cfg.min_std)
            z = gaussian_sample(loc, std, tf.random.experimental.stateless_fold_in(seed, t))  # [BK, Z]
            phi_z, canvas = self._render(z, h)
            log_likelihood = tf.reshape(diag_normal_log_prob(  # [B, K, HWC] against [B, 1, HWC]
                frames_tm[t], tf.reshape(canvas, [b, num_particles, cfg.num_pixels]),
                tf.constant(cfg.output_std, canvas.dtype)), [-1])  # [BK]
            log_p = diag_normal_log_prob(z, prior_loc, prior_std)  # [BK]
            log_q = diag_normal_log_prob(z, loc, std)  # [BK]
            _, h = self.rnn(tf.concat([phi, phi_z], -1), h)
            outputs = dict(canvas=canvas, log_likelihood=log_likelihood, log_p_continuous=log_p,
                           log_q_continuous=log_q, log_weight=log_likelihood + log_p - log_q, z=z)
            return outputs, h

        batch = b * num_particles
        return model_lib.unroll(step, self.rnn.initial_state(batch), t_len, INFERENCE_OUTPUTS, self.unroll_time)

    def _imagine(self, h, first_step, num_steps, seed):
        cfg = self.config

        def step(t, h):
            loc, std = _gaussian(self.prior_net(h), cfg.min_std)
            z = gaussian_sample(loc, std, tf.random.experimental.stateless_fold_in(seed, first_step + t))
            phi_z, canvas = self._render(z, h)
            phi_x = self._frame_features(canvas)
            _, h = self.rnn(tf.concat([phi_x, phi_z], -1), h)
            return {"canvas": canvas, "z": z}, h

        return model_lib.unroll(step, h, num_steps, PRIOR_OUTPUTS, self.unroll_time)

    def generate(self, frames, num_steps, seed):
        """Conditional generation: infer from the observed frames (K = 1), then run the prior (interface)."""
        frames = self._check_frames(frames)
        seed_infer, seed_imagine = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        observed, h = self._infer(frames, seed_infer, 1)
        first = frames.shape[1] if frames.shape[1] is not None else tf.shape(frames)[1]
        generated, _ = self._imagine(h, first, num_steps, seed_imagine)
        return observed, generated

    def sample(self, num_sequences, num_steps, seed):
        """Unconditional samples from the prior: `canvas` [num_steps, num_sequences, H, W, C] and `z`."""
        generated, _ = self._imagine(self.rnn.initial_state(num_sequences), 0, num_steps, seed)
        return generated

    def frame_representation(self, outputs):
        """[B, T, Z]: the frame's sampled latent z_t (the addition experiment, paper §4.1)."""
        return tf.convert_to_tensor(outputs["z"], tf.float32)
