-- Example segment: users with two or more `Charged` events in the 90 days before the
-- evaluation time.
--
-- Grain: one row per user_id.
-- Inputs: events.
-- Parameters: $as_of: the evaluation time (UTC timestamp).

with

purchases as (
    select user_id
    from events
    where event_name = 'Charged'
        and event_time < cast($as_of as timestamp)
        and event_time >= cast($as_of as timestamp) - interval '90 days'
),

repeat_buyers as (
    select user_id
    from purchases
    group by user_id
    having count(*) >= 2
)

select * from repeat_buyers
