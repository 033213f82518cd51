-- Behaviour features of each user of a population at a cutoff time.
--
-- Grain: one row per user_id of `population`.
-- Inputs: population (user_id), events, goal_events (the events that achieve the goal: events
-- filtered by the goal's event names and filter).
-- Parameters: $cutoff: UTC timestamp; only events strictly before it are read, so nothing at or
-- after the cutoff reaches the features.
--
-- Columns: counts of any events and of goal events in the 7, 30 and 90 days before the cutoff
-- and in all history; distinct active days; days since the first and last event and goal
-- event (null when there is none); goal amount totals; and the mean gap between goal events
-- (null with fewer than two).

with

population as (
    select distinct user_id from population
),

history as (
    select user_id, event_time, event_date
    from events
    where event_time < cast($cutoff as timestamp)
        and event_date <= cast(cast($cutoff as timestamp) as date)
),

goal_history as (
    select user_id, event_time, event_date, amount
    from goal_events
    where event_time < cast($cutoff as timestamp)
        and event_date <= cast(cast($cutoff as timestamp) as date)
),

activity as (
    select
        user_id,
        count(*) as events_all,
        count(*) filter (where event_time >= cast($cutoff as timestamp) - interval '30 days')
            as events_30d,
        count(*) filter (where event_time >= cast($cutoff as timestamp) - interval '90 days')
            as events_90d,
        count(distinct event_date) as active_days_all,
        count(distinct case
            when event_time >= cast($cutoff as timestamp) - interval '90 days' then event_date
        end) as active_days_90d,
        min(event_time) as first_event_time,
        max(event_time) as last_event_time
    from history
    group by user_id
),

goal_activity as (
    select
        user_id,
        count(*) as goal_events_all,
        count(*) filter (where event_time >= cast($cutoff as timestamp) - interval '7 days')
            as goal_events_7d,
        count(*) filter (where event_time >= cast($cutoff as timestamp) - interval '30 days')
            as goal_events_30d,
        count(*) filter (where event_time >= cast($cutoff as timestamp) - interval '90 days')
            as goal_events_90d,
        count(distinct event_date) as goal_days_all,
        -- Rounded so that the order in which parallel workers add amounts cannot change them.
        round(coalesce(sum(greatest(amount, 0.0)), 0.0), 6) as goal_amount_all,
        round(coalesce(sum(greatest(amount, 0.0)) filter (
            where event_time >= cast($cutoff as timestamp) - interval '90 days'
        ), 0.0), 6) as goal_amount_90d,
        min(event_time) as first_goal_time,
        max(event_time) as last_goal_time
    from goal_history
    group by user_id
),

features as (
    select
        population.user_id,
        coalesce(activity.events_all, 0) as events_all,
        coalesce(activity.events_30d, 0) as events_30d,
        coalesce(activity.events_90d, 0) as events_90d,
        coalesce(activity.active_days_all, 0) as active_days_all,
        coalesce(activity.active_days_90d, 0) as active_days_90d,
        coalesce(goal_activity.goal_events_all, 0) as goal_events_all,
        coalesce(goal_activity.goal_events_7d, 0) as goal_events_7d,
        coalesce(goal_activity.goal_events_30d, 0) as goal_events_30d,
        coalesce(goal_activity.goal_events_90d, 0) as goal_events_90d,
        coalesce(goal_activity.goal_days_all, 0) as goal_days_all,
        coalesce(goal_activity.goal_amount_all, 0.0) as goal_amount_all,
        coalesce(goal_activity.goal_amount_90d, 0.0) as goal_amount_90d,
        (extract(epoch from cast($cutoff as timestamp))
            - extract(epoch from activity.first_event_time)) / 86400.0 as days_since_first_event,
        (extract(epoch from cast($cutoff as timestamp))
            - extract(epoch from activity.last_event_time)) / 86400.0 as days_since_last_event,
        (extract(epoch from cast($cutoff as timestamp))
            - extract(epoch from goal_activity.first_goal_time)) / 86400.0
            as days_since_first_goal_event,
        (extract(epoch from cast($cutoff as timestamp))
            - extract(epoch from goal_activity.last_goal_time)) / 86400.0
            as days_since_last_goal_event,
        case
            when goal_activity.goal_days_all >= 2 then
                (extract(epoch from goal_activity.last_goal_time)
                    - extract(epoch from goal_activity.first_goal_time))
                / 86400.0 / (goal_activity.goal_days_all - 1)
        end as mean_days_between_goal_days
    from population
    left join activity on activity.user_id = population.user_id
    left join goal_activity on goal_activity.user_id = population.user_id
)

select * from features
