-- Behaviour features of each user of a population at a cutoff time.
--
-- Grain: one row per user_id of `population`.
-- Inputs: population (user_id), user_activity (`user_activity.sql` at the same cutoff: one row
-- per user with an event before it).
--
-- Columns: those of `user_activity.sql`. A user without events before the cutoff gets zero
-- counts and amounts, and null recencies and gaps.

with

population as (
    select distinct user_id from population
),

features as (
    select
        population.user_id,
        coalesce(user_activity.events_all, 0) as events_all,
        coalesce(user_activity.events_30d, 0) as events_30d,
        coalesce(user_activity.events_90d, 0) as events_90d,
        coalesce(user_activity.goal_events_all, 0) as goal_events_all,
        coalesce(user_activity.goal_events_7d, 0) as goal_events_7d,
        coalesce(user_activity.goal_events_30d, 0) as goal_events_30d,
        coalesce(user_activity.goal_events_90d, 0) as goal_events_90d,
        coalesce(user_activity.goal_days_all, 0) as goal_days_all,
        coalesce(user_activity.goal_amount_all, 0.0) as goal_amount_all,
        coalesce(user_activity.goal_amount_90d, 0.0) as goal_amount_90d,
        user_activity.days_since_first_event,
        user_activity.days_since_last_event,
        user_activity.days_since_first_goal_event,
        user_activity.days_since_last_goal_event,
        user_activity.mean_days_between_goal_days
    from population
    left join user_activity on user_activity.user_id = population.user_id
)

select * from features
