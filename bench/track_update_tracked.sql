\set id random(1, 100000)
UPDATE bench_acct_tracked SET balance = balance + 1, updated_at = now() WHERE id = :id;
