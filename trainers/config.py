"""Typed, frozen training configuration with the `paper`, `fast`, `demo` and `debug` presets.

`paper` is the authors' recipe (BUILD.md O5) exactly. `fast` is this project's recipe for learning to count quickly on
a 2-core CPU; it keeps the `paper` model and objective and changes only the optimiser, batch and curriculum pace
(each choice documented at the preset). `demo` is what `make demo` trains in a few minutes; `debug` is for tests.

Configs round-trip through JSON (`to_json` / `from_json`) so a run directory records exactly what it ran, and
`--set key=value` overrides (`with_overrides`) reach any field, including the model's (`model.hidden_size=128`).
"""

import dataclasses
import json
import typing
from typing import Tuple

from sqair_tf import config as model_config_lib
from sqair_tf import models

_OPTIMIZERS = ("rmsprop_tf1", "adam")
_SIGNALS = ("paper", "textbook")

# Fields that only change how a run is executed or reported, not what it computes; a run may resume with
# different values of these. Any other difference makes a resume refuse (see `incompatible_fields`).
RESUMABLE_FIELDS = frozenset({
    "data_dir", "total_steps", "steps_per_loop", "jit_compile", "unroll_time", "checkpoint_every",
    "keep_checkpoints", "eval_every", "image_every", "max_nonfinite_in_row",
})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (defaults = the `paper` preset, BUILD.md O4–O5).

    Attributes:
      model: the architecture: a config of `model_name`'s config class (`sqair_tf.models`).
      model_name: which model (`sqair_tf.models.names()`): 'mlp-sqair' (the default), 'conv-sqair', 'mlp-air',
        'mlp-vrnn' or 'conv-vrnn'.
      data_dir: directory written by `sqair-data generate` with `train` and `test` splits.
      batch_size: global batch of sequences per step (split across replicas).
      num_particles: K, particles per sequence (IWAE / VIMCO); ≥ 2 for VIMCO's leave-one-out baseline.
      vimco_signal: 'paper' (L_k − cv_k, the original's) or 'textbook' (IWAE − cv_k); `objectives.py`.
      optimizer: 'rmsprop_tf1' (TF1 RMSProp semantics, ms slot starts at 1, ε = 1e-10) or 'adam'.
      learning_rate: initial learning rate.
      lr_boundaries: steps at which the learning rate is multiplied by `lr_decay`.
      lr_decay: factor applied at each boundary (1/3: BUILD.md O5 `--schedule 4,6,10`).
      clip_norm: if > 0, the step's gradient (summed over replicas) is scaled down to this global norm when it is
        longer (`trainer.clip_by_global_norm`); 0, the paper's choice, never clips.
      count_penalty_start: the step from which the model's count penalty λ (`model.count_penalty`) enters the
        training loss; before it the loss uses λ = 0. A fresh model has not yet learnt to explain a digit with one
        object, and λ from step 0 can drive it to no objects at all; 0 applies λ from the first step.
      momentum: RMSProp momentum (0.9).
      rms_decay: RMSProp decay ρ (0.9).
      curriculum_start: training sequence length L at step 0 (BUILD.md O5: 3).
      curriculum_stage_steps: L grows by one every this many steps (BUILD.md O5: 100,000).
      max_seq_len: L stops growing here (also capped by the data's length).
      total_steps: training steps of the run.
      steps_per_loop: steps per compiled loop call (metrics and the curriculum update between calls).
      jit_compile: XLA-compile the per-replica forward/backward pass.
      unroll_time: trace the model's time loop step by step instead of a `tf.while_loop`
        (`SequenceModel.unroll_time`): the same computation, about 11 % faster per XLA step, compiled 3–4× longer
        at T = 10; worth it for long runs at one length (BUILD.md "Unrolled time loop").
      checkpoint_every: steps between checkpoints (also written at the end and on interruption).
      keep_checkpoints: checkpoints kept by the CheckpointManager.
      eval_every: steps between held-out evaluations (counting accuracy, IWAE) logged to TensorBoard.
      image_every: steps between reconstruction images in TensorBoard (a multiple of eval_every is sensible).
      eval_batch_size: held-out sequences used by the periodic evaluation (full length, K particles).
      max_nonfinite_in_row: stop after this many consecutive skipped (non-finite) updates.
      seed: seed of sampling and data order; the run is a deterministic function of it.
      init_from: '' (the seed's initial weights) or where a new run takes its first weights from: a run directory
        (its latest checkpoint), a checkpoint prefix, or a shipped model's name (`trainers.pretrained`). The run
        starts at that checkpoint's step, so the learning-rate schedule, the curriculum and λ's start continue
        from there, with a fresh optimizer (`checkpoints.resolve_init_source`). Used once, when the run has no
        checkpoint yet; its first checkpoint is written at once.
    """

    model: model_config_lib.ModelConfig = model_config_lib.ModelConfig()
    model_name: str = models.DEFAULT
    data_dir: str = ""
    batch_size: int = 32
    num_particles: int = 5
    vimco_signal: str = "paper"
    optimizer: str = "rmsprop_tf1"
    learning_rate: float = 1e-5
    lr_boundaries: Tuple[int, ...] = (400_000, 1_000_000)
    lr_decay: float = 1.0 / 3.0
    clip_norm: float = 0.0
    count_penalty_start: int = 0
    momentum: float = 0.9
    rms_decay: float = 0.9
    curriculum_start: int = 3
    curriculum_stage_steps: int = 100_000
    max_seq_len: int = 10
    total_steps: int = 2_000_000
    steps_per_loop: int = 100
    jit_compile: bool = False
    unroll_time: bool = False
    checkpoint_every: int = 10_000
    keep_checkpoints: int = 3
    eval_every: int = 10_000
    image_every: int = 10_000
    eval_batch_size: int = 256
    max_nonfinite_in_row: int = 20
    seed: int = 0
    init_from: str = ""

    def __post_init__(self):
        models.check_config(self.model_name, self.model)  # A ValueError naming what does not match.
        object.__setattr__(self, "lr_boundaries", tuple(int(b) for b in self.lr_boundaries))
        for name in ("batch_size", "num_particles", "curriculum_start", "curriculum_stage_steps", "max_seq_len",
                     "total_steps", "steps_per_loop", "checkpoint_every", "keep_checkpoints", "eval_every",
                     "image_every", "eval_batch_size", "max_nonfinite_in_row"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_particles < 2:
            raise ValueError(f"num_particles must be ≥ 2 (VIMCO's leave-one-out baseline), got {self.num_particles}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}")
        if self.vimco_signal not in _SIGNALS:
            raise ValueError(f"vimco_signal must be one of {_SIGNALS}, got {self.vimco_signal!r}")
        if not self.learning_rate > 0 or not self.lr_decay > 0:
            raise ValueError(f"learning_rate and lr_decay must be > 0, got {self.learning_rate}, {self.lr_decay}")
        if not self.clip_norm >= 0:
            raise ValueError(f"clip_norm must be >= 0 (0 = no clipping), got {self.clip_norm!r}")
        if not isinstance(self.count_penalty_start, int) or self.count_penalty_start < 0:
            raise ValueError(f"count_penalty_start must be a step >= 0, got {self.count_penalty_start!r}")
        if self.count_penalty_start and not getattr(self.model, "count_penalty", 0.0) > 0:
            raise ValueError(f"count_penalty_start={self.count_penalty_start} needs a count penalty to start: set "
                             f"model.count_penalty > 0 (model {self.model_name!r} has "
                             f"{getattr(self.model, 'count_penalty', 'none')})")
        if list(self.lr_boundaries) != sorted(set(self.lr_boundaries)) or any(b < 1 for b in self.lr_boundaries):
            raise ValueError(f"lr_boundaries must be increasing positive steps, got {self.lr_boundaries}")
        if self.curriculum_start > self.max_seq_len:
            raise ValueError(f"curriculum_start ({self.curriculum_start}) exceeds max_seq_len ({self.max_seq_len})")

    def seq_len(self, step, data_len=None):
        """The curriculum's sequence length L at `step` (BUILD.md O5): start + ⌊step / stage⌋, capped."""
        cap = self.max_seq_len if data_len is None else min(self.max_seq_len, data_len)
        return min(self.curriculum_start + step // self.curriculum_stage_steps, cap)

    def next_stage_step(self, step):
        """The first step after `step` at which the curriculum length changes (or may change)."""
        return (step // self.curriculum_stage_steps + 1) * self.curriculum_stage_steps

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values):
        values = dict(values)
        config_class = models.config_class(values.get("model_name", models.DEFAULT))
        model = config_class(**_coerce_fields(config_class, values.pop("model", {})))
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown training config fields: {sorted(unknown)}")
        return cls(model=model, **_coerce_fields(cls, values))

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))

    def with_overrides(self, assignments):
        """Applies `key=value` strings (`--set`); `model.<field>` reaches the model config.

        Values are parsed by the field's type: ints, floats, bools (true/false), strings, and tuples written as
        comma-separated lists (`lr_boundaries=5000,10000`, `model.image_shape=32,32,1`). The model itself is not
        an override: it decides which `model.` fields exist, so it is chosen with `preset(..., model=NAME)`.
        """
        values = self.to_dict()
        model_class = models.config_class(self.model_name)
        for assignment in assignments:
            key, sep, text = assignment.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"--set expects key=value, got {assignment!r}")
            if key == "model_name":
                raise ValueError("the model is not a --set key: choose it with --model NAME "
                                 f"({', '.join(models.names())})")
            target, cls, name = values, TrainConfig, key
            if key.startswith("model."):
                target, cls, name = values["model"], model_class, key[len("model."):]
            types = {f.name: f.type for f in dataclasses.fields(cls)}
            if name not in types or name == "model":
                raise ValueError(f"unknown config key {key!r}; known: {sorted(_all_keys(model_class))}")
            target[name] = _parse_value(text.strip(), types[name], key)
        return TrainConfig.from_dict(values)


def _all_keys(model_class):
    for f in dataclasses.fields(TrainConfig):
        if f.name not in ("model", "model_name"):
            yield f.name
    for f in dataclasses.fields(model_class):
        yield "model." + f.name


def _resolve(type_):
    return {"int": int, "float": float, "bool": bool, "str": str}.get(type_, type_) if isinstance(type_, str) else type_


def _parse_value(text, type_, key):
    type_ = _resolve(type_)
    origin = typing.get_origin(type_)
    try:
        if origin in (tuple, typing.Tuple) or type_ is tuple:
            args = typing.get_args(type_)
            item = int if not args else _resolve(args[0])
            return tuple(item(v) for v in text.split(",") if v.strip()) if text else ()
        if type_ is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if type_ is int:
            return int(float(text)) if "e" in text.lower() else int(text)
        return type_(text)
    except ValueError:
        raise ValueError(f"cannot parse {text!r} for {key} ({getattr(type_, '__name__', type_)})") from None


def _coerce_fields(cls, values):
    """JSON gives lists for tuples; turn them back so configs compare equal after a round trip."""
    types = {f.name: _resolve(f.type) for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in types:
            raise ValueError(f"unknown {cls.__name__} field {key!r}")
        if isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


def differing_fields(a, b, ignore=()):
    """The dotted names of the fields whose values differ between two configs, except those in `ignore`."""
    x, y = _flatten(a.to_dict()), _flatten(b.to_dict())
    return sorted(key for key in set(x) | set(y) if x.get(key) != y.get(key) and key not in ignore)


def incompatible_fields(stored, requested):
    """Fields whose values differ between two configs and that a resumed run cannot change."""
    return differing_fields(stored, requested, ignore=RESUMABLE_FIELDS)


def describe_differences(a, b, keys, where_a, where_b):
    """'key: <a's value> <where_a>, <b's value> <where_b>; …' for the dotted field names `keys`."""
    x, y = _flatten(a.to_dict()), _flatten(b.to_dict())
    return "; ".join(f"{k}: {x.get(k)!r} {where_a}, {y.get(k)!r} {where_b}" for k in keys)


def _flatten(values, prefix=""):
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix + key + "."))
        else:
            flat[prefix + key] = list(value) if isinstance(value, tuple) else value
    return flat


