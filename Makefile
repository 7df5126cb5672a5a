# sluice — build, run, test. Every dependency comes from a Debian package found with
# pkg-config (http-parser ships no .pc file, so it is linked by name).
#   make run      install what is missing, build, start `sluice serve`
#   make test     install, build with ASan+UBSan, run every test; ends "N passed, N failed"
#   make fuzz     run each libFuzzer target for FUZZ_SECONDS (default 60)
#   make bench    ingest, query and action benchmarks together: one table in docs/PERFORMANCE.md
#   make bench-ingest   ingest benchmark beside nginx and Redis (writes figures to stdout)
#   make bench-query    10M events: processing throughput, query latency over HTTP

PKGS     := libuv libcjson zlib libfyaml libpcre2-8 libmaxminddb libcrypto libxxhash libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lpthread -lm

CC       ?= cc
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wpointer-arith -Wformat=2 \
            -Wno-unused-parameter -Wno-missing-field-initializers
BASE     := -std=c11 -D_GNU_SOURCE -Isrc $(WARN) $(PKG_CFLAGS)
# No link-time optimisation: it cut the replay's instructions by 3.2% (callgrind, 300,000
# events), but the replay of a 10M-event log took 8-10% more CPU time with it, and
# 100-event batches no less (PERFORMANCE.md, "Link-time optimisation, measured").
REL_FLAGS  := $(BASE) -O2 -g -DNDEBUG
ASAN_FLAGS := $(BASE) -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined
TSAN_FLAGS := $(BASE) -O1 -g -fsanitize=thread -fno-omit-frame-pointer
FUZZ_CC    := clang-14
FUZZ_FLAGS := $(BASE) -O1 -g -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer \
              -Wno-unknown-warning-option

