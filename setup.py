"""bass_jax: Deep Bayesian Active Semi-Supervised Learning in JAX."""

from setuptools import find_packages, setup

setup(
    name='bass_jax',
    version='0.1.0',
    description=('JAX framework for deep Bayesian active semi-supervised '
                 'learning (Rottmann et al. 2018): vmapped MC dropout, '
                 'pseudo-labels and acquisition in one compiled loop.'),
    packages=find_packages(include=['bass_jax', 'bass_jax.*', 'configs',
                                    'launch']),
    # jax >= 0.7.1, flax and orbax-checkpoint need Python 3.11 or newer.
    python_requires='>=3.11',
    install_requires=[
        'jax>=0.7.1',
        'flax>=0.11.0',
        'optax>=0.2.3',
        'chex>=0.1.87',
        'numpy>=1.26',
        'absl-py>=2.1',
        'ml-collections>=0.1.1',
        'orbax-checkpoint>=0.9.0',
        'matplotlib>=3.8',
    ],
    extras_require={
        # tensorflow-datasets and its TF backend only for tfds-named datasets.
        'tfds': ['tensorflow-datasets>=4.9.6', 'tensorflow-cpu>=2.16',
                 'importlib_resources>=6.0'],
        'test': ['pytest>=8.0', 'pytest-xdist>=3.5',
                 'tensorflow-datasets>=4.9.6',
                 'tensorflow-cpu>=2.16', 'importlib_resources>=6.0',
                 'tensorboard>=2.16', 'pillow>=10.0'],
        'tensorboard': ['tensorboard>=2.16'],
        # jax's own accelerator wheels, by name: `pip install -e '.[cuda12]'`.
        'cuda12': ['jax[cuda12]>=0.7.1'],
        'cuda13': ['jax[cuda13]>=0.7.1'],
        'tpu': ['jax[tpu]>=0.7.1'],
    },
)
