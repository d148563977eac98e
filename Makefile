# The two commands: `make run` and `make test`. Both install what is missing first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
UBSAN_BUILD ?= build-ubsan
INSTALL_BUILD ?= build-install
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= -1
PREFIX     ?= /usr/local
SHARED     ?= $(abspath ../shared)

.PHONY: all deps build run test test-fast bench clean install fuzz

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

$(TSAN_BUILD)/build.ninja:
	meson setup $(TSAN_BUILD) --buildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false

# clang's UBSan, which checks what GCC's does not (float-cast-overflow, pointer-overflow); any
# finding stops the test. -O1: fast to build, not too slow to run.
UBSAN_FLAGS = -fsanitize=undefined,float-cast-overflow,pointer-overflow -fno-sanitize-recover=all
$(UBSAN_BUILD)/build.ninja:
	CC=clang meson setup $(UBSAN_BUILD) --buildtype=debug -Db_lundef=false \
	    -Dc_args='-O1 $(UBSAN_FLAGS)' -Dc_link_args='$(UBSAN_FLAGS)'

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# The app on the default experiment, ready to press Train: vitlab's own Fashion-MNIST backbone
# (data/backbones) transferred to classes 5-9 with 100 images each, progressive unfreezing —
# the same recipe as `vitlab-cli train --preset demo`.
DEMO_BACKBONE = data/backbones/vitlab-fmnist-tiny
DEMO_DATA = fashion-mnist:classes=5-9,per-class=100

# Without a session bus (a console, ssh, a container) the app runs inside dbus-run-session, so
# that dconf can save its settings.
run: build
	GSETTINGS_SCHEMA_DIR=$(abspath $(BUILD))/data \
	    $(if $(DBUS_SESSION_BUS_ADDRESS),,dbus-run-session --) $(BUILD)/app/vitlab \
	    --backbone $(DEMO_BACKBONE) --data $(DEMO_DATA) --preset progressive --epochs 12

# The whole suite; then the engine and CLI tests and the fuzz corpus replay (tests/fuzz/corpus
# through every harness) once more under AddressSanitizer and UBSan, the same under clang's
# UBSan, and the threaded parts (pool, loader, trainer) under ThreadSanitizer.
# scripts/test-summary.py prints the closing "N passed, N failed" line over all four runs.
TSAN_TESTS = kernels dataset trainer

