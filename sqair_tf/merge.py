"""Merging propagated and discovered objects into the N object slots of the next time step (BUILD.md O2.10).

After PROP and DISC, a time step holds up to 2N candidate objects: the N propagated slots (in the order of the
previous step) followed by the N discovered slots (in discovery order). SQAIR keeps a fixed budget of N
slots, so the merge

1. gives every candidate an object id: propagated objects keep their id while present, new objects get
      consecutive ids per sequence, absent slots get −1 (BUILD.md O2.10 step 2, O7.11);
2. moves present candidates to the front with a *stable* partition, so older objects stay ahead of newer
      ones and the relation RNN of the next PROP sees them in the same order (BUILD.md O2.10 step 3, O7.10);
3. keeps the first N slots. Extra discovered objects are dropped here, but they were counted in
      `last_used_id` and their DISC log-probs have already entered the weight (BUILD.md O2.10 step 4, O7.1).

IDs are bookkeeping only: nothing here has a gradient path that matters for the loss other than the gather,
which simply routes per-slot tensors (states, latents) to their new slots.
"""
from typing import Dict, NamedTuple

import tensorflow as tf

# Value of `object_ids` for an empty slot and of `last_used_id` before the first object, so that the first
# discovered object of a sequence gets id 0 (BUILD.md O2.10 step 2).
NO_OBJECT_ID = -1


class MergedObjects(NamedTuple):
    """Output of `merge_objects`.

    Attributes:
        objects: dict with the keys of the inputs, every tensor of shape [BK, N, ...]: present objects first
            (propagated, then discovered), absent slots after, with z_pres 0.
        object_ids: int32 [BK, N]; −1 for absent slots.
        last_used_id: int32 [BK]; the largest id handed out so far in each sequence (−1 if none).
    """
    objects: Dict[str, tf.Tensor]
    object_ids: tf.Tensor
    last_used_id: tf.Tensor


def initial_object_ids(batch_size, num_slots: int) -> tf.Tensor:
    """Object ids before the first time step: every slot empty. Returns int32 [BK, N] of −1."""
    return tf.fill([batch_size, num_slots], tf.constant(NO_OBJECT_ID, tf.int32))


def initial_last_used_id(batch_size) -> tf.Tensor:
    """`last_used_id` before the first time step: −1, so the first object gets id 0. Returns int32 [BK]."""
    return tf.fill([batch_size], tf.constant(NO_OBJECT_ID, tf.int32))


def _check_inputs(propagated, discovered, presence_key):
    """Validates the structure and static slot shapes of the two candidate dicts."""
    tf.nest.assert_same_structure(propagated, discovered)
    if presence_key not in propagated:
        raise ValueError(f"Presence key {presence_key!r} not found in the object dicts "
                         f"(keys: {sorted(propagated)}).")
    num_prop = propagated[presence_key].shape[1]
    num_disc = discovered[presence_key].shape[1]
    for name, tensors, num_slots in (("propagated", propagated, num_prop),
                                     ("discovered", discovered, num_disc)):
        if tensors[presence_key].shape.rank != 2:
            raise ValueError(f"{name}[{presence_key!r}] must have shape [BK, N], "
                             f"got {tensors[presence_key].shape}.")
        for key, tensor in tensors.items():
            if tensor.shape.rank is None or tensor.shape.rank < 2 or tensor.shape[1] != num_slots:
                raise ValueError(f"{name}[{key!r}] must have shape [BK, {num_slots}, ...], got {tensor.shape}.")
    if num_prop is None:
        raise ValueError("The number of propagated slots N must be static.")


def merge_objects(
    propagated: Dict[str, tf.Tensor],
    discovered: Dict[str, tf.Tensor],
    object_ids_tm1: tf.Tensor,
    last_used_id: tf.Tensor,
    presence_key: str = "z_pres",
) -> MergedObjects:
    """Assigns ids, stably moves present objects first and truncates to N slots (BUILD.md O2.10, O7.10, O7.11).

    The 2N candidates are concatenated as [propagated 1..N, discovered 1..N_disc]. The partition is a stable
    argsort of (1 − present) per sequence followed by one batched gather per tensor, so it is pure, vectorised
    over BK and XLA-compatible; nothing loops over the batch.

    Args:
        propagated: dict of tensors [BK, N, ...] for the PROP outputs (z_what [BK, N, D], z_where [BK, N, 4],
            z_pres [BK, N], logits, GRU states [BK, N, U], ...). `propagated[presence_key]` is the float presence
            in {0, 1} at time t (already gated by z_pres_tm1). N must be static.
        discovered: dict with the same keys and dtypes for the DISC outputs, [BK, N_disc, ...] (N_disc = N in
            SQAIR; discovered objects carry the trainable initial prior/temporal states).
        object_ids_tm1: int32 [BK, N], the ids of the propagated slots at t−1 (−1 for empty slots).
        last_used_id: int32 [BK], the largest id handed out so far per sequence (−1 initially).
        presence_key: key of the presence tensor in both dicts.

    Returns:
        A `MergedObjects` with the merged dict ([BK, N, ...] per key), the new ids [BK, N] and the new
        last_used_id [BK]. `last_used_id` grows by the number of discovered objects, including those that do
        not fit into the N slots, so ids are never reused.
    """
    propagated = tf.nest.map_structure(tf.convert_to_tensor, propagated)
    discovered = tf.nest.map_structure(tf.convert_to_tensor, discovered)
    _check_inputs(propagated, discovered, presence_key)
    num_slots = propagated[presence_key].shape[1]  # N

    prop_present = propagated[presence_key] > 0.5  # [BK, N]
    disc_present = discovered[presence_key] > 0.5  # [BK, N_disc]
    object_ids_tm1 = tf.cast(object_ids_tm1, tf.int32)
    last_used_id = tf.cast(last_used_id, tf.int32)

    # IDs (BUILD.md O2.10 step 2): survivors keep theirs, new objects count up from last_used_id per sequence.
    no_id = tf.constant(NO_OBJECT_ID, tf.int32)
    prop_ids = tf.where(prop_present, object_ids_tm1, no_id)  # [BK, N]
    disc_count = tf.cast(disc_present, tf.int32)  # [BK, N_disc]
    disc_ids = tf.where(disc_present, last_used_id[:, tf.newaxis] + tf.cumsum(disc_count, axis=1), no_id)
    new_last_used_id = last_used_id + tf.reduce_sum(disc_count, axis=1)  # [BK]

    # Stable partition (BUILD.md O2.10 step 3): sorting the key 0 (present) / 1 (absent) with a stable sort keeps
    # the relative order inside each group, i.e. propagated before discovered, each in its own slot order.
    present = tf.concat([prop_present, disc_present], axis=1)  # [BK, N + N_disc]
    order = tf.argsort(1 - tf.cast(present, tf.int32), axis=1, stable=True)  # [BK, N + N_disc]
    keep = order[:, :num_slots]  # [BK, N]: truncation (BUILD.md O2.10 step 4)

    def _merge(prop_tensor, disc_tensor):
        candidates = tf.concat([prop_tensor, disc_tensor], axis=1)  # [BK, N + N_disc, ...]
        return tf.gather(candidates, keep, axis=1, batch_dims=1)  # [BK, N, ...]

    merged = tf.nest.map_structure(_merge, propagated, discovered)
    # Absent candidates already carry id −1 and z_pres 0, and they are sorted last, so the kept absent slots
    # satisfy the output contract without extra masking.
    object_ids = _merge(prop_ids, disc_ids)  # [BK, N]
    return MergedObjects(objects=merged, object_ids=object_ids, last_used_id=new_last_used_id)
