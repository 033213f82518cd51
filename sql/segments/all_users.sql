-- Built-in segment: every user with at least one event before the evaluation time.
--
-- Grain: one row per user_id.
-- Inputs: events.
-- Parameters: $as_of: the evaluation time (UTC timestamp); only earlier events count.

with

events as (
    select * from events
),

users_seen as (
    select distinct user_id
    from events
    where event_time < cast($as_of as timestamp)
        and event_date <= cast(cast($as_of as timestamp) as date)
)

select * from users_seen
