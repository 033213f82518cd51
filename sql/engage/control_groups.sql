-- Control-group assignment of one engagement: which engaged users are held out as control.
--
-- Grain: one row per user_id of engaged_users.
-- Inputs: engaged_users (user_id, bucket): the users of the bucket being engaged, with the
-- bucket name as stored in control_groups.
-- Parameters: $goal_id (bigint): the goal, which salts the hash; $control_percent (integer,
-- 1 to 50): the control share of each bucket.
--
-- Within each bucket of n users, users are ordered by the lower-case hex SHA-256 of the text
-- '<goal_id>:<user_id>' (ties, which need a hash collision, by user_id), and the first
-- round(n * control_percent / 100) are control, the rest test. round() rounds halves away from
-- zero, and n * control_percent / 100.0 is exact for whole percentages, so DuckDB computes the
-- same groups with the query in docs/tables.md.

with

engaged_users as (
    select distinct user_id, bucket from engaged_users
),

ranked as (
    select
        user_id,
        bucket,
        row_number() over (
            partition by bucket
            order by
                encode(sha256(cast($goal_id as bigint) || ':' || user_id), 'hex'),
                user_id
        ) as hash_rank,
        count(*) over (partition by bucket) as bucket_users
    from engaged_users
),

assigned as (
    select
        user_id,
        bucket,
        case
            when hash_rank <= round(bucket_users * cast($control_percent as bigint) / 100.0)
                then 'control'
            else 'test'
        end as arm
    from ranked
)

select * from assigned