_PAPER = TrainConfig()

# `tracking` with the gradient clipped to global norm 1,000 and the learning rate held at 1e-4 until step
# 8,000 (÷3 at 8,000 and 16,000) instead of cut at the first curriculum step. The cut was there because the
# presence collapsed when L grew at 1e-4; the collapses came with gradient spikes (norms of 10^4–10^5 against a
# median of ~600–900), which Adam turns into steps of several times the rate. Clipped, the higher rate is
# stable through the curriculum and learns faster: on three seeds, MOTA at step 5,000 was 0.41–0.45 against
# `tracking`'s 0.26–0.36 (benchmarks/RESULTS.md, issue 10). Keeping 1e-4 until 16,000 was worse.
_TRACKING_CLIPPED = dataclasses.replace(
    _PAPER, optimizer="adam", learning_rate=1e-4, lr_boundaries=(8000, 16000), clip_norm=1000.0, batch_size=16,
    vimco_signal="textbook", curriculum_stage_steps=2000, max_seq_len=10, total_steps=25_000,
    steps_per_loop=50, jit_compile=True, checkpoint_every=1000, keep_checkpoints=30, eval_every=500,
    image_every=1000, eval_batch_size=200)
_TRACKING_PENALISED = dataclasses.replace(
    _TRACKING_CLIPPED, model=dataclasses.replace(_TRACKING_CLIPPED.model, count_penalty=30.0),
    count_penalty_start=2000)

