"""Tests for sqair_tf/merge.py: object ids, stable partition and truncation of PROP + DISC slots."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from sqair_tf import merge


def _merge_reference(propagated, discovered, object_ids_tm1, last_used_id):
    """Slow per-sequence Python version of BUILD.md O2.10, written independently of the vectorised code."""
    num_rows, num_slots = propagated["z_pres"].shape
    num_disc = discovered["z_pres"].shape[1]
    merged = {key: np.zeros((num_rows, num_slots) + value.shape[2:], value.dtype)
              for key, value in propagated.items()}
    object_ids = np.full([num_rows, num_slots], -1, np.int32)
    new_last_used_id = np.array(last_used_id, np.int32).copy()
    for row in range(num_rows):
        candidates = []  # (is_present, id, source dict, slot)
        for slot in range(num_slots):
            is_present = propagated["z_pres"][row, slot] == 1.0
            candidates.append((is_present, object_ids_tm1[row, slot] if is_present else -1, propagated, slot))
        for slot in range(num_disc):
            is_present = discovered["z_pres"][row, slot] == 1.0
            if is_present:
                new_last_used_id[row] += 1
            candidates.append((is_present, new_last_used_id[row] if is_present else -1, discovered, slot))
        ordered = [c for c in candidates if c[0]] + [c for c in candidates if not c[0]]
        for out_slot, (_, object_id, source, slot) in enumerate(ordered[:num_slots]):
            object_ids[row, out_slot] = object_id
            for key in merged:
                merged[key][row, out_slot] = source[key][row, slot]
    return merged, object_ids, new_last_used_id


def _random_objects(rng, num_rows, num_slots, z_pres):
    """A candidate dict with arbitrary per-slot feature shapes and dtypes, plus the given presence."""
    return {
        "z_what": rng.normal(size=[num_rows, num_slots, 5]).astype(np.float32),
        "z_where": rng.normal(size=[num_rows, num_slots, 4]).astype(np.float32),
        "z_pres": z_pres.astype(np.float32),
        "presence_logit": rng.normal(size=[num_rows, num_slots]).astype(np.float32),
        "prior_state": rng.normal(size=[num_rows, num_slots, 7]).astype(np.float32),
        "temporal_state": rng.normal(size=[num_rows, num_slots, 3, 2]).astype(np.float32),
        "step": rng.randint(0, 1000, size=[num_rows, num_slots]).astype(np.int32),
    }


def _tagged_objects(z_pres, first_tag):
    """Candidates whose z_what is the candidate's index in [prop 1..N, disc 1..N], to read off the order."""
    z_pres = np.array(z_pres, np.float32)  # [BK, N]
    num_slots = z_pres.shape[1]
    tags = np.arange(first_tag, first_tag + num_slots, dtype=np.float32)
    return {"z_what": np.tile(tags[np.newaxis, :, np.newaxis], [z_pres.shape[0], 1, 2]), "z_pres": z_pres}


def _merge_numpy(*args):
    result = merge.merge_objects(*args)
    return ({key: value.numpy() for key, value in result.objects.items()}, result.object_ids.numpy(),
            result.last_used_id.numpy())


