"""close_jax: CLOSE (curriculum learning on the sharing extent) one-shot supernets in JAX."""

from setuptools import find_packages, setup

setup(
  name='close_jax',
  version='0.1.0',
  description='CLOSE one-shot NAS supernets (ECCV 2022) in JAX/Flax',
  python_requires='>=3.11',
  packages=find_packages(include=['close_jax', 'close_jax.*']),
  package_data={'close_jax.benchmarks': ['data/*.csv', 'data/*.md']},
  install_requires=[
    'jax>=0.10.2,<0.11',
    'flax>=0.12.8,<0.13',
    'optax>=0.2.8,<0.3',
    'orbax-checkpoint>=0.12.8,<0.13',
    'jraph>=0.0.6.dev0,<0.1',
    'ml-collections>=1.1,<2',
    'numpy>=2.0,<3',
    'scipy>=1.13,<2',
    'absl-py>=2.1,<3',
    'pymoo>=0.6.1,<0.7',  # the search's non-dominated sorting
    'matplotlib>=3.8,<4',  # the search's and the analyses' figures
    'tensorboardX>=2.6,<3',  # TensorBoard scalars without TensorFlow
    'tqdm>=4.66,<5',  # the ranking's progress bar
    'Pillow>=10,<14',  # ImageNet folder decoding (final training)
  ],
  extras_require={
    'test': [
      'pytest>=8,<10',
      'pytest-xdist>=3.5,<4',
      'ruff>=0.15,<1',
      # tests/test_notebook.py executes the Colab notebook
      'nbclient>=0.10,<1',
      'ipykernel>=6.29,<8',
      'nbformat>=5.10,<6',
    ],
  },
)
