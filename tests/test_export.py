"""`sqair-export`: the SavedModel contract, in a fresh process, under the C++ loader, bad requests, the README's REST
format and the CLI. One debug run (2 steps) and one export are shared by the module."""

import http.server
import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import threading

import numpy as np
import pytest
import tensorflow as tf

from sqair_tf import glimpse
from sqair_tf import interface
from sqair_tf import refinement
from trainers import checkpoints
from serving import export

pytestmark = pytest.mark.slow  # a trained run, SavedModel exports and fresh processes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
K = 3  # Particles of the test export (not the default, to show --k reaches the graph).
H = W = 32  # The debug model.
N, D = 2, 4


@pytest.fixture(scope="module")
def run_dir(debug_run):
    return debug_run  # conftest: a real 2-step debug run.


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out_base = str(tmp_path_factory.mktemp("exports"))
    return export.export_model(run_dir, out_base, num_particles=K)


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported)


def _frames(batch, time, seed=0, shape=(H, W, 1)):
    """Sparse bright blobs in [0, 1], like digits on a black canvas."""
    rng = np.random.default_rng(seed)
    return (rng.random((batch, time) + shape) < 0.05).astype(np.float32) * rng.random((batch, time) + shape,
                                                                                        np.float32)


def _in_process_track(model, frames, k):
    """What `track` must answer, computed from the in-process model with the same seed and K."""
    outputs = tf.function(lambda f: model(f, seed=tf.constant(export.TRACK_SEED, tf.int32), num_particles=k))(
        tf.constant(frames))
    log_weights = interface.sequence_log_weights(outputs, k)
    best = interface.best_particle(outputs, log_weights)
    return {"presence": best["z_pres"], "boxes": best["boxes"], "glimpse_boxes": best["glimpse_boxes"],
            "object_ids": best["object_ids"],
            "counts": best["num_objects"], "reconstruction": best["canvas"], "z_what": best["z_what"],
            "log_weight": tf.reduce_max(log_weights, axis=1)}


def _assert_track_contract(outputs, batch, time):
    expected = {"presence": (np.float32, (batch, time, N)), "boxes": (np.float32, (batch, time, N, 4)),
                "glimpse_boxes": (np.float32, (batch, time, N, 4)),
                "object_ids": (np.int32, (batch, time, N)), "counts": (np.int32, (batch, time)),
                "reconstruction": (np.float32, (batch, time, H, W, 1)), "z_what": (np.float32, (batch, time, N, D)),
                "log_weight": (np.float32, (batch,))}
    assert set(outputs) == set(expected)
    for key, (dtype, shape) in expected.items():
        value = np.asarray(outputs[key])
        assert (value.dtype, value.shape) == (dtype, shape), key
    assert set(np.unique(outputs["presence"])) <= {0.0, 1.0}
    np.testing.assert_array_equal(outputs["counts"], outputs["presence"].sum(-1).astype(np.int32))
    np.testing.assert_array_equal(outputs["object_ids"] >= 0, outputs["presence"] > 0)


def _assert_close(actual, expected):
    for key in expected:
        assert np.asarray(actual[key]).dtype == np.asarray(expected[key]).dtype, key  # float32 stays float32.
        if np.asarray(expected[key]).dtype.kind == "i":
            np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)
        else:
            np.testing.assert_allclose(actual[key], expected[key], rtol=1e-4, atol=1e-4, err_msg=key)


# ------------------------------------------------------------------------------------------------------------------

def test_export_writes_versions_atomically_and_never_overwrites(run_dir, exported):
    out_base = os.path.dirname(exported)
    assert os.path.basename(exported) == "2"  # The checkpoint's training step.
    assert os.path.exists(os.path.join(exported, "saved_model.pb"))
    info = json.load(open(os.path.join(exported, "assets.extra", "sqair_export.json")))
    assert (info["step"], info["num_particles"], info["image_shape"]) == (2, K, [H, W, 1])
    assert (info["refine_steps"], info["motion_weight"]) == (0, 0.0)  # No refinement, so no smooth-motion term.
    assert info["box_rule"] == glimpse.box_rule()  # The boxes of the frames' pixels each object explains.

    again = export.export_model(run_dir, out_base, num_particles=K)  # Step 2 taken: one above the highest.
    assert os.path.basename(again) == "3"
    mtime = os.path.getmtime(os.path.join(exported, "saved_model.pb"))
    with pytest.raises(export.ExportError, match="already exists; refusing to overwrite"):
        export.export_model(run_dir, out_base, num_particles=K, version=2)
    assert os.path.getmtime(os.path.join(exported, "saved_model.pb")) == mtime
    assert sorted(os.listdir(out_base)) == ["2", "3"]  # No temporary directory left behind.
    assert export.choose_version(out_base, step=2, version=None) == 4
    assert export.choose_version(out_base, step=10, version=None) == 10
    with pytest.raises(export.ExportError, match="integer ≥ 1"):
        export.export_model(run_dir, out_base, num_particles=0)


