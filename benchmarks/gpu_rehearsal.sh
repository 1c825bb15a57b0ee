#!/usr/bin/env bash
# The GPU check rehearsed here before a GPU is lent (README, "Benchmarks on GPU"): a virtual environment, outside the
# repository, of the GPU image's packages at the image's versions plus only the wheel set of benchmarks/gpu_wheels.sh,
# installed with --no-deps so nothing is resolved behind its back, then `gpu_check.py --device cpu` (every stage ok)
# and a 20-step `train.py fit --config configs/bb.yaml` in it, run as the device command runs them (the repository
# on PYTHONPATH, no `pip install -e .`). Any module missing from the wheel set fails here, not on the GPU.
# CPU torch 2.13.0 exists on these machines only for Python 3.11, so this runs on 3.11 (the image is 3.12): the same
# versions, with the cp311 build of the wheels that have compiled parts (pydantic-core, multiprocess), and numpy
# 2.4.6 for the image's 2.5.2 (which needs 3.12). Versions KINDS.md does not give are pinned to recent releases.
#     bash benchmarks/gpu_rehearsal.sh          # 6 to 7 minutes on 2 busy cores (a cold pip cache: more)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VENV=${VSCALE_REHEARSAL_VENV:-${TMPDIR:-/tmp}/vscale-gpu-rehearsal}
case "$VENV/" in "$REPO"/*) echo "gpu_rehearsal: VSCALE_REHEARSAL_VENV must lie outside the repository" >&2; exit 1;; esac
IMAGE_PINS=(
    torch==2.13.0 transformers==5.17.0 lightning==2.6.6 pytorch-lightning==2.6.6 torchmetrics==1.9.0 tokenizers==0.23.2
    huggingface_hub==1.33.0 safetensors==0.8.0 numpy==2.4.6 scipy==1.17.1 matplotlib==3.11.2 pyarrow==26.0.1
    pandas==3.1.1 fsspec==2026.9.0 xxhash==4.1.0 pyyaml==6.0.4 rich==15.0.0 tqdm==4.70.1 requests==2.34.2
    protobuf==7.36.2 psutil==7.2.2 click==8.5.1 pytest==9.2.0 pytest-xdist==3.8.0 pytest-timeout==2.4.0
)
# Every package of the image (KINDS.md, "Python packages already there"): what the resolver pulls in beyond these is removed.
IMAGE="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
    charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
    cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax
    fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
    hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2
    joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
    markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
    mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti
    nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver
    nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13
    nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
    orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache
    protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest
    pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex
    requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece
    sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
    tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
    torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
    typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"
started=$SECONDS
bash benchmarks/gpu_wheels.sh >/dev/null
rm -rf "$VENV"
"${PYTHON311:-python3.11}" -m venv "$VENV"
PY=$VENV/bin/python
echo "gpu_rehearsal: the image's packages into $VENV"
"$PY" -m pip install -q "${IMAGE_PINS[@]}"
names() { "$PY" -m pip list --format=freeze | cut -d= -f1 | tr 'A-Z_.' 'a-z--' | sort; }
extra=$(comm -23 <(names) <(echo $IMAGE | tr ' ' '\n' | sort))
[ -z "$extra" ] || { echo "gpu_rehearsal: not in the image, removed:" $extra; "$PY" -m pip uninstall -q -y $extra; }
# The wheel set as it travels, or the same name and version built for this interpreter where the 3.12 build is not.
mkdir -p "$VENV/wheels"
"$PY" - "$VENV/wheels" .whl/*.whl <<'PYTHON' > "$VENV/wheels.txt"
import sys
from packaging.tags import sys_tags
from packaging.utils import parse_wheel_filename
here = set(sys_tags())
for path in sys.argv[2:]:
    name, version, _, tags = parse_wheel_filename(path.rsplit("/", 1)[-1])
    print(path if tags & here else f"{name}=={version}")
PYTHON
pins=$(grep -v '\.whl$' "$VENV/wheels.txt" || true)
[ -z "$pins" ] || "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$VENV/wheels" $pins
"$PY" -m pip install -q --no-index --no-deps $(grep '\.whl$' "$VENV/wheels.txt") "$VENV"/wheels/*.whl
"$PY" -m pip check || echo "gpu_rehearsal: (pip check lists needs that packages declare and nothing imports at start-up: what gpu_check.py runs decides)"
export PYTHONPATH=$REPO PYTHONUNBUFFERED=1
science=configs/bb-peak-gpu.yaml
[ -f "$science" ] || science=configs/bb.yaml
echo "gpu_rehearsal: gpu_check.py --device cpu (science leg on $science)"
"$PY" benchmarks/gpu_check.py --device cpu --out "$VENV/check" --steps 2 --science_config "$science" --budget 3000 > "$VENV/check.log" 2>&1 \
    || { cat "$VENV/check.log"; echo "gpu_rehearsal: gpu_check.py FAILED" >&2; exit 1; }
"$PY" -c "import json, sys; r = json.load(open(sys.argv[1])); bad = [k for k in ('smoke', 'cuda_tests', 'step_time', 'train', 'science') if not r[k]['ok']]
sys.exit(f'gpu_rehearsal: stage(s) {bad} FAILED, see {sys.argv[1]}' if bad else 0)" "$VENV/check/gpu_check.json" || { cat "$VENV/check/gpu_check.md"; exit 1; }
echo "gpu_rehearsal: train.py fit --config configs/bb.yaml, 20 steps"
"$PY" train.py fit --config configs/bb.yaml --trainer.max_steps=20 --run.root="$VENV/runs" --trainer.enable_progress_bar=false > "$VENV/train.log" 2>&1 \
    || { tail -20 "$VENV/train.log"; echo "gpu_rehearsal: train.py fit FAILED" >&2; exit 1; }
echo "gpu_rehearsal: passed in $((SECONDS - started)) s (Python $("$PY" -c 'import platform; print(platform.python_version())'); logs and report in $VENV)"
