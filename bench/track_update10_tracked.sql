\set id random(1, 99991)
BEGIN;
UPDATE bench_acct_tracked SET balance = balance + 1, updated_at = now() WHERE id = :id;
UPDATE bench_acct_tracked SET balance = balance + 1, updated_at = now() WHERE id = :id + 1;
UPDATE bench_acct_tracked SET balance = balance + 1, updated_at = now() WHERE id = :id + 2;
UPDATE bench_acct_tracked SET balance = balance + 1, updated_at = now() WHERE id = :id + 3;
UPDATE bench_acct_tracked SET balance = balance + 1, updated_at = now() WHERE id = :id + 4;
UPDATE bench_acct_tracked SET balance = balance + 1, updated_at = now() WHERE id = :id + 5;
UPDATE bench_acct_tracked SET balance = balance + 1, updated_at = now() WHERE id = :id + 6;
UPDATE bench_acct_tracked SET balance = balance + 1, updated_at = now() WHERE id = :id + 7;
UPDATE bench_acct_tracked SET balance = balance + 1, updated_at = now() WHERE id = :id + 8;
UPDATE bench_acct_tracked SET balance = balance + 1, updated_at = now() WHERE id = :id + 9;
COMMIT;
