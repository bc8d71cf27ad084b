"""Training with MONAI and PyTorch: config in, model package (manifest, TorchScript, card) out.

``radpilot train CONFIG.yaml`` runs :func:`radpilot.training.run.run_training`; the config
format is :class:`radpilot.training.config.TrainConfig` (``docs/training.md``). Submodules
import torch and MONAI; this package's ``__init__`` imports nothing.
"""

__all__: list[str] = []