test: build $(ASAN_BUILD)/build.ninja $(TSAN_BUILD)/build.ninja $(UBSAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	ninja -C $(TSAN_BUILD) app/vitlab-cli $(foreach t,$(TSAN_TESTS),tests/test-$(t))
	ninja -C $(UBSAN_BUILD)
	-xvfb-run -a -s '-screen 0 1600x1000x24' meson test -C $(BUILD) --print-errorlogs --num-processes 1
	-meson test -C $(ASAN_BUILD) --print-errorlogs --num-processes 1 --suite engine --suite cli \
	    --suite fuzz
	-meson test -C $(UBSAN_BUILD) --print-errorlogs --num-processes 1 --suite engine --suite cli \
	    --suite fuzz
	-TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 meson test -C $(TSAN_BUILD) \
	    --no-rebuild --print-errorlogs --num-processes 1 $(TSAN_TESTS)
	@python3 scripts/test-summary.py $(BUILD) $(ASAN_BUILD) $(UBSAN_BUILD) $(TSAN_BUILD)

test-fast: build
	meson test -C $(BUILD) --print-errorlogs

# vitlab against PyTorch on this machine (not part of `make test`); writes docs/BENCHMARKS.md.
bench: build
	@VITLAB_BENCH=1 scripts/install-deps.sh
	/usr/bin/python3 bench/run.py --cli $(BUILD)/app/vitlab-cli --shared $(SHARED) --out docs/BENCHMARKS.md

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(UBSAN_BUILD) $(INSTALL_BUILD) $(FUZZ_BUILD)

# `make install PREFIX=$$HOME/.local`: a build of its own configured for that prefix, then meson
# install (binaries, the shipped backbone and samples under PREFIX/share/vitlab, the GSettings
# schema compiled, desktop file, icon, AppStream metainfo). DESTDIR is passed on to meson.
install: deps
	@if [ -f $(INSTALL_BUILD)/build.ninja ]; then \
	  meson configure $(INSTALL_BUILD) -Dprefix=$(abspath $(PREFIX)); \
	else \
	  meson setup $(INSTALL_BUILD) --buildtype=debugoptimized --prefix=$(abspath $(PREFIX)); \
	fi
	ninja -C $(INSTALL_BUILD)
	meson install -C $(INSTALL_BUILD) --no-rebuild

# vitlab's timm export against a PyTorch rebuild of timm's ViT, and its ONNX export in ONNX
# Runtime (onnxruntime-node from npm, into $(ORT_NODE); not part of `make test`).
ORT_NODE ?= $(BUILD)/interop-node
ORT_NODE_VERSION ?= 1.30.0
.PHONY: interop
interop: build
	@VITLAB_BENCH=1 scripts/install-deps.sh
	@if [ ! -f $(ORT_NODE)/node_modules/onnxruntime-node/package.json ]; then \
	  mkdir -p $(ORT_NODE) && cd $(ORT_NODE) && echo '{"private": true}' > package.json && \
	  ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund \
	      onnxruntime-node@$(ORT_NODE_VERSION); fi
	@lib=$(ORT_NODE)/node_modules/onnxruntime-node/bin/napi-v6/linux/$$(node -p process.arch); \
	  test -f $$lib/libonnxruntime.so.1 && test -f $$lib/onnxruntime_binding.node || \
	  { echo "onnxruntime-node: no CPU binary in $$lib"; exit 1; }
	@# both checks run; the target fails when either does
	@status=0; \
	/usr/bin/python3 tests/interop/check_export.py --cli $(BUILD)/app/vitlab-cli \
	    --shared $(SHARED) || status=1; \
	NODE_PATH=$(abspath $(ORT_NODE))/node_modules node tests/interop/check_onnx.js \
	    --cli $(BUILD)/app/vitlab-cli --shared $(SHARED) || status=1; \
	exit $$status

# The libFuzzer harnesses (tests/fuzz; clang with ASan + UBSan), each run for FUZZ_SECONDS (or
# until FUZZ_RUNS executions, when set: make fuzz FUZZ_RUNS=1000000 FUZZ_SECONDS=7200) over
# its checked-in corpus (tests/fuzz/corpus/NAME, read only) and what it finds
# ($(FUZZ_BUILD)/corpus/NAME). A crash stops the target and leaves the input in $(FUZZ_BUILD).
# Not part of `make test`.
FUZZERS = safetensors config image cifar runjson idx metrics detect mask csv torch npz

$(FUZZ_BUILD)/build.ninja:
	@scripts/install-deps.sh
	CC=clang meson setup $(FUZZ_BUILD) --buildtype=debugoptimized -Dfuzzing=true \
	    -Db_sanitize=address,undefined -Db_lundef=false

fuzz: $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD) $(foreach f,$(FUZZERS),tests/fuzz/fuzz-$(f))
	@for f in $(FUZZERS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$f $(FUZZ_BUILD)/crashes; \
	  echo "fuzz-$$f: $(FUZZ_SECONDS) s, $(FUZZ_RUNS) runs (-1: no limit)"; \
	  ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(FUZZ_BUILD)/tests/fuzz/fuzz-$$f -max_total_time=$(FUZZ_SECONDS) -runs=$(FUZZ_RUNS) \
	      -rss_limit_mb=4096 \
	      -timeout=30 -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/crashes/$$f- \
	      $(FUZZ_BUILD)/corpus/$$f tests/fuzz/corpus/$$f || exit 1; \
	done