def test_fresh_process_without_the_project_matches_the_in_process_model(run_dir, exported, tmp_path):
    """`tf.saved_model.load` in `python -I -S` from a temp dir (only site-packages on the path, .pth files not
    processed, so the editable install of this project is invisible) gives the in-process best particle."""
    batches = {"one": _frames(1, 4, seed=1), "three": _frames(3, 5, seed=2)}  # Dynamic batch and time.
    observed = _frames(2, 3, seed=3)
    np.savez(tmp_path / "inputs.npz", observed=observed, **batches)
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(f"""
        import importlib.util, sys
        sys.path.append({sysconfig.get_paths()["purelib"]!r})
        for name in ("sqair_tf", "trainers", "data_pipelines"):
            assert importlib.util.find_spec(name) is None, name + " is importable"
        import numpy as np
        import tensorflow as tf
        model = tf.saved_model.load({exported!r})
        inputs = np.load("inputs.npz")
        results = {{}}
        for name in ("one", "three"):
            for key, value in model.signatures["track"](frames=tf.constant(inputs[name])).items():
                results[name + "/" + key] = value.numpy()
        again = model.track(tf.constant(inputs["three"]))  # The endpoint method too; deterministic.
        results["again/z_what"] = again["z_what"].numpy()
        seed = tf.constant([4, 5], tf.int32)
        for key, value in model.signatures["generate"](frames=tf.constant(inputs["observed"]),
                                                       num_steps=tf.constant(3), seed=seed).items():
            results["generate/" + key] = value.numpy()
        for key, value in model.signatures["sample"](num_sequences=tf.constant(2), num_steps=tf.constant(4),
                                                     seed=seed).items():
            results["sample/" + key] = value.numpy()
        np.savez("results.npz", **results)
        print("modules:", sorted(m for m in sys.modules if m.split(".")[0] in ("sqair_tf", "trainers")))
    """))
    env = {"PATH": os.environ.get("PATH", ""), "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-I", "-S", str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "modules: []" in done.stdout
    results = np.load(tmp_path / "results.npz")

    model, _, _ = checkpoints.load_model(run_dir)
    for name, frames in batches.items():
        got = {key.split("/")[1]: results[key] for key in results.files if key.startswith(name + "/")}
        _assert_track_contract(got, *frames.shape[:2])
        _assert_close(got, _in_process_track(model, frames, K))
    np.testing.assert_array_equal(results["again/z_what"], results["three/z_what"])

    seed = tf.constant([4, 5], tf.int32)
    _, generated = tf.function(lambda f: model.generate(f, 3, seed))(tf.constant(observed))
    expected = {"frames": generated["canvas"], "presence": generated["z_pres"], "boxes": generated["boxes"],
                "object_ids": generated["object_ids"]}
    expected = {key: np.moveaxis(value.numpy(), 0, 1) for key, value in expected.items()}  # Batch-major.
    got = {key.split("/")[1]: results[key] for key in results.files if key.startswith("generate/")}
    assert got["frames"].shape == (2, 3, H, W, 1) and got["object_ids"].dtype == np.int32
    _assert_close(got, expected)
    sampled = model.sample(2, 4, seed)
    got = {key.split("/")[1]: results[key] for key in results.files if key.startswith("sample/")}
    assert got["frames"].shape == (2, 4, H, W, 1) and got["boxes"].shape == (2, 4, N, 4)
    _assert_close(got, {"frames": np.moveaxis(sampled["canvas"].numpy(), 0, 1),
                        "presence": np.moveaxis(sampled["z_pres"].numpy(), 0, 1)})


def test_refined_track_answers_with_the_refined_best_particle(run_dir):
    # `--refine-steps`: `track` is the in-process best particle refined on its frames (`SQAIR.refine`, the frames
    # together with the package's smooth-motion weight); presence, ids and counts stay the amortised ones. In
    # process, to spare a second export: the demo exports the shipped model with refinement and calls its `track`
    # through TF's loader (tests/test_demo.py).
    model, _, _ = checkpoints.load_model(run_dir)
    track, _ = export.make_endpoints(model, K, refine_steps=4)["track"]
    frames = _frames(2, 4, seed=7)
    answer = tf.function(track)(tf.constant(frames))
    outputs = tf.function(lambda f: model(f, seed=tf.constant(export.TRACK_SEED, tf.int32), num_particles=K))(
        tf.constant(frames))
    best = interface.best_particle(outputs, interface.sequence_log_weights(outputs, K))
    refined = model.refine(frames, best, 4, motion_weight=refinement.MOTION_WEIGHT)
    expected = _in_process_track(model, frames, K)
    expected.update(boxes=refined["boxes"], glimpse_boxes=refined["glimpse_boxes"],
                    reconstruction=refined["canvas"], z_what=refined["z_what"])
    _assert_close(answer, expected)
    assert not np.allclose(refined["z_what"], best["z_what"])  # Four steps moved the present objects.
    alone = model.refine(frames, best, 4)  # Each frame alone: the smooth-motion term changed the answer.
    assert not np.allclose(refined["z_where"], alone["z_where"], rtol=0, atol=1e-5)


def test_track_saved_model_helper(exported, loaded):
    frames = _frames(2, 3, seed=7)
    by_path = export.track_saved_model(exported, frames)
    _assert_track_contract(by_path, 2, 3)
    _assert_close(export.track_saved_model(loaded, frames), by_path)


def _smcli(*args):
    return subprocess.run([os.path.join(BIN, "saved_model_cli"), *args], env=ENV, capture_output=True, text=True,
                          timeout=300)


def test_cpp_loader_lists_and_runs_every_endpoint(exported, tmp_path):
    """`saved_model_cli` loads with the TF1/C++ SavedModel loader, the path TF Serving takes."""
    shown = _smcli("show", "--all", "--dir", exported)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for name in ("serving_default", "track", "generate", "sample", "initial_state", "track_window"):
        assert f"signature_def['{name}']" in shown.stdout
    block = lambda name: shown.stdout.split(f"signature_def['{name}']")[1].split("Method name is")[0]  # noqa: E731
    track_block, default_block = block("track"), block("serving_default")
    strip = lambda block: re.sub(r"\n\s*name: \S+", "", block)  # noqa: E731 (placeholder names differ)
    assert strip(track_block) == strip(default_block)  # serving_default is track.
    assert re.search(r"outputs\['object_ids'\] tensor_info:\s+dtype: DT_INT32\s+shape: \(-1, -1, 2\)", track_block)
    assert re.search(r"outputs\['reconstruction'\] tensor_info:\s+dtype: DT_FLOAT\s+shape: \(-1, -1, 32, 32, 1\)",
                     track_block)

    np.save(tmp_path / "frames.npy", _frames(2, 4, seed=5))
    np.save(tmp_path / "bad.npy", _frames(2, 4, seed=5, shape=(31, W, 1)))
    runs = {
        "track": ["--inputs", f"frames={tmp_path / 'frames.npy'}"],
        "serving_default": ["--inputs", f"frames={tmp_path / 'frames.npy'}"],
        "generate": ["--inputs", f"frames={tmp_path / 'frames.npy'}", "--input_exprs", "num_steps=3;seed=[1,2]"],
        "sample": ["--input_exprs", "num_sequences=2;num_steps=3;seed=[1,2]"],
    }
    outputs = {}
    for name, extra in runs.items():
        outdir = tmp_path / name
        done = _smcli("run", "--dir", exported, "--tag_set", "serve", "--signature_def", name, *extra,
                      "--outdir", str(outdir))
        assert done.returncode == 0, done.stderr[-2000:]
        outputs[name] = {f[:-4]: np.load(outdir / f) for f in os.listdir(outdir)}
    _assert_track_contract(outputs["track"], 2, 4)
    _assert_close(outputs["serving_default"], outputs["track"])
    for name in ("generate", "sample"):
        got = outputs[name]
        assert set(got) == {"frames", "presence", "boxes", "object_ids"}
        assert got["frames"].shape == (2, 3, H, W, 1) and got["boxes"].shape == (2, 3, N, 4)
        assert got["object_ids"].dtype == np.int32 and got["presence"].shape == (2, 3, N)

    bad = _smcli("run", "--dir", exported, "--tag_set", "serve", "--signature_def", "track", "--inputs",
                 f"frames={tmp_path / 'bad.npy'}")
    assert bad.returncode != 0 and "Cannot feed value of shape" in bad.stderr  # The signature's shape is enforced.
    zero = _smcli("run", "--dir", exported, "--tag_set", "serve", "--signature_def", "sample", "--input_exprs",
                  "num_sequences=2;num_steps=0;seed=[1,2]")
    assert zero.returncode != 0 and "num_steps must be ≥ 1" in zero.stderr


@pytest.mark.parametrize("frames", [
    np.zeros([3, H, W, 1], np.float32), np.zeros([1, 2, 3, H, W, 1], np.float32),
    np.zeros([1, 2, H, W + 1, 1], np.float32), np.zeros([1, 2, H, W, 3], np.float32)])
def test_frames_of_the_wrong_shape_are_refused(loaded, frames):
    for name in ("track", "generate"):
        fn = loaded.signatures[name]
        kwargs = {} if name == "track" else {"num_steps": tf.constant(2), "seed": tf.constant([0, 1])}
        # Refused by the signature binding (TF's message names both shapes) or, where a loader binds without
        # comparing shapes, by the in-graph checks; either way the message names the expected shape.
        with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError),
                           match=r"(?s)shape.*\(None, None, 32, 32, 1\)|frames must (have rank 5|be \[batch, time, 32, 32, 1\])"):
            fn(frames=tf.constant(frames), **kwargs)


