# tool_audit — PGXS build.  `make`, `make install`, then see scripts/test.sh for the suite.
EXTENSION  = tool_audit
EXTVERSION = 1.5

MODULE_big = tool_audit
OBJS = \
	src/tool_audit.o \
	src/catalog.o \
	src/crypto.o \
	src/jsonb_util.o \
	src/layout.o \
	src/rules.o \
	src/pseudonym.o \
	src/detect.o \
	src/sanitize.o \
	src/summarize.o \
	src/hash.o \
	src/chain.o \
	src/lane_hint.o \
	src/insert.o \
	src/trail_mark.o \
	src/quiet_input.o \
	src/log_call.o \
	src/autonomous.o \
	src/autonomous_pool.o \
	src/idempotency.o \
	src/guard.o \
	src/upgrade_1_1.o \
	src/verify.o \
	src/verify_incremental.o \
	src/verify_parallel.o \
	src/digest.o \
	src/retention.o \
	src/purge.o \
	src/erase.o \
	src/restore.o \
	src/approval.o \
	src/impersonation.o \
	src/read_audit.o \
	src/export_cursor.o \
	src/fhir_text.o \
	src/alerts.o \
	src/track.o \
	src/track_write.o \
	src/role_events.o \
	src/tenant_verify.o \
	src/time_order.o \
	src/security_state.o

# The install script of the current version is built from sql/install/*.sql,
# one file per object group, in name order; the 1.0 base and the upgrade
# scripts are kept as released, for databases created at an earlier version.
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA = sql/$(EXTENSION)--1.0.sql \
	$(patsubst $(srcdir)/%,%,$(wildcard $(srcdir)/sql/$(EXTENSION)--*--*.sql))
INSTALL_PARTS = $(sort $(wildcard $(srcdir)/sql/install/*.sql))

# pg_regress (test/sql, test/expected): one file per capability.  Each file also
# runs on its own (test/regress_each.sh): its set-up is its own or the explicit
# include of test/fixtures.sql.  Isolation specs: test/isolation.  TAP: test/t.
REGRESS = setup sanitize detect sanitize_coverage pseudonym summarize log_call log_event no_secret_in_errors \
	append_only ddl_guard roles tenants rules_admin bad_input chain reports exports fhir_helpers upgrade \
	retention_policies holds purge erasure retention_schedule data_changes approvals break_glass \
	impersonation read_audit calls retries data_changes_audit alerts track track_call_owner free_text_sanitized alert_guards \
	report_rows export_since export_since_attacks tenant_verify time_order role_alerts security_state track_cache verify_incremental verify_since_attacks track_kept \
	verify_parallel lane_reuse lane_error track_subxact probe_indexes \
	track_exclude_rename track_tenant_move track_rename_recurse track_kept_wholerow lane_hint
REGRESS_OPTS = --inputdir=test --outputdir=test --load-extension=tool_audit

ISOLATION = concurrent_writers rules_cache chain_order retention_cache purge_hold approval_once calls_lanes lane_hint \
	retry_call_id alerts_cache track_calls export_since
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=test/isolation --load-extension=tool_audit

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK += -lcrypto

EXTRA_CLEAN = test/results test/regression.diffs test/regression.out \
	test/isolation/output_iso test/isolation/results test/isolation/regression.diffs \
	test/isolation/regression.out tmp_check log

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Rebuilt by every make, so that a part removed or renamed cannot leave a stale
# script behind; the file is replaced only when its content changes.  (When
# EXTVERSION changes, .gitignore names the new built script.)
sql/$(EXTENSION)--$(EXTVERSION).sql: $(INSTALL_PARTS) FORCE
	@mkdir -p $(@D)
	@cat $(INSTALL_PARTS) > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

.PHONY: FORCE
FORCE:

# each file has its own header; a changed header rebuilds every object file
# (and the LLVM bitcode installed beside them, when the server has JIT)
$(OBJS) $(OBJS:.o=.bc): $(wildcard $(srcdir)/src/*.h)

.PHONY: demo test
demo:
	./scripts/demo.sh
test:
	./scripts/test.sh

.PHONY: print-regress print-isolation
print-regress:
	@echo $(REGRESS)
print-isolation:
	@echo $(ISOLATION)