class HandBuiltMergeTest(tf.test.TestCase):

    def test_extra_discovered_object_is_dropped_but_counted(self):
        # 2 propagated (ids 4, 7) + 2 discovered with N = 3: the second discovered object does not fit.
        objects, ids, last_used_id = _merge_numpy(
            _tagged_objects([[1, 1, 0]], 0), _tagged_objects([[1, 1, 0]], 3),
            np.array([[4, 7, -1]], np.int32), np.array([7], np.int32))
        self.assertAllEqual(objects["z_what"][0, :, 0], [0, 1, 3])
        self.assertAllEqual(objects["z_pres"], [[1, 1, 1]])
        self.assertAllEqual(ids, [[4, 7, 8]])
        self.assertAllEqual(last_used_id, [9])  # id 9 went to the dropped object and is never reused

    def test_disappeared_object_gets_no_id_and_later_ones_move_up(self):
        objects, ids, last_used_id = _merge_numpy(
            _tagged_objects([[0, 1, 1]], 0), _tagged_objects([[1, 0, 0]], 3),
            np.array([[2, 3, 5]], np.int32), np.array([5], np.int32))
        self.assertAllEqual(objects["z_what"][0, :, 0], [1, 2, 3])
        self.assertAllEqual(ids, [[3, 5, 6]])
        self.assertAllEqual(last_used_id, [6])

    def test_absent_slots_carry_no_id_and_zero_presence(self):
        objects, ids, last_used_id = _merge_numpy(
            _tagged_objects([[0, 1, 0]], 0), _tagged_objects([[0, 0, 0]], 3),
            np.array([[2, 3, -1]], np.int32), np.array([3], np.int32))
        # Stable partition: the present p2 first, then the absent candidates in their original order.
        self.assertAllEqual(objects["z_what"][0, :, 0], [1, 0, 2])
        self.assertAllEqual(objects["z_pres"], [[1, 0, 0]])
        self.assertAllEqual(ids, [[3, -1, -1]])
        self.assertAllEqual(last_used_id, [3])

    def test_ids_over_a_three_step_sequence(self):
        # Two sequences, each row of a pattern is (propagated z_pres at t, discovered z_pres at t).
        prop_pres = [[[0, 0, 0], [0, 0, 0]],   # t = 0: nothing to propagate
                     [[1, 0, 0], [0, 0, 0]],   # t = 1: seq 0 keeps object 0 and loses object 1
                     [[0, 1, 0], [1, 0, 0]]]   # t = 2: seq 0 loses object 0, keeps object 2
        disc_pres = [[[1, 1, 0], [0, 0, 0]],
                     [[1, 0, 0], [1, 0, 0]],
                     [[1, 1, 1], [1, 0, 0]]]
        expected_ids = [[[0, 1, -1], [-1, -1, -1]],
                        [[0, 2, -1], [0, -1, -1]],
                        [[2, 3, 4], [0, 1, -1]]]
        expected_last_used_id = [[1, -1], [2, 0], [5, 1]]
        ids = merge.initial_object_ids(2, 3)
        last_used_id = merge.initial_last_used_id(2)
        self.assertAllEqual(ids, -np.ones([2, 3]))
        self.assertAllEqual(last_used_id, [-1, -1])
        for t in range(3):
            result = merge.merge_objects({"z_pres": tf.constant(prop_pres[t], tf.float32)},
                                         {"z_pres": tf.constant(disc_pres[t], tf.float32)}, ids, last_used_id)
            ids, last_used_id = result.object_ids, result.last_used_id
            self.assertAllEqual(ids, expected_ids[t], msg=f"t = {t}")
            self.assertAllEqual(last_used_id, expected_last_used_id[t], msg=f"t = {t}")

    def test_gradients_route_to_kept_candidates(self):
        propagated = {"z_pres": tf.constant([[1.0, 0.0]]), "z_what": tf.constant([[[1.0], [2.0]]])}
        discovered = {"z_pres": tf.constant([[1.0, 1.0]]), "z_what": tf.constant([[[3.0], [4.0]]])}
        with tf.GradientTape() as tape:
            tape.watch([propagated["z_what"], discovered["z_what"]])
            result = merge.merge_objects(propagated, discovered, tf.constant([[0, -1]]), tf.constant([0]))
            total = tf.reduce_sum(result.objects["z_what"])
        grad_prop, grad_disc = tape.gradient(total, [propagated["z_what"], discovered["z_what"]])
        self.assertAllEqual(grad_prop, [[[1.0], [0.0]]])
        self.assertAllEqual(grad_disc, [[[1.0], [0.0]]])  # the second discovered object is truncated

    def test_invalid_inputs_raise(self):
        objects = {"z_pres": tf.zeros([2, 3]), "z_what": tf.zeros([2, 3, 4])}
        ids, last_used_id = merge.initial_object_ids(2, 3), merge.initial_last_used_id(2)
        with self.assertRaisesRegex(ValueError, "Presence key"):
            merge.merge_objects(objects, objects, ids, last_used_id, presence_key="presence")
        with self.assertRaisesRegex(ValueError, "z_what"):
            merge.merge_objects(objects, {"z_pres": tf.zeros([2, 3]), "z_what": tf.zeros([2, 2, 4])}, ids,
                                last_used_id)


class RandomMergeTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters((1, 1), (3, 3), (4, 4), (2, 3))
    def test_against_reference(self, num_slots, num_disc):
        rng = np.random.RandomState(num_slots * 10 + num_disc)
        num_rows = 64
        propagated = _random_objects(rng, num_rows, num_slots, rng.randint(0, 2, [num_rows, num_slots]))
        discovered = _random_objects(rng, num_rows, num_disc, rng.randint(0, 2, [num_rows, num_disc]))
        object_ids_tm1 = rng.randint(0, 100, [num_rows, num_slots]).astype(np.int32)
        last_used_id = rng.randint(-1, 100, [num_rows]).astype(np.int32)
        expected = _merge_reference(propagated, discovered, object_ids_tm1, last_used_id)
        actual = _merge_numpy(propagated, discovered, object_ids_tm1, last_used_id)
        for key in propagated:
            self.assertAllEqual(actual[0][key], expected[0][key], msg=key)
            self.assertEqual(actual[0][key].dtype, propagated[key].dtype)
        self.assertAllEqual(actual[1], expected[1])
        self.assertAllEqual(actual[2], expected[2])

        jit_merge = tf.function(merge.merge_objects, jit_compile=True)
        jit_result = jit_merge(propagated, discovered, object_ids_tm1, last_used_id)
        for key in propagated:
            self.assertAllEqual(jit_result.objects[key], expected[0][key], msg=key)
        self.assertAllEqual(jit_result.object_ids, expected[1])
        self.assertAllEqual(jit_result.last_used_id, expected[2])

    @parameterized.parameters(1, 3, 4)
    def test_sequence_invariants(self, num_slots):
        """Unrolls the merge over time with gated random presence; checks it against the reference and that
        ids of present objects are unique, new ids are fresh, and an id that disappeared never comes back."""
        rng = np.random.RandomState(num_slots)
        num_rows, num_steps = 64, 6
        ids = merge.initial_object_ids(num_rows, num_slots).numpy()
        last_used_id = merge.initial_last_used_id(num_rows).numpy()
        z_pres_tm1 = np.zeros([num_rows, num_slots])
        retired = [set() for _ in range(num_rows)]
        seen = [set() for _ in range(num_rows)]
        num_truncated = 0
        for _ in range(num_steps):
            # PROP keeps each present object with probability 0.7; DISC is a stop chain with p = 0.5.
            prop_pres = z_pres_tm1 * (rng.uniform(size=[num_rows, num_slots]) < 0.7)
            disc_pres = np.cumprod(rng.uniform(size=[num_rows, num_slots]) < 0.5, axis=1)
            propagated = _random_objects(rng, num_rows, num_slots, prop_pres)
            discovered = _random_objects(rng, num_rows, num_slots, disc_pres)
            num_truncated += np.sum(prop_pres.sum(axis=1) + disc_pres.sum(axis=1) > num_slots)
            expected = _merge_reference(propagated, discovered, ids, last_used_id)
            objects, new_ids, new_last_used_id = _merge_numpy(propagated, discovered, ids, last_used_id)
            self.assertAllEqual(new_ids, expected[1])
            self.assertAllEqual(new_last_used_id, expected[2])
            self.assertAllEqual(objects["z_what"], expected[0]["z_what"])
            self.assertAllEqual(new_ids >= 0, objects["z_pres"] == 1.0)
            for row in range(num_rows):
                present = [i for i in new_ids[row] if i >= 0]
                self.assertLen(set(present), len(present))
                self.assertEmpty(set(present) & retired[row])
                new = set(present) - set(ids[row])
                self.assertTrue(all(i > max(seen[row], default=-1) for i in new))
                retired[row] |= set(i for i in ids[row] if i >= 0) - set(present)
                seen[row] |= set(present)
                self.assertLessEqual(max(seen[row], default=-1), new_last_used_id[row])
            ids, last_used_id, z_pres_tm1 = new_ids, new_last_used_id, objects["z_pres"]
        # The random patterns must actually exercise truncation and disappearance.
        self.assertGreater(sum(len(r) for r in retired), 0)
        self.assertGreater(num_truncated, 0)


if __name__ == "__main__":
    tf.test.main()
