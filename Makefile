# nnpipe — top-level GNU Makefile.
#   make               all programs into bin/
#   make deps          install the Debian packages (idempotent)
#   make test          unit tests (cmocka) + program tests (TAP, prove)
#   make check-asan    the whole suite under AddressSanitizer + UBSan
#   make fuzz          libFuzzer target for the frame reader (FUZZ_RUNS=...)
#   make bench         benchmarks -> docs/benchmarks.md
#   make example       the read/info/write pipeline on a generated dataset
#   make demo          the whole lifecycle on the CPU: train, predict, Dice table, PNG overlays
#   make install PREFIX=/usr/local
#   make GPU=0         build without CUDA even when nvcc and cuDNN are present

VERSION := 0.1.0
PREFIX ?= /usr/local
BUILD ?= build
BIN ?= bin
SAN ?= 0
WERROR ?= 0

CC ?= cc
ifeq ($(CC),cc)
  CC := gcc
endif
PYTHON ?= /usr/bin/python3

WARN := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
        -Wmissing-prototypes -Wformat=2 -Wno-unused-parameter
ifeq ($(WERROR),1)
  WARN += -Werror
endif
OPT ?= -O3 -g
CPPFLAGS += -D_GNU_SOURCE -Icommon -I/usr/include/nifti
CFLAGS += -std=c11 $(OPT) $(WARN) -fopenmp -fPIC
LDLIBS += -lnifti2 -lznz -lmsgpackc -ljansson -lzip -ldnnl -lnettle -lpng -lz -lm -ldl -fopenmp

ifeq ($(SAN),1)
  CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

# ---- CUDA detection: nvcc and cudnn.h, unless GPU=0 ----
NVCC ?= $(shell command -v nvcc 2>/dev/null)
CUDA_HOME ?= $(if $(NVCC),$(patsubst %/bin/nvcc,%,$(realpath $(NVCC))),/usr/local/cuda)
CUDNN_H := $(firstword $(wildcard $(CUDA_HOME)/include/cudnn.h /usr/include/cudnn.h /usr/include/x86_64-linux-gnu/cudnn.h))
ifeq ($(origin GPU),undefined)
  GPU := $(if $(and $(NVCC),$(CUDNN_H)),1,0)
