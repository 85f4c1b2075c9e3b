"""sqair-tf: SQAIR (Kosiorek et al., NeurIPS 2018) in TensorFlow 2 / Keras 3 / TensorFlow Probability."""

from setuptools import find_packages, setup

# A compatible, tested set (see BUILD.md). TFP 0.25 does not import without tf-keras; TF 2.21 no longer brings
# TensorBoard, without which every tf.summary call fails.
INSTALL_REQUIRES = [
    "tensorflow>=2.21,<2.22",
    "tensorflow-probability[tf]==0.25.0",
    "tf-keras>=2.21,<2.22",
    "tensorboard>=2.21,<2.22",
    "keras>=3.10,<4",
    "numpy>=1.26,<3",
    "absl-py>=2.1",
    "tqdm>=4.66",
    "pillow>=10",
    # Tracking metrics of `sqair-eval` (HOTA, CLEAR, Identity): the maintained TrackEval release; needs SciPy.
    "trackeval>=1.3,<2",
    "scipy>=1.11",
    # Video (`sqair-data from-video`): reading, background subtraction, connected components. TrackEval already
    # depends on this distribution, so the headless build would install a second, conflicting cv2.
    "opencv-python>=4.8",
]

EXTRAS_REQUIRE = {
    "test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.8", "import-linter>=2.1"],
    "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
}

setup(
    name="sqair-tf",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.14",
    packages=find_packages(include=[f"{name}{suffix}" for name in (
        "sqair_tf", "data_pipelines", "trainers", "evaluation", "serving", "tools") for suffix in ("", ".*")]),
    package_data={"data_pipelines": ["assets/*.npz", "assets/*.md"],
                  "trainers": ["pretrained_models/*/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "sqair-data=data_pipelines.cli:run",
            "sqair-demo=tools.demo:run",
            "sqair-export=serving.export:run",
            "sqair-train=trainers.train:run",
            "sqair-train-cluster=trainers.cluster:run",
            "sqair-eval=evaluation.cli:run",
            "sqair-track=tools.track:run",
        ],
    },
)
