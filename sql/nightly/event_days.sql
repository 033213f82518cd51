-- The goal events of one goal since its start, each with its user, day and arm.
--
-- Grain: one row per goal event in [start, through).
-- Inputs: goal_events (the events that count for the goal), control_groups (empty when nothing
-- is engaged).
-- Parameters: $goal_id; $start, $through: UTC timestamps.
-- Template: {zone} is replaced by the goal's validated IANA time zone name before planning,
-- because a cast target type cannot be a parameter.
--
-- Columns: user_id; day: calendar day of the event in the goal's time zone; arm: the user's arm.
-- The arm is test or control for users of an engaged bucket, and none for the others.
--
-- Sorted by user_id. The nightly job walks these rows beside the goal's predictions, which are
-- stored sorted by user_id, to find each user's bucket and skip users outside the target group
-- (src/nightly/activity.rs). A hash join with the predictions instead probed all of the goal's
-- members, 0.5 s per goal at 7M members. The rows are not counted per user and day here,
-- because that aggregate cost more than the walk saves.

with

window_events as (
    select
        user_id,
        cast(to_local_time(arrow_cast(event_time, 'Timestamp(µs, "{zone}")')) as date) as day
    from goal_events
    where event_time >= $start
        and event_time < $through
        and event_date >= cast($start as date)
        and event_date <= cast($through as date)
),

assigned as (
    select user_id, arm
    from control_groups
    where goal_id = $goal_id
)

select
    window_events.user_id,
    window_events.day,
    coalesce(assigned.arm, 'none') as arm
from window_events
left join assigned on assigned.user_id = window_events.user_id
order by window_events.user_id
