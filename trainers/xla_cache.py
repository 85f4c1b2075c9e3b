"""A persistent XLA compilation cache for the command-line jobs (BUILD.md "Speed", "Compilation cache").

Every XLA program (a curriculum stage's training step, an evaluation's forward) costs tens of seconds to compile
on these CPUs, most of it in XLA's own passes and LLVM code generation, and a new process pays it again: a resumed
run, a second seed, every `sqair-eval`. TensorFlow can store compiled executables on disk and load them instead
of compiling (`--tf_xla_persistent_cache_directory` in `TF_XLA_FLAGS`). An entry is found by the cluster's
signature and a hash of its HLO, and is used only if the stored HLO equals the new one exactly, so a code or
config change compiles afresh rather than running a stale program; entries are written to a temporary file and
renamed, so concurrent jobs and interrupted writes do not leave a half-written entry under its final name.

What this module adds to TensorFlow's mechanism:
- a directory per TensorFlow version and CPU (the executables are machine code for the CPU that compiled them: a
  home directory shared by machines with different instruction sets must not hand one machine's code to another);
- a check that the directory is writable before turning the cache on (TensorFlow fails the compiling call if it
  cannot write the entry);
- a size bound: least-recently-used entries beyond `MAX_BYTES` are removed when a job starts.

`SQAIR_XLA_CACHE` chooses: unset for the default directory (`$XDG_CACHE_HOME/sqair_tf/xla/...`, else
`~/.cache/...`), a path for that directory, or `off`. A `tf_xla_persistent_cache_directory` already in
`TF_XLA_FLAGS` is left as the user set it. TensorFlow reads `TF_XLA_FLAGS` once, when its runtime starts, so
`enable` must run before the first TensorFlow operation: the console entry points call it first thing.
"""

import hashlib
import os
import platform
import sys
import textwrap
import time
import warnings

ENV = "SQAIR_XLA_CACHE"
HELP = textwrap.fill(
    f"environment: {ENV}=DIR keeps compiled XLA programs in DIR between runs, so a resumed run, another seed or a "
    "repeated evaluation loads them instead of compiling again (default: ~/.cache/sqair_tf/xla/<TensorFlow version "
    f"and CPU>, at most 2 GiB, least recently used removed first); {ENV}=off compiles afresh every time", width=100)
FLAG = "--tf_xla_persistent_cache_directory"
MAX_BYTES = 2 << 30  # About 50 training-step programs of the paper model at T = 10 (~40 MB each).
_STALE_TMP_SECONDS = 3600.0
_OFF = ("off", "0", "false", "no", "none")


def _tensorflow_version():
    from importlib import metadata

    for name in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def cpu_tag():
    """A short fingerprint of the CPU's model and instruction-set flags (Linux), else of the platform's name."""
    text = ""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags", "Features", "CPU part"))]
        text = "".join(sorted(set(lines)))
    except OSError:
        pass
    text = text or f"{platform.machine()} {platform.processor()}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def default_directory():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sqair_tf", "xla", f"tf-{_tensorflow_version()}-{platform.machine()}-{cpu_tag()}")


def _tensorflow_started():
    tf_context = sys.modules.get("tensorflow.python.eager.context")
    if tf_context is None:
        return False
    return tf_context.context()._context_handle is not None  # The runtime (and TF_XLA_FLAGS) is initialised.


def prune(directory, max_bytes=MAX_BYTES):
    """Removes the least recently used entries beyond `max_bytes` and temporary files left by killed writers.

    Returns the number of files removed. "Used" is the later of the access and modification times.
    """
    now = time.time()
    entries, removed = [], 0
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        try:
            st = os.stat(path)
        except OSError:
            continue  # Removed by a concurrent job.
        if name.endswith(".pb"):
            entries.append((max(st.st_atime, st.st_mtime), st.st_size, path))
        elif ".tmp" in name and now - st.st_mtime > _STALE_TMP_SECONDS:
            removed += _remove(path)
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        removed += _remove(path)
        total -= size
    return removed


def _remove(path):
    try:
        os.remove(path)
        return 1
    except OSError:
        return 0


def enable(environ=None):
    """Turns the persistent cache on for this process (and its children); returns its directory, or None.

    None when `SQAIR_XLA_CACHE=off`, when the user's `TF_XLA_FLAGS` already names a cache directory (theirs is
    used), or, with a warning, when the directory is not writable or TensorFlow's runtime has already started.
    """
    environ = os.environ if environ is None else environ
    choice = environ.get(ENV, "").strip()
    if choice.lower() in _OFF:
        return None
    if FLAG in environ.get("TF_XLA_FLAGS", ""):
        return None
    if _tensorflow_started():
        warnings.warn(f"{ENV}: TensorFlow has already started, so its XLA flags are fixed; compiling without the "
                      "persistent cache", stacklevel=2)
        return None
    directory = os.path.abspath(os.path.expanduser(choice)) if choice else default_directory()
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".probe-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
        prune(directory)
    except OSError as e:
        warnings.warn(f"{ENV}: cannot use {directory} ({e}); compiling without the persistent cache", stacklevel=2)
        return None
    environ["TF_XLA_FLAGS"] = f"{environ.get('TF_XLA_FLAGS', '')} {FLAG}={directory}".strip()
    return directory