endif
CU_SRC := $(wildcard common/cuda/*.cu)
ifeq ($(GPU),1)
  CPPFLAGS += -DNNP_HAVE_CUDA=1
  CU_OBJ := $(CU_SRC:common/cuda/%.cu=$(BUILD)/cuda/%.o)
  CUDA_LIBDIR := $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib))
  CUDNN_LIBDIR := $(patsubst %/,%,$(dir $(firstword $(wildcard $(CUDA_LIBDIR)/libcudnn.so /usr/lib/x86_64-linux-gnu/libcudnn.so))))
  LDLIBS += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR)
  # cuDNN: next to the CUDA libraries, or the distribution's multiarch directory
  ifneq ($(CUDNN_LIBDIR),$(CUDA_LIBDIR))
    ifneq ($(CUDNN_LIBDIR),)
      LDLIBS += -L$(CUDNN_LIBDIR) -Wl,-rpath,$(CUDNN_LIBDIR)
    endif
  endif
  LDLIBS += -lcudnn -lcudart
  NVCCFLAGS ?= -O2 -std=c++17 -Icommon --compiler-options -fPIC,-Wall \
               -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
               -gencode arch=compute_90,code=compute_90
else
  CU_OBJ :=
endif

LIB_SRC := $(wildcard common/*.c)
LIB_OBJ := $(LIB_SRC:common/%.c=$(BUILD)/common/%.o) $(CU_OBJ)
LIB := $(BUILD)/libnnp.a
PROG_SRC := $(wildcard filters/*.c)
PROGS := $(PROG_SRC:filters/%.c=$(BIN)/%)
PIPES := $(patsubst pipelines/%.sh,$(BIN)/%,$(wildcard pipelines/nnp-*.sh))
TOOL_SRC := $(wildcard tests/tools/*.c) $(wildcard examples/*.c)
TOOLS := $(patsubst %.c,$(BUILD)/tools/%,$(notdir $(TOOL_SRC)))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNITS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/unit/%)

.PHONY: all deps test unit tap check-asan fuzz bench example demo install clean lint
all: $(PROGS) $(PIPES) $(TOOLS)

$(BUILD)/common/%.o: common/%.c $(wildcard common/*.h) | $(BUILD)/common
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<
# export's argmax/compare loops vectorise only without -ftrapping-math (no FP
# exception is ever inspected; results are unchanged: no reassociation, no FMA)
$(BUILD)/common/export.o: CFLAGS += -fno-trapping-math
$(BUILD)/cuda/%.o: common/cuda/%.cu $(wildcard common/*.h common/cuda/*.h) | $(BUILD)/cuda
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<
$(LIB): $(LIB_OBJ)
	rm -f $@; ar rcs $@ $^
$(BIN)/%: filters/%.c $(LIB) | $(BIN)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) $(if $(CU_OBJ),-lstdc++)
$(BIN)/%: pipelines/%.sh | $(BIN)
	cp $< $@ && chmod +x $@
$(BUILD)/tools/%: tests/tools/%.c $(LIB) | $(BUILD)/tools
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) $(if $(CU_OBJ),-lstdc++)
$(BUILD)/tools/%: examples/%.c $(LIB) | $(BUILD)/tools
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) $(if $(CU_OBJ),-lstdc++)
$(BUILD)/unit/%: tests/unit/%.c $(LIB) $(wildcard tests/unit/*.h) | $(BUILD)/unit
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) -lcmocka $(if $(CU_OBJ),-lstdc++)
$(BUILD)/common $(BUILD)/cuda $(BUILD)/tools $(BUILD)/unit $(BIN):
	mkdir -p $@

DEB_PKGS := build-essential libnifti2-dev libmsgpack-dev libjansson-dev libzip-dev libdnnl-dev nettle-dev libpng-dev zlib1g-dev \
            libcmocka-dev parallel python3 python3-msgpack python3-numpy python3-nibabel \
            clang libclang-rt-14-dev time bc procps
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "all Debian packages present"; fi

unit: $(UNITS)
	@fail=0; for t in $(UNITS); do $$t || fail=1; done; exit $$fail
tap: all
	NNP_BIN=$(abspath $(BIN)) NNP_TOOLS=$(abspath $(BUILD)/tools) PYTHON=$(PYTHON) prove -f tests/t/
test: all unit tap

check-asan:
	$(MAKE) BUILD=build-asan BIN=bin-asan SAN=1 OPT="-O1 -g" GPU=0 test

FUZZ_RUNS ?= 1000000
fuzz:
	$(MAKE) CC=clang BUILD=build-fuzz BIN=bin-fuzz GPU=0 OPT="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" build-fuzz/libnnp.a
	clang $(CPPFLAGS) -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -fopenmp \
	  -o build-fuzz/fuzz_frame fuzz/fuzz_frame.c build-fuzz/libnnp.a $(LDLIBS)
	mkdir -p build-fuzz/corpus && cp fuzz/corpus/* build-fuzz/corpus/ 2>/dev/null || true
	build-fuzz/fuzz_frame -runs=$(FUZZ_RUNS) -max_len=4096 build-fuzz/corpus

bench: all
	NNP_BIN=$(abspath $(BIN)) NNP_TOOLS=$(abspath $(BUILD)/tools) bench/run.sh

example: all
	NNP_BIN=$(abspath $(BIN)) NNP_TOOLS=$(abspath $(BUILD)/tools) examples/run-example.sh
demo: all
	NNP_BIN=$(abspath $(BIN)) NNP_TOOLS=$(abspath $(BUILD)/tools) examples/demo.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(PROGS) $(PIPES) $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)$(PREFIX)/share/nnpipe
	install -m 644 pipelines/experiment.mk $(DESTDIR)$(PREFIX)/share/nnpipe/

lint:
	tests/lint.sh

clean:
	rm -rf build build-asan build-fuzz bin bin-asan bin-fuzz
