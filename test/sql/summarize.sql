-- tool_audit.summarize_result(jsonb): never the full payload.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- the seed's examples
SELECT tool_audit.summarize_result('{"order_id": "ORD-54321", "status": "shipped", "carrier": "UPS"}');
SELECT tool_audit.summarize_result('{"error": "Cannot cancel shipped order", "error_type": "ValueError"}');
SELECT tool_audit.summarize_result('{"id": 7, "customer_id": "C-123", "count": 2, "rows": [1, 2]}');
-- large results: size and truncation noted, payload gone
SELECT tool_audit.summarize_result(jsonb_build_object('count', 500, 'rows',
         (SELECT jsonb_agg(jsonb_build_object('n', g, 'name', 'customer ' || g)) FROM generate_series(1, 50) g)));
-- exactly at the limit and just over it (the JSON text of {"x": "..."} is 9 characters plus the string)
SELECT tool_audit.summarize_result(jsonb_build_object('x', repeat('a', 991))) AS at_limit,
       tool_audit.summarize_result(jsonb_build_object('x', repeat('a', 992))) AS over_limit;
-- characters, not bytes
SELECT tool_audit.summarize_result(jsonb_build_object('x', repeat('é', 991))) AS multibyte_at_limit;

-- identifier keys are copied only when scalar: a nested record is payload
SELECT tool_audit.summarize_result('{"status": {"patient": {"diagnosis": "private"}}, "id": [1, 2], "count": 3}');
-- what counts as failure
SELECT tool_audit.summarize_result('{"error": null, "id": 1}') AS null_error,
       tool_audit.summarize_result('{"error": false}') AS false_error,
       tool_audit.summarize_result('{"success": false, "status": "declined"}') AS success_false;
SELECT tool_audit.summarize_result('{"error": {"code": 42, "message": "quota"}}');
-- secrets in errors and identifiers are sanitized too
SELECT tool_audit.summarize_result('{"error": "auth failed for Bearer abcdefghijklmnopq", "id": "sk-abcdefghijklmnopqrstuvwx"}');

-- results that are not objects
SELECT tool_audit.summarize_result('[1, 2, 3]'), tool_audit.summarize_result('"done"'),
       tool_audit.summarize_result('3'), tool_audit.summarize_result('null'),
       tool_audit.summarize_result(NULL);

-- a result that merely has a "_result_size" key is measured like any other
SELECT tool_audit.summarize_result(jsonb_build_object('_result_size', 3, 'data', repeat('d', 5000)));
-- a summary summarized again is the same summary
WITH r(res) AS (VALUES (jsonb_build_object('error', 'x', 'id', 1, 'blob', repeat('z', 2000))))
SELECT tool_audit.summarize_result(tool_audit.summarize_result(res)) = tool_audit.summarize_result(res) AS idempotent
  FROM r;

-- the identifier keys are a setting
SET tool_audit.summary_keys = 'ticket_id, orderId';
SELECT tool_audit.summarize_result('{"ticket_id": "T-1", "orderId": "O-9", "id": 3}');
SELECT regress_try($$SET tool_audit.summary_keys = 'a,,b'$$);
RESET tool_audit.summary_keys;
SHOW tool_audit.summary_keys;
-- and the default keys apply again (the split list follows the setting)
SELECT tool_audit.summarize_result('{"ticket_id": "T-1", "orderId": "O-9", "id": 3}');
