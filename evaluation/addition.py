"""The addition experiment (paper §4.1, Table 1 "addition acc."): is the learnt representation useful downstream?

A 19-way classifier predicts, for every frame, the sum of the labels of the digits visible in it (0…18) from the
model's per-frame representation, trained on the training split and evaluated on the held-out split. The paper's
protocol (its Appendix D) was not available, so the choices are ours:

- Representation of a frame: the highest-weight particle's `frame_representation` (`interface.SequenceModel`).
  For SQAIR, the latents of the N slots concatenated in slot order, each slot as [z_pres · z_what (D), z_pres (1)]
  → a vector of N·(D + 1) (absent slots contribute zeros); for VRNN, the frame's latent z_t.
- Target: Σ labels of the digits visible in the frame (0 when none is).
- Classifier: an MLP with two hidden layers of 256 ReLU units, Adam (1e-3), 30 epochs, batch 256, seeded.
"""

import numpy as np

NUM_CLASSES = 19


def frame_targets(labels, visible):
    """Σ of the visible digits' labels per frame: labels int [B, S] (−1 absent), visible [B, T, S] → int [B, T]."""
    labels, visible = np.asarray(labels), np.asarray(visible) > 0
    return np.sum(np.where(visible & (labels[:, None, :] >= 0), labels[:, None, :], 0), axis=-1).astype(np.int32)


def train_and_evaluate(train_x, train_y, test_x, test_y, epochs=30, seed=0):
    """Fits the classifier on (train_x [F, R], train_y [F]) and returns (train accuracy, test accuracy)."""
    import keras

    keras.utils.set_random_seed(seed)
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6  # Standardise with training statistics.
    classifier = keras.Sequential([
        keras.Input(shape=(train_x.shape[1],)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(NUM_CLASSES),
    ])
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    classifier.fit((train_x - mean) / std, train_y, epochs=epochs, batch_size=256, verbose=0, shuffle=True)
    accuracy = lambda x, y: float(np.mean(np.argmax(classifier.predict((x - mean) / std, verbose=0,  # noqa: E731
                                                                        batch_size=1024), -1) == y))
    return accuracy(train_x, train_y), accuracy(test_x, test_y)
