#!/usr/bin/env bash
# On a machine with a CUDA GPU: set up, then train every recipe's tiny config on the GPU in
# bf16 mixed precision (tests marked gpu). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh test
. .venv/bin/activate
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print(torch.cuda.get_device_name())"
python -m pytest -q -m gpu "$@"
