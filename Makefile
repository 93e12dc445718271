# Developer and CI entry points. `make help` lists them.
PYTHON ?= python
TORCH_CPU_PIN ?= torch==2.13.0
TRITON_PIN ?= triton==3.7.1
TORCH_CUDA_PIN ?= torch==2.14.1
CUDA_HOME ?= /usr/local/cuda
CUDA_VENV ?= $(shell mktemp -u -d /tmp/electra_fast_cuda_check.XXXXXX)
KEEP_CUDA_VENV ?= 0

# Triton AOT targets: A100, H100, B200, RTX 50-series (tools/triton_aot_check.py says why each)
TRITON_ARCHES ?= 80 90 100 120

.PHONY: help install build test test-gpu selftest gpu-check triton-aot cuda-check bench clean syntax

help:
	@echo "install     pip install torch (CPU pin), triton and electra_fast[test] in the current env"
	@echo "build       rebuild the C++ extension in place (incremental, for development)"
	@echo "test        the CPU test suite (Triton kernels under TRITON_INTERPRET=1)"
	@echo "test-gpu    the GPU test tier (pytest -m gpu; skipped without a GPU)"
	@echo "selftest    every op on every backend here against the reference (electra-fast selftest)"
	@echo "gpu-check   validate a GPU machine: selftest, GPU tests, device asserts, GPU benchmarks -> gpu-check-report.txt"
	@echo "triton-aot  compile every Triton kernel for compute capabilities $(TRITON_ARCHES) (no GPU needed)"
	@echo "cuda-check  build the CUDA extension for real against $(TORCH_CUDA_PIN) in a throwaway venv"
	@echo "bench       the op benchmarks on this machine"

install:
	$(PYTHON) -m pip install "$(TORCH_CPU_PIN)" "$(TRITON_PIN)" setuptools wheel ninja
	$(PYTHON) -m pip install --no-build-isolation -e ".[test,train,hf]"

build:
	$(PYTHON) setup.py build_ext --inplace

test:
	$(PYTHON) -m pytest -q tests

test-gpu:
	$(PYTHON) -m pytest -q -m gpu tests

selftest:
	$(PYTHON) -m electra_fast.selftest

# Whenever a GPU machine is at hand, run this first. It fits in 10 minutes on one H100-class GPU: the stage
# budgets in tools/gpu_check.py add up to 570 s (README, "GPU status": measured on an H200).
gpu-check:
	$(PYTHON) tools/gpu_check.py --report gpu-check-report.txt

triton-aot:
	$(PYTHON) tools/triton_aot_check.py --arch $(TRITON_ARCHES)

# The CPU build of torch has incomplete CUDA headers, so the .cu files are compiled against a CUDA
# build of torch in a separate venv; the source is copied so the in-tree CPU build is left alone. The
# architectures are the ones setup.py picks on a machine without a GPU (default_cuda_arch_list).
cuda-check:
	@set -e; venv="$(CUDA_VENV)"; src="$$venv/src"; \
	if [ ! -x "$$venv/bin/python" ]; then $(PYTHON) -m venv "$$venv"; fi; \
	"$$venv/bin/pip" install -q "$(TORCH_CUDA_PIN)" numpy setuptools wheel ninja; \
	rm -rf "$$src"; mkdir -p "$$src"; \
	tar --exclude=./build --exclude='*.so' --exclude=./.git --exclude='*.egg-info' -cf - . | tar -xf - -C "$$src"; \
	site=$$("$$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
	arches=$$(cd "$$src" && "$$venv/bin/python" -c "import runpy, torch; s = runpy.run_path('setup.py'); \
	  print(s['default_cuda_arch_list'](s['nvcc_gpu_codes']('$(CUDA_HOME)/bin/nvcc'), torch.__version__))"); \
	echo "cuda-check: TORCH_CUDA_ARCH_LIST=$$arches"; \
	cd "$$src" && CUDA_HOME=$(CUDA_HOME) PATH=$(CUDA_HOME)/bin:$$PATH TORCH_CUDA_ARCH_LIST="$$arches" \
	  MAX_JOBS=$${MAX_JOBS:-2} ELECTRA_FAST_FORCE_CUDA=1 ELECTRA_FAST_EXTRA_INCLUDE="$$site/nvidia/cu13/include" \
	  "$$venv/bin/pip" install -q --no-build-isolation --no-deps . ; \
	cd / && "$$venv/bin/python" -c "import torch, electra_fast._C as C, electra_fast._extension as e; \
	  info = e.build_info(); print('cuda-check: built', C.__file__, info); assert info['cuda'] == '1', info"; \
	if [ "$(KEEP_CUDA_VENV)" != "1" ]; then rm -rf "$$venv"; fi

bench:
	$(PYTHON) benchmarks/bench_rtd_loss.py

clean:
	rm -rf build electra_fast/*.so *.egg-info

# Syntax-check one C++ source against the installed torch without the full build: make syntax FILE=csrc/cpu/x.cpp
syntax:
	@$(PYTHON) -c "import sysconfig; from torch.utils.cpp_extension import include_paths; \
	print(' '.join(['-I' + p for p in include_paths()] + ['-I' + sysconfig.get_paths()['include'], '-Icsrc/include']))" > /tmp/ef_includes.txt
	g++ -std=c++20 -fsyntax-only -w -fopenmp $$(cat /tmp/ef_includes.txt) $(FILE)
