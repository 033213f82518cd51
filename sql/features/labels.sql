-- The first goal event of each user in a window, for training labels and the daily curve.
--
-- Grain: one row per user_id of `population` with a goal event in the window.
-- Inputs: population (user_id), goal_events.
-- Parameters: $window_start, $window_end: the window [start, end), UTC timestamps.
--
-- Columns: user_id; days_to_first_event: days from the window start to the user's first goal
-- event in the window; goal_event_count: goal events in the window.

with

population as (
    select distinct user_id from population
),

window_events as (
    select user_id, event_time
    from goal_events
    where event_time >= cast($window_start as timestamp)
        and event_time < cast($window_end as timestamp)
        and event_date >= cast(cast($window_start as timestamp) as date)
        and event_date <= cast(cast($window_end as timestamp) as date)
),

first_events as (
    select
        window_events.user_id,
        (extract(epoch from min(window_events.event_time))
            - extract(epoch from cast($window_start as timestamp))) / 86400.0
            as days_to_first_event,
        count(*) as goal_event_count
    from window_events
    inner join population on population.user_id = window_events.user_id
    group by window_events.user_id
)

select * from first_events