LIB_SRC  := $(filter-out src/main.c,$(wildcard src/*.c src/util/*.c))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

# The tracker, the dashboard and the demo shop are embedded in the binary: scripts/embed.py
# turns web/ into
# build/assets.c (generated on every change, never committed), served by src/static.c.
# The tracker is served minified: web/sluice.min.js and web/sluice-offers.min.js, made
# from web/sluice.js and web/sluice-offers.js by `make tracker` (terser from npm) and
# committed, so building needs no Node.js; each X.min.js is served as /X.js.
WEB_FILES := web/sluice.min.js web/sluice-offers.min.js $(wildcard web/dashboard/*) $(wildcard web/demo/*)
GEN_SRC  := build/assets.c

REL_OBJ  := $(LIB_SRC:%.c=build/rel/%.o) $(GEN_SRC:%.c=build/rel/%.o)
ASAN_OBJ := $(LIB_SRC:%.c=build/asan/%.o) $(GEN_SRC:%.c=build/asan/%.o)
FUZZ_OBJ := $(LIB_SRC:%.c=build/fuzzobj/%.o) $(GEN_SRC:%.c=build/fuzzobj/%.o)
UNITS    := $(UNIT_SRC:tests/unit/%.c=build/asan/%)
TSAN_OBJ := $(LIB_SRC:%.c=build/tsan/%.o) $(GEN_SRC:%.c=build/tsan/%.o)
TSAN_UNITS := $(UNIT_SRC:tests/unit/%.c=build/tsan/%)
FUZZERS  := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)

.PHONY: tsan soak tracker all run test unit fuzz fuzz-build bench bench-ingest bench-query bench-actions chaos deps test-deps clean

all: build/sluice build/geoip-country.mmdb

# The default geo database, built from Debian's tor-geoipdb (CC BY-SA 4.0, see docs/GEO.md),
# and the small fixture the tests use.
GEOIP_SRC := /usr/share/tor/geoip /usr/share/tor/geoip6
build/geoip-country.mmdb: scripts/build-geoip.pl $(GEOIP_SRC)
	@mkdir -p $(dir $@)
	perl scripts/build-geoip.pl $@ $(GEOIP_SRC)

build/test-geo.mmdb: scripts/make-geo-fixture.pl
	@mkdir -p $(dir $@)
	perl scripts/make-geo-fixture.pl $@

build/asan/test_geo: build/test-geo.mmdb

tracker:
	@sh scripts/minify.sh

# 30 minutes at steady load with memory sampled; prints the RSS slope (bench/soak.sh).
soak:
	@sh scripts/deps.sh bench
	@$(MAKE) --no-print-directory build/sluice
	@sh bench/soak.sh

deps:
	@sh scripts/deps.sh

test-deps:
	@sh scripts/deps.sh test

run: deps
	@$(MAKE) --no-print-directory all
	./build/sluice serve $(ARGS)

build/assets.c: scripts/embed.py $(WEB_FILES)
	@mkdir -p $(dir $@)
	python3 scripts/embed.py $@ web $(foreach f,$(WEB_FILES:web/%=%),$(if $(filter %.min.js,$f),$f:$(f:.min.js=.js),$f))

# build/KIND/.flags holds the flags KIND's objects were compiled with. It is rewritten,
# and so the objects rebuilt, only when the flags change (an edit of REL_FLAGS would
# otherwise leave an existing build tree as it was).
FLAGS_rel = $(REL_FLAGS)
FLAGS_asan = $(ASAN_FLAGS)
FLAGS_fuzzobj = $(FUZZ_CC) $(FUZZ_FLAGS)
FLAGS_tsan = $(TSAN_FLAGS)
build/%/.flags: FORCE
	@mkdir -p $(dir $@)
	@printf '%s\n' '$(FLAGS_$*)' | cmp -s - $@ || printf '%s\n' '$(FLAGS_$*)' >$@
FORCE:
.PRECIOUS: build/%/.flags

build/rel/%.o: %.c $(wildcard src/*.h src/util/*.h) build/rel/.flags
	@mkdir -p $(dir $@)
	$(CC) $(REL_FLAGS) -c $< -o $@

build/asan/%.o: %.c $(wildcard src/*.h src/util/*.h) build/asan/.flags
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_FLAGS) -c $< -o $@

build/fuzzobj/%.o: %.c $(wildcard src/*.h src/util/*.h) build/fuzzobj/.flags
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS:-fsanitize=fuzzer,%=-fsanitize=fuzzer-no-link,%) -c $< -o $@

build/rel/libsluice.a: $(REL_OBJ)
	rm -f $@ && ar rcs $@ $^

build/tsan/%.o: %.c $(wildcard src/*.h src/util/*.h) build/tsan/.flags
	@mkdir -p $(dir $@)
	$(CC) $(TSAN_FLAGS) -c $< -o $@

build/tsan/libsluice.a: $(TSAN_OBJ)
	rm -f $@ && ar rcs $@ $^

# TSAN_SHIM: libuv's closes made visible to ThreadSanitizer (tests/tsan/tsan_syscall.c)
TSAN_SHIM := build/tsan/tests/tsan/tsan_syscall.o
build/tsan/sluice: build/tsan/src/main.o build/tsan/libsluice.a $(TSAN_SHIM)
	$(CC) $(TSAN_FLAGS) -o $@ $^ $(PKG_LIBS)

build/tsan/test_%: tests/unit/test_%.c $(wildcard tests/unit/*.h) build/tsan/libsluice.a $(TSAN_SHIM)
	$(CC) $(TSAN_FLAGS) -Itests/unit -o $@ $< build/tsan/libsluice.a $(TSAN_SHIM) $(PKG_LIBS)

build/tsan/test_geo: build/test-geo.mmdb

# ThreadSanitizer: the unit tests and the end-to-end tests against a TSan build
# (the log writer, the thread pool's checkpoints, scans and erasures, the geo memo).
tsan: test-deps
	@$(MAKE) --no-print-directory build/tsan/sluice build/sluice build/test-geo.mmdb build/geoip-country.mmdb $(TSAN_UNITS)
	@SLUICE_SAN=tsan sh tests/run.sh

build/asan/libsluice.a: $(ASAN_OBJ)
	rm -f $@ && ar rcs $@ $^

build/fuzzobj/libsluice.a: $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^

build/sluice: build/rel/src/main.o build/rel/libsluice.a
	$(CC) $(REL_FLAGS) -o $@ $^ $(PKG_LIBS)

build/asan/sluice: build/asan/src/main.o build/asan/libsluice.a
	$(CC) $(ASAN_FLAGS) -o $@ $^ $(PKG_LIBS)

build/asan/test_%: tests/unit/test_%.c $(wildcard tests/unit/*.h) build/asan/libsluice.a
	$(CC) $(ASAN_FLAGS) -Itests/unit -o $@ $< build/asan/libsluice.a $(PKG_LIBS)

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzzobj/libsluice.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< build/fuzzobj/libsluice.a $(PKG_LIBS)

unit: $(UNITS)

fuzz-build: $(FUZZERS)

test: test-deps
	@$(MAKE) --no-print-directory build/asan/sluice build/sluice build/geoip-country.mmdb \
	  build/test-geo.mmdb $(UNITS) $(FUZZERS)
	@sh tests/run.sh

# FUZZ_TARGETS picks targets by name ("kpi hll"; default all), FUZZ_RUNS stops each after
# that many executions (default -1: only FUZZ_SECONDS stops it). The campaign of
# docs/RELIABILITY.md: make fuzz FUZZ_RUNS=10000000 FUZZ_SECONDS=480 FUZZ_TARGETS=...
# FUZZ_RSS_MB is libFuzzer's RSS limit: a target that starts a thread per input
# (log_recovery) grows the sanitizer runtime's RSS to about 2 GB over 1e7 inputs.
FUZZ_SECONDS ?= 60
FUZZ_RSS_MB ?= 8192
FUZZ_RUNS ?= -1
FUZZ_TARGETS ?= $(FUZZERS:build/fuzz/fuzz_%=%)
fuzz: test-deps
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	@# New inputs go to build/fuzz-corpus/NAME (the first directory); the committed corpus
	@# only seeds the run. Merge the interesting ones back with -merge=1 when worth it.
	@for f in $(FUZZ_TARGETS:%=build/fuzz/fuzz_%); do n=$${f##*/}; n=$${n#fuzz_}; mkdir -p build/fuzz-corpus/$$n; \
	  echo "== $$n"; $$f -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=$(FUZZ_RSS_MB) \
	  -artifact_prefix=build/fuzz-corpus/$$n- build/fuzz-corpus/$$n tests/fuzz/corpus/$$n || exit 1; done

# kill -9 at random moments under mixed load, CHAOS_ROUNDS times (default 100), each
# followed by a restart and an audit of every acknowledged messageId.
CHAOS_ROUNDS ?= 100
chaos: test-deps
	@$(MAKE) --no-print-directory build/asan/sluice
	@CRASH_ROUNDS=$(CHAOS_ROUNDS) ONLY=kill_9 python3 tests/e2e/test_durability.py

# The ingest, query and action benchmarks in one run; one table of figures beside their
# references, printed and written to docs/PERFORMANCE.md (bench/all.py: BENCH_EVENTS,
# BENCH_DURATION, BENCH_SAMPLES, BENCH_RATES size it).
bench:
	@sh scripts/deps.sh bench
	@$(MAKE) --no-print-directory build/sluice
	@python3 bench/all.py

bench-query:
	@$(MAKE) --no-print-directory build/sluice
	@sh bench/query.sh $(BENCH_EVENTS)

bench-ingest:
	@sh scripts/deps.sh bench
	@$(MAKE) --no-print-directory build/sluice
	@sh bench/ingest.sh
	@bash bench/enrich.sh

bench-actions:
	@$(MAKE) --no-print-directory build/sluice
	@sh bench/actions.sh

clean:
	rm -rf build
