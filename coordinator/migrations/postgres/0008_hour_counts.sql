-- Schema 8: `hour_counts`, the hourly sums of `minute_counts` (same key
-- with `hour` = `minute` floored to the hour, i.e. minute div 60 rounded
-- down also for negative minutes). Written in the same transaction as
-- every change to `minute_counts`, so it always equals their sum; a store
-- opens from these rows plus the minute ring instead of grouping millions
-- of minute rows. `updated_ms`: when the row last changed, as in
-- `minute_counts`.
CREATE TABLE IF NOT EXISTS hour_counts (
        probe_id TEXT COLLATE "C" NOT NULL,
        region TEXT COLLATE "C" NOT NULL,
        hour BIGINT NOT NULL,
        threshold_us BIGINT NOT NULL,
        good BIGINT NOT NULL,
        total BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (probe_id, hour, threshold_us, region)
    );

-- Filled once from the minute rows already stored.
INSERT INTO hour_counts (probe_id, region, hour, threshold_us, good, total, updated_ms)
SELECT probe_id, region, (minute - (((minute % 60) + 60) % 60)) / 60 AS h, threshold_us,
    CAST(SUM(good) AS BIGINT), CAST(SUM(total) AS BIGINT), MAX(updated_ms)
FROM minute_counts GROUP BY probe_id, h, threshold_us, region;