def test_in_graph_shape_checks_name_the_problem_when_the_signature_is_bypassed():
    """Runtimes that feed without checking the signature (TF Serving's C++ path) meet the in-graph checks."""
    for frames, message in ((np.zeros([3, H, W, 1], np.float32), "frames must have rank 5"),
                            (np.zeros([1, 2, H, W + 1, 1], np.float32), r"frames must be \[batch, time, 32, 32, 1\]")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            export._checked_frames(tf.constant(frames), (H, W, 1))


@pytest.mark.parametrize("frames, message", [
    (np.zeros([0, 2, H, W, 1], np.float32), "batch of 0 sequences"),
    (np.zeros([1, 0, H, W, 1], np.float32), "0 frames"),
    (np.where(np.arange(2 * H * W).reshape(1, 2, H, W, 1) == 7, np.nan, 0.5).astype(np.float32), "NaN"),
    (np.full([1, 2, H, W, 1], np.inf, np.float32), "NaN or infinite"),
    (np.full([1, 2, H, W, 1], 255.0, np.float32), r"values must be in \[0, 1\]"),  # Rejected, not clipped.
    (np.full([1, 2, H, W, 1], -0.01, np.float32), r"values must be in \[0, 1\]"),
])
def test_bad_frames_fail_in_the_graph_naming_the_problem(loaded, frames, message):
    for name in ("track", "generate"):
        fn = loaded.signatures[name]
        kwargs = {} if name == "track" else {"num_steps": tf.constant(2), "seed": tf.constant([0, 1])}
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            fn(frames=tf.constant(frames), **kwargs)


def test_track_window_carries_the_object_state_from_window_to_window(run_dir, loaded):
    """`initial_state` → `track_window` → `track_window`: the stream API of a TF Serving client (state outputs fed
    back as inputs by name) answers what the in-process `SQAIR.track_window` answers, window by window."""
    frames = _frames(2, 5, seed=11)
    state = loaded.signatures["initial_state"](num_sequences=tf.constant(2))
    assert int(state["frames_seen"]) == 0 and state["state_object_ids"].numpy().tolist() == [[-1, -1]] * 2
    model, _, _ = checkpoints.load_model(run_dir)
    local = model.initial_state(2)
    seed = tf.constant(export.TRACK_SEED, tf.int32)
    for first, last in ((0, 3), (3, 5)):
        got = loaded.signatures["track_window"](frames=tf.constant(frames[:, first:last]), **state)
        best, log_weight, local = model.track_window(tf.constant(frames[:, first:last]), local, first, seed, K)
        state = {key: value for key, value in got.items() if key.startswith("state_") or key == "frames_seen"}
        assert int(state["frames_seen"]) == last
        track_keys = {key: value.numpy() for key, value in got.items() if key not in state and key != "presence_prob"}
        _assert_track_contract(track_keys, 2, last - first)
        _assert_close(got, {"boxes": best["boxes"], "object_ids": best["object_ids"], "log_weight": log_weight,
                            "presence_prob": best["presence_prob"], "state_z_where": local.z_where,
                            "state_object_ids": local.object_ids, "state_last_used_id": local.last_used_id,
                            "state_temporal_state": local.temporal_state})
    wrong = dict(state, state_z_pres=state["state_z_pres"][:1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="state_z_pres must have one row per sequence"):
        loaded.signatures["track_window"](frames=tf.constant(frames[:, :2]), **wrong)
    with pytest.raises(tf.errors.InvalidArgumentError, match="frames_seen must be ≥ 0"):
        loaded.signatures["track_window"](frames=tf.constant(frames[:, :2]), **dict(state, frames_seen=tf.constant(-1)))


def test_bad_counts_and_dtypes_are_refused(loaded):
    seed = tf.constant([0, 1])
    frames = tf.constant(_frames(1, 2))
    for kwargs, message in (({"num_sequences": 0, "num_steps": 2}, "num_sequences must be ≥ 1"),
                            ({"num_sequences": 2, "num_steps": 0}, "num_steps must be ≥ 1"),
                            ({"num_sequences": 2, "num_steps": -3}, "num_steps must be ≥ 1")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            loaded.signatures["sample"](seed=seed, **{k: tf.constant(v) for k, v in kwargs.items()})
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_steps must be ≥ 1"):
        loaded.signatures["generate"](frames=frames, num_steps=tf.constant(0), seed=seed)
    # Wrong dtypes: the signature itself refuses them, before the graph runs.
    wrong = tf.errors.InvalidArgumentError, TypeError, ValueError
    with pytest.raises(wrong, match="expected to be a float tensor but is a double tensor"):
        loaded.signatures["track"](frames=tf.constant(_frames(1, 2), tf.float64))
    with pytest.raises(wrong, match="expected to be a float tensor but is a int32 tensor"):
        loaded.signatures["track"](frames=tf.constant(np.zeros([1, 2, H, W, 1], np.int32)))
    with pytest.raises(wrong, match="expected to be a int32 tensor but is a int64 tensor"):
        loaded.signatures["sample"](num_sequences=tf.constant(2, tf.int64), num_steps=tf.constant(2), seed=seed)
    # Values exactly at the bounds are fine.
    _assert_track_contract(export.track_saved_model(loaded, np.ones([1, 2, H, W, 1], np.float32)), 1, 2)


# ------------------------------------------------------------------------------------------------------------------
# The README's REST format, served by a minimal stand-in for TF Serving's row-format predict API.

def _readme_block(after, language):
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line)
    fence = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    assert lines[fence] == f"```{language}", f"expected a ```{language} block right after {after!r}"
    end = next(i for i in range(fence + 1, len(lines)) if lines[i].startswith("```"))
    return "\n".join(lines[fence + 1:end])


def _placeholder(text, sizes):
    """'float32 [T][N][4]' → (dtype, shape) with the symbols resolved from `sizes`."""
    dtype, dims = re.fullmatch(r"(\w+) ((?:\[\w*\])+)", text).groups()
    return dtype, tuple(int(sizes.get(d, d)) for d in re.findall(r"\[(\w+)\]", dims))


class _FakeServing(http.server.BaseHTTPRequestHandler):
    """POST /v1/models/sqair:predict with TF Serving's row format: instances are stacked along the batch axis and
    predictions are split along it; graph errors come back as HTTP 400 {"error": ...}."""

    signatures = None

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/models/sqair:predict"
        fn = self.signatures[body.get("signature_name", "serving_default")]
        names = list(body["instances"][0])
        inputs = {name: tf.constant(np.array([instance[name] for instance in body["instances"]], np.float32))
                  for name in names}
        try:
            outputs = {key: value.numpy() for key, value in fn(**inputs).items()}
            status, reply = 200, {"predictions": [{key: value[i].tolist() for key, value in outputs.items()}
                                                  for i in range(len(body["instances"]))]}
        except tf.errors.InvalidArgumentError as e:
            status, reply = 400, {"error": e.message}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_readme_rest_request_response_and_client(loaded):
    t = 3
    sizes = {"T": t, "H": H, "W": W, "N": N, "D": D}
    request = json.loads(_readme_block("REST request", "json"))
    assert request["signature_name"] == "track" and isinstance(request["instances"], list)
    frames = _frames(2, t, seed=11)
    instances = []
    for i, documented in enumerate(request["instances"] * 2):  # Two sequences shaped as documented.
        assert set(documented) == {"frames"}
        assert _placeholder(documented["frames"], sizes) == ("float32", (t, H, W, 1))
        instances.append({"frames": frames[i].tolist()})
    request["instances"] = instances

    response = json.loads(_readme_block("REST response", "json"))
    documented = response["predictions"][0]
    assert set(response) == {"predictions"}

    server = http.server.HTTPServer(("127.0.0.1", 0), _FakeServing)
    _FakeServing.signatures = loaded.signatures
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/v1/models/sqair:predict"
    try:
        import requests

        reply = requests.post(url, data=json.dumps(request), timeout=120)  # The documented request, verbatim.
        assert reply.status_code == 200, reply.text
        predictions = reply.json()["predictions"]
        assert len(predictions) == 2
        for prediction in predictions:
            assert set(prediction) == set(documented)
            for key, placeholder in documented.items():
                dtype, shape = _placeholder(placeholder, sizes)
                value = np.asarray(prediction[key])
                assert value.shape == shape, key
                assert value.dtype.kind == ("i" if dtype.startswith("int") else "f") or (
                    dtype.startswith("float") and value.dtype.kind == "i"), key  # JSON may print 0.0 as 0.
        expected = export.track_saved_model(loaded, frames)
        np.testing.assert_array_equal([p["object_ids"] for p in predictions], expected["object_ids"])

        namespace = {}
        exec(_readme_block("Python client", "python"), namespace)  # The README's client against the stand-in.
        result = namespace["track"](frames, url=url)
        assert len(result) == 2 and result[1]["boxes"].shape == (t, N, 4)
        np.testing.assert_allclose(result[0]["reconstruction"], expected["reconstruction"][0], rtol=1e-6)
        with pytest.raises(RuntimeError, match=r"(?s)TF Serving 400: .*values must be in \[0, 1\]"):
            namespace["track"](frames * 255.0, url=url)
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------------------------------
# Command line.

def test_cli_exports_and_prints_path_size_and_signatures(run_dir, tmp_path):
    out_base = tmp_path / "served"
    done = subprocess.run([os.path.join(BIN, "sqair-export"), "--workdir", run_dir, "--out", str(out_base),
                           "--k", "2", "--version", "7"], env=ENV, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"exported {out_base / '7'} (" in done.stdout and " MB, K=2" in done.stdout
    for name in ("track", "generate", "sample", "serving_default"):
        assert f"  {name}(" in done.stdout
    assert json.load(open(out_base / "7" / "assets.extra" / "sqair_export.json"))["num_particles"] == 2


def test_cli_help_and_errors(run_dir, tmp_path, capsys):
    help_text = subprocess.run([sys.executable, "-m", "serving.export", "--help"], cwd=REPO, env=ENV,
                               capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0
    for flag in ("--workdir", "--out", "--k", "--refine-steps", "--motion-weight", "--checkpoint", "--version"):
        assert flag in help_text.stdout

    out = str(tmp_path / "out")
    cases = [
        (["--workdir", str(tmp_path / "missing"), "--out", out], "no run directory"),
        (["--workdir", str(tmp_path), "--out", out], "not a training run directory"),
        (["--workdir", run_dir, "--out", out, "--checkpoint", os.path.join(run_dir, "checkpoints", "ckpt-99")],
         "no checkpoint"),
        (["--workdir", run_dir, "--out", out, "--k", "0"], "--k must be an integer ≥ 1, got 0"),
        (["--workdir", run_dir, "--out", out, "--version", "-1"], "--version must be an integer ≥ 0"),
        (["--workdir", run_dir, "--out", out, "--refine-steps", "-1"], "--refine-steps must be an integer ≥ 0"),
        (["--workdir", run_dir, "--out", out, "--refine-steps", "5", "--motion-weight", "inf"],
         "--motion-weight must be a finite number ≥ 0, got inf"),
    ]
    for argv, message in cases:
        assert export.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("sqair-export: error: ") and message in err and err.count("\n") == 1, err
    assert not os.path.exists(out)