PRESETS = {
    # BUILD.md O5 exactly: RMSProp (TF1 semantics) lr 1e-5 ÷3 at 400k and 1M, batch 32, K = 5, curriculum 3 → 10
    # frames (+1 every 100k steps), 2M steps, VIMCO with the original's learning signal, no clipping.
    "paper": _PAPER,
    # The `paper` model, tuned for time-to-counting on 2 CPU cores (benchmarks/RESULTS.md has both attempts):
    # - Adam 1e-4 instead of RMSProp 1e-5: the paper's rate needs ~10^5 steps before objects are found; Adam at
    #   1e-4 is the rate Pyro's AIR uses to learn counting in a few thousand steps.
    # - VIMCO with the textbook learning signal (IWAE − cv_k): the original's per-particle signal L_k − cv_k is
    #   hundreds of nats for every non-dominant particle; with Adam 1e-4 it made the presence networks swing
    #   (counting accuracy 0.75 at 5 minutes, then 0.57–0.61 while the held-out IWAE fell).
    # - learning rate ÷3 at steps 4,000 and 8,000: with the textbook signal alone, counting reached 0.94 at 15
    #   minutes and then collapsed at step ~6,900 (training IWAE 2,200 → 1,200 within 200 steps).
    # - batch 16: twice the steps per second of batch 32; counting is learnt per step more than per sequence.
    # - curriculum 3 frames, +1 every 5,000 steps up to 5: short sequences are cheap and counting is learnt on them.
    # - XLA for the forward/backward pass: +28 % at T = 10 (benchmarks/RESULTS.md) for ~40 s of compilation.
    "fast": dataclasses.replace(
        _PAPER, optimizer="adam", learning_rate=1e-4, lr_boundaries=(4000, 8000), batch_size=16,
        vimco_signal="textbook", curriculum_stage_steps=5000, max_seq_len=5, total_steps=50_000, steps_per_loop=50,
        jit_compile=True,
        checkpoint_every=1000, eval_every=500, image_every=1000, eval_batch_size=200),
    # The CPU recipe for tracking whole sequences: `fast`, but the curriculum reaches the data's full 10 frames
    # (+1 frame every 2,000 steps: L = 10 from step 14,000 of 25,000), because a model judged on 10-frame
    # sequences must have learnt to propagate objects over 10 frames; and the first ÷3 of the learning rate comes
    # at the first curriculum step (2,000) rather than at 4,000: with Adam still at 1e-4 when L went 3 → 4, the
    # presence collapsed (0.09 objects per frame 500 steps later, held-out counting 0.85 → 0.41, still 0.51 at
    # step 6,500), while with the rate cut there it rose to 0.94 by step 4,000 (benchmarks/RESULTS.md, one seed
    # each). Checkpoints every 1,000 steps are all kept so quality can be measured against steps afterwards
    # (benchmarks/bench_tracking.py).
    "tracking": dataclasses.replace(
        _PAPER, optimizer="adam", learning_rate=1e-4, lr_boundaries=(2000, 8000), batch_size=16,
        vimco_signal="textbook", curriculum_stage_steps=2000, max_seq_len=10, total_steps=25_000,
        steps_per_loop=50, jit_compile=True, checkpoint_every=1000, keep_checkpoints=30, eval_every=500,
        image_every=1000, eval_batch_size=200),
    "tracking_clipped": _TRACKING_CLIPPED,
    # `tracking_clipped` with a count penalty of λ = 30 nats per discovered object in the training loss from step
    # 2,000 on (BUILD.md "Options beyond the paper"): against one digit explained by two objects, the
    # decomposition failure behind many of the identity switches. From step 0 it drove one seed of three to no
    # objects within 350 steps, before the decoder could draw a digit worth more than 30 nats; from 2,000 on
    # (the first curriculum step) it did not on any of three seeds, and at step 10,000 they counted 0.983–0.986
    # (`tracking_clipped`: 0.936–0.978; benchmarks/RESULTS.md, issue 10). It trained the shipped model.
    "tracking_penalised": _TRACKING_PENALISED,
    # `tracking_penalised` with the glimpse centre free to leave the canvas (`model.where_shift_range=2`, BUILD.md
    # "Options beyond the paper"): the paper's tanh keeps it inside, so an object cannot follow a digit whose
    # centre has gone out, the largest source of lost MOTA (digits at the edge). From step 0 on two seeds, at step
    # 5,000: MOTA 0.538 and 0.556 against 0.446 and 0.482 for `tracking_penalised`, counting 0.973 and 0.977
    # against 0.961 and 0.956; at 10,000 the gap had mostly closed (seed 0: MOTA 0.618 against 0.594, IDF1 0.746
    # against 0.752) and at 15,000 seed 0 tracked worse (MOTA 0.661 against 0.699, four times the identity switches;
    # benchmarks/RESULTS.md, issue 10). An option, not the shipped recipe.
    "tracking_offcanvas": dataclasses.replace(
        _TRACKING_PENALISED, model=dataclasses.replace(_TRACKING_PENALISED.model, where_shift_range=2.0)),
    # Pedestrians from a static camera (`sqair-data from-video`, paper §4.2): MLP-SQAIR on 64×64 crops of 5 frames,
    # the `tracking` recipe's optimiser and schedule with the curriculum 3 → 5 frames (+1 every 2,000 steps) because
    # the video sequences are 5 frames long. MLP rather than CONV-SQAIR: on this CPU a CONV-SQAIR step costs 15–20
    # MLP steps (benchmarks/RESULTS.md, Table 1), so within the 2-hour budget it would see ~1/15 of the updates.
    "pedestrians": dataclasses.replace(
        _PAPER, model=dataclasses.replace(model_config_lib.PRESETS["paper"], image_shape=(64, 64, 1)),
        optimizer="adam", learning_rate=1e-4, lr_boundaries=(2000, 8000), batch_size=16, vimco_signal="textbook",
        curriculum_stage_steps=2000, max_seq_len=5, total_steps=20_000, steps_per_loop=50, jit_compile=True,
        checkpoint_every=1000, keep_checkpoints=30, eval_every=500, image_every=1000, eval_batch_size=242),
    # What `make demo` trains from scratch: the fast recipe on 3-frame sequences, XLA-compiled (the fused step is
    # about twice as fast at L = 3), for the wall-clock budget `sqair-demo` gives it; total_steps only caps it.
    "demo": dataclasses.replace(
        _PAPER, optimizer="adam", learning_rate=1e-4, lr_boundaries=(), batch_size=16, vimco_signal="textbook",
        curriculum_stage_steps=100_000, max_seq_len=3, total_steps=5000, steps_per_loop=50, jit_compile=True,
        checkpoint_every=250, eval_every=250, image_every=500, eval_batch_size=100),
    # Tests: the tiny `debug` model on 32×32 data, a handful of steps.
    "debug": dataclasses.replace(
        _PAPER, model=model_config_lib.PRESETS["debug"], optimizer="adam", learning_rate=1e-3, lr_boundaries=(),
        batch_size=4, num_particles=3, curriculum_start=2, curriculum_stage_steps=4, max_seq_len=3, total_steps=8,
        steps_per_loop=2, checkpoint_every=4, keep_checkpoints=2, eval_every=4, image_every=4, eval_batch_size=4,
        max_nonfinite_in_row=3),
}


