"""On a CUDA machine: every recipe's tiny config trains on the GPU in bf16 mixed precision.

Run with `bash scripts/gpu_check.sh` (or `scripts/test.sh -m gpu`); CI has no GPU."""
import pytest
import torch

from .test_conformance import METHODS, fit

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("method", METHODS)
def test_fit_on_cuda_in_bf16(method, tmp_path):
    trainer, model = fit(method, tmp_path, "--trainer.accelerator", "gpu", "--trainer.devices", "1",
                         "--trainer.precision", "bf16-mixed")
    assert trainer.global_step == trainer.max_steps
    assert next(model.parameters()).device.type == "cuda"
