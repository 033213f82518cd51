-- New performers and goal events per bucket, arm and day of one goal, since its start.
--
-- Grain: one row per bucket, arm and calendar day (in the goal's time zone) on which a member
-- performed a goal event.
-- Inputs: goal_members (sql/nightly/goal_members.sql), goal_events (the events that count for
-- the goal).
-- Parameters: $start, $through: UTC timestamps; events in [start, through) count.
-- Template: {zone} is replaced by the goal's validated IANA time zone name before planning,
-- because a cast target type cannot be a parameter.
--
-- Columns: bucket; arm; day; new_performers: members whose first goal event since the start
-- falls on this day; events: goal events of members on this day.

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

member_events as (
    select goal_members.user_id, goal_members.bucket, goal_members.arm, window_events.day
    from window_events
    inner join goal_members on goal_members.user_id = window_events.user_id
),

first_days as (
    select bucket, arm, min(day) as day
    from member_events
    group by user_id, bucket, arm
),

counts as (
    select bucket, arm, day, count(*) as new_performers, 0 as events
    from first_days
    group by bucket, arm, day

    union all

    select bucket, arm, day, 0 as new_performers, count(*) as events
    from member_events
    group by bucket, arm, day
)

select
    bucket,
    arm,
    day,
    cast(sum(new_performers) as bigint) as new_performers,
    cast(sum(events) as bigint) as events
from counts
group by bucket, arm, day
order by day, bucket, arm