def preset(name, overrides=(), model=None):
    """A named training preset for `model` (default: MLP-SQAIR) with optional `key=value` overrides.

    The presets are recipes (optimiser, schedule, batch, curriculum); the model's own config is its `debug` config
    preset for the `debug` recipe and its `paper` config preset (the paper's size) for every other recipe.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown training preset {name!r}; choose from {sorted(PRESETS)}")
    config = PRESETS[name]
    if model is not None and model != config.model_name:
        # The recipe's frame shape belongs to its data (64×64 for `pedestrians`), so it carries over to the model,
        # and so do its count penalty and glimpse range to a model with objects; a model without a count gets no
        # penalty to start.
        model_config = models.preset(model, "debug" if name == "debug" else "paper",
                                     image_shape=config.model.image_shape)
        start = config.count_penalty_start
        for option in ("count_penalty", "where_shift_range"):
            if hasattr(model_config, option):
                model_config = dataclasses.replace(model_config, **{option: getattr(config.model, option)})
        if not hasattr(model_config, "count_penalty"):
            start = 0
        config = dataclasses.replace(config, model_name=model, model=model_config, count_penalty_start=start)
    return config.with_overrides(overrides)


def as_preset_and_overrides(config):
    """(name, ["key=value", …]) with `preset(name, overrides, model=config.model_name) == config`, data_dir aside.

    The preset is the one that needs the fewest overrides, so a run's config becomes the shortest `sqair-train
    --preset NAME --set …` command that trains it again (the shipped model's provenance records it).
    """
    differing = {name: differing_fields(preset(name, model=config.model_name), config, ignore=("data_dir",))
                 for name in PRESETS}
    name = min(differing, key=lambda n: len(differing[n]))  # the first such preset on a tie
    values = _flatten(config.to_dict())
    return name, [f"{key}={_format_value(values[key])}" for key in differing[name]]


def _format_value(value):
    """The `--set` text `_parse_value` reads back as `value` (a flattened field: tuples are lists)."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)
